/**
 * The behaviour every SessionStore must have, memory, file or NATS KV (written down on
 * `SessionStore` in src/backends/types.ts): run it with a factory that opens a fresh, empty
 * store (see memory.test.ts, file.test.ts and ../nats/contract.test.ts).
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_RETRY_CREDENTIALS, SessionExistsError, type SessionRecord, type SessionStore } from "../../src/backends/types.js";

/** A fresh, empty store and how to dispose of it (and whatever backs it). */
export interface SessionStoreFixture {
  store: SessionStore;
  /**
   * Cuts the store off from the storage it shares with other replicas until `cleanup`
   * (NATS: the server stops), resolving once the store can tell. Absent for a store
   * without shared storage (memory, file), which the contract allows never to reject.
   */
  cutOff?(): Promise<void>;
  cleanup(): Promise<void>;
}

/** A session record as StartSession makes it (with a fresh id). */
export function sessionRecord(overrides: Partial<SessionRecord> = {}): SessionRecord {
  const now = Date.now();
  return {
    id: `ses_${randomBytes(16).toString("base64url")}`,
    agentId: "sales-bot",
    userId: "alice",
    grants: [
      { resource: "salesforce", scopes: ["read", "write"], ttlMs: 300_000 },
      { resource: "calendar", scopes: ["read"] },
    ],
    labels: { env: "test" },
    credentialHash: randomBytes(32).toString("hex"),
    startedBy: "dev",
    createdAt: now,
    expiresAt: now + 60 * 60 * 1000,
    ...overrides,
  };
}

/** Defines the SessionStore contract tests against stores made by `open`. */
export function defineSessionStoreContract(label: string, open: () => Promise<SessionStoreFixture>): void {
  describe(`SessionStore contract: ${label}`, () => {
    const fixtures: SessionStoreFixture[] = [];
    const fresh = async () => {
      const f = await open();
      fixtures.push(f);
      return f.store;
    };
    afterEach(async () => {
      await Promise.all(fixtures.splice(0).map((f) => f.cleanup()));
    });

    it("returns what was created, as a copy the caller cannot change the store through", async () => {
      const store = await fresh();
      const record = sessionRecord();
      await store.create(record);
      const got = await store.get(record.id);
      expect(got).toEqual(record);
      got!.labels.env = "changed";
      got!.grants[0]!.scopes.push("admin");
      expect(await store.get(record.id)).toEqual(record);
    });

    it("keeps sessions without a user and grants without a ttl as they were", async () => {
      const store = await fresh();
      const record = sessionRecord({ userId: undefined, grants: [{ resource: "warehouse", scopes: ["read"] }], labels: {} });
      delete record.userId;
      await store.create(record);
      expect(await store.get(record.id)).toEqual(record);
    });

    it("refuses to create an id twice and keeps the first record", async () => {
      const store = await fresh();
      const record = sessionRecord();
      await store.create(record);
      await expect(store.create({ ...record, agentId: "other-bot" })).rejects.toThrow();
      expect((await store.get(record.id))?.agentId).toBe("sales-bot");
    });

    it("answers undefined for an unknown session, for get and end", async () => {
      const store = await fresh();
      expect(await store.get("ses_AAAAAAAAAAAAAAAAAAAAAA")).toBeUndefined();
      expect(await store.end("ses_AAAAAAAAAAAAAAAAAAAAAA", "why", Date.now())).toBeUndefined();
    });

    it("ends a session once: a second end keeps the first end's time and reason", async () => {
      const store = await fresh();
      const record = sessionRecord();
      await store.create(record);
      const t1 = Date.now();
      const ended = await store.end(record.id, "first", t1);
      expect(ended).toEqual({ ...record, endedAt: t1, endReason: "first" });
      expect(await store.get(record.id)).toEqual(ended);
      expect(await store.end(record.id, "second", t1 + 1000)).toEqual(ended);
      expect(await store.get(record.id)).toEqual(ended);
    });

    it("settles concurrent ends on one of them, the same for every caller", async () => {
      const store = await fresh();
      const record = sessionRecord();
      await store.create(record);
      const t = Date.now();
      const results = await Promise.all([store.end(record.id, "a", t), store.end(record.id, "b", t + 1), store.end(record.id, "c", t + 2)]);
      const stored = await store.get(record.id);
      expect(["a", "b", "c"]).toContain(stored?.endReason);
      for (const r of results) expect(r).toEqual(stored);
    });

    it("lets exactly one of concurrent creates of one id win; the others get SessionExistsError", async () => {
      const store = await fresh();
      const first = sessionRecord();
      const attempts = [first, { ...first, credentialHash: randomBytes(32).toString("hex") }, { ...first, credentialHash: randomBytes(32).toString("hex") }];
      // A loser reads the winner at once (StartSession retries with one request_id rely on it).
      const seenByLosers: (SessionRecord | undefined)[] = [];
      const results = await Promise.allSettled(
        attempts.map((r) =>
          store.create(r).catch(async (err: unknown) => {
            seenByLosers.push(await store.get(first.id));
            throw err;
          }),
        ),
      );
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      expect(seenByLosers).toHaveLength(attempts.length - 1);
      for (const seen of seenByLosers) expect(seen?.id).toBe(first.id);
      for (const r of results) if (r.status === "rejected") expect(r.reason).toBeInstanceOf(SessionExistsError);
      const winner = attempts[results.findIndex((r) => r.status === "fulfilled")]!;
      expect((await store.get(first.id))?.credentialHash).toBe(winner.credentialHash);
    });

    it("adds retry credentials, keeps the newest MAX_RETRY_CREDENTIALS, and leaves the first credential alone", async () => {
      const store = await fresh();
      const record = sessionRecord({ requestFingerprint: randomBytes(32).toString("hex") });
      await store.create(record);
      const added = Array.from({ length: MAX_RETRY_CREDENTIALS + 2 }, () => randomBytes(32).toString("hex"));
      for (const h of added) await store.addCredential(record.id, h);
      const stored = await store.get(record.id);
      expect(stored?.credentialHash).toBe(record.credentialHash);
      expect(stored?.requestFingerprint).toBe(record.requestFingerprint);
      expect(stored?.retryCredentialHashes).toEqual(added.slice(-MAX_RETRY_CREDENTIALS));
      expect(await store.addCredential("ses_BBBBBBBBBBBBBBBBBBBBBB", added[0]!)).toBeUndefined();
    });

    it("keeps every concurrent credential addition", async () => {
      const store = await fresh();
      const record = sessionRecord();
      await store.create(record);
      const added = Array.from({ length: 3 }, () => randomBytes(32).toString("hex"));
      await Promise.all(added.map((h) => store.addCredential(record.id, h)));
      expect(new Set((await store.get(record.id))?.retryCredentialHashes)).toEqual(new Set(added));
    });

    it("forgets a deleted session, and deleting an unknown one is fine", async () => {
      const store = await fresh();
      const record = sessionRecord();
      await store.create(record);
      await store.delete(record.id);
      expect(await store.get(record.id)).toBeUndefined();
      await store.delete("ses_BBBBBBBBBBBBBBBBBBBBBB");
    });

    it("while cut off from shared storage, answers get for the sessions it holds and rejects get for others and every write", async () => {
      const f = await open();
      fixtures.push(f);
      const { store } = f;
      const held = sessionRecord();
      await store.create(held);
      if (!f.cutOff) {
        // No shared storage to lose: every call keeps working.
        expect(await store.get(held.id)).toEqual(held);
        expect((await store.end(held.id, "ended", Date.now()))?.endReason).toBe("ended");
        return;
      }
      await f.cutOff();
      expect(await store.get(held.id)).toEqual(held);
      expect(await store.countStartedBy(held.startedBy, () => true)).toBe(1);
      await expect(store.get(sessionRecord().id)).rejects.toThrow(Error);
      await expect(store.end(held.id, "ended", Date.now())).rejects.toThrow(Error);
      await expect(store.create(sessionRecord())).rejects.toThrow(Error);
      await expect(store.addCredential(held.id, randomBytes(32).toString("hex"))).rejects.toThrow(Error);
      await expect(store.delete(held.id)).rejects.toThrow(Error);
      // Nothing was half-written: the held record is as it was.
      expect(await store.get(held.id)).toEqual(held);
    });
  });
}

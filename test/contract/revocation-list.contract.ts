/**
 * The behaviour every RevocationList must have, memory, file or NATS (written down on
 * `RevocationList` in src/backends/types.ts): run it with a factory that opens a fresh,
 * empty list (see memory.test.ts, file.test.ts and ../nats/contract.test.ts).
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { Revocation, RevocationKind, RevocationList } from "../../src/backends/types.js";
import { newJti } from "../../src/tokens/jti.js";

/** A fresh, empty list and how to dispose of it (and whatever backs it). */
export interface RevocationListFixture {
  list: RevocationList;
  cleanup(): Promise<void>;
}

const HOUR_MS = 60 * 60 * 1000;

/** A revocation of `kind`/`value` made now, live for an hour. */
export function revocation(kind: RevocationKind, value: string, overrides: Partial<Revocation> = {}): Revocation {
  const now = Date.now();
  return { id: `rev_${randomBytes(16).toString("base64url")}`, kind, value, reason: "contract test", revokedAt: now, expiresAt: now + HOUR_MS, by: "orchestrator:test", ...overrides };
}

/** Defines the RevocationList contract tests against lists made by `open`. */
export function defineRevocationListContract(label: string, open: () => Promise<RevocationListFixture>): void {
  describe(`RevocationList contract: ${label}`, () => {
    const fixtures: RevocationListFixture[] = [];
    const fresh = async () => {
      const f = await open();
      fixtures.push(f);
      return f.list;
    };
    afterEach(async () => {
      await Promise.all(fixtures.splice(0).map((f) => f.cleanup()));
    });

    it("starts empty: no rules, feed position 0 or the stream's, nothing to replay", async () => {
      const list = await fresh();
      expect(list.size).toBe(0);
      expect(list.since(0)).toEqual([]);
    });

    it("makes a token rule visible to lookups as soon as publish resolves, for tokens issued up to the revocation's second", async () => {
      const list = await fresh();
      const r = revocation("token_id", "tok_abc");
      await list.publish(r);
      const second = Math.floor(r.revokedAt / 1000);
      const token = { jti: "tok_abc", sessionId: "ses_x", agentId: "bot", resource: "crm", issuedAtSec: second };
      expect(list.tokenRevocation(token)?.id).toBe(r.id);
      expect(list.tokenRevocation({ ...token, issuedAtSec: second + 1 })).toBeUndefined();
      expect(list.tokenRevocation({ ...token, jti: "tok_other" })).toBeUndefined();
    });

    it("ends sessions created before a session, agent or user rule, and not sessions created after it", async () => {
      const list = await fresh();
      const agent = revocation("agent_id", "bot-a");
      const user = revocation("user_id", "carol");
      await list.publish(agent);
      await list.publish(user);
      const before = { sessionId: "ses_1", agentId: "bot-a", createdAt: agent.revokedAt - 1 };
      expect(list.sessionRevocation(before)?.id).toBe(agent.id);
      expect(list.sessionRevocation({ ...before, createdAt: agent.revokedAt + 1 })).toBeUndefined();
      expect(list.sessionRevocation({ sessionId: "ses_2", agentId: "bot-b", userId: "carol", createdAt: user.revokedAt - 1 })?.id).toBe(user.id);
      expect(list.sessionRevocation({ sessionId: "ses_3", agentId: "bot-b", createdAt: user.revokedAt - 1 })).toBeUndefined();
      // Token and resource rules never end sessions.
      await list.publish(revocation("resource", "crm"));
      expect(list.sessionRevocation({ sessionId: "ses_4", agentId: "bot-c", createdAt: 0 })).toBeUndefined();
    });

    it("withdraws grants from sessions created before a resource or token rule, and from no session created after it", async () => {
      const list = await fresh();
      const byResource = revocation("resource", "crm");
      await list.publish(byResource);
      const old = { sessionId: "ses_old", agentId: "bot", createdAt: byResource.revokedAt - 1 };
      expect(list.grantRevocation(old, "crm")?.id).toBe(byResource.id);
      expect(list.grantRevocation(old, "mail")).toBeUndefined();
      expect(list.grantRevocation({ ...old, createdAt: byResource.revokedAt + 1 }, "crm")).toBeUndefined();

      // By token id: the grant the token was issued under, in its own session only.
      const jti = newJti("ses_tok", "mail", Date.now() - 10);
      const byToken = revocation("token_id", jti);
      await list.publish(byToken);
      const holder = { sessionId: "ses_tok", agentId: "bot", createdAt: byToken.revokedAt - 1000 };
      expect(list.grantRevocation(holder, "mail")?.id).toBe(byToken.id);
      expect(list.grantRevocation(holder, "calendar")).toBeUndefined();
      expect(list.grantRevocation({ ...holder, sessionId: "ses_other" }, "mail")).toBeUndefined();
      // A token id without the grant tag (or not capvend's) withdraws nothing beyond the token.
      await list.publish(revocation("token_id", "tok_not-a-capvend-id"));
      expect(list.grantRevocation({ ...holder, sessionId: "ses_x" }, "mail")).toBeUndefined();
    });

    it("gives every applied revocation a growing feed position and calls listeners once each, in order, before publish resolves", async () => {
      const list = await fresh();
      const seen: Revocation[] = [];
      list.subscribe((r) => seen.push(r));
      const start = list.lastSeq;
      const published = [revocation("session_id", "ses_a"), revocation("resource", "crm"), revocation("token_id", "tok_1")];
      for (const r of published) {
        await list.publish(r);
        expect(seen.at(-1)?.id).toBe(r.id);
        expect(list.lastSeq).toBe(seen.at(-1)?.seq);
      }
      expect(seen.map((r) => r.id)).toEqual(published.map((r) => r.id));
      const seqs = seen.map((r) => r.seq!);
      expect(seqs[0]!).toBeGreaterThan(start);
      expect(seqs[1]!).toBeGreaterThan(seqs[0]!);
      expect(seqs[2]!).toBeGreaterThan(seqs[1]!);
      expect(seen[0]).toMatchObject({ kind: "session_id", value: "ses_a", reason: "contract test", by: "orchestrator:test", revokedAt: published[0]!.revokedAt, expiresAt: published[0]!.expiresAt });
    });

    it("replays with since(seq) exactly the applied revocations after seq, in feed order", async () => {
      const list = await fresh();
      const published = [revocation("agent_id", "a1"), revocation("agent_id", "a2"), revocation("agent_id", "a3")];
      for (const r of published) await list.publish(r);
      const all = list.since(0);
      expect(all.map((r) => r.id)).toEqual(published.map((r) => r.id));
      expect(list.since(all[0]!.seq!).map((r) => r.id)).toEqual([published[1]!.id, published[2]!.id]);
      expect(list.since(list.lastSeq)).toEqual([]);
    });

    it("answers catchUp true for positions applied and false, once its timeout passed, for one not reached", async () => {
      const list = await fresh();
      await list.publish(revocation("user_id", "dave"));
      expect(await list.catchUp(list.lastSeq, 1000)).toBe(true);
      expect(await list.catchUp(list.lastSeq + 1000, 200)).toBe(false);
    });

    it("honours catchUp's timeout: a wait for the next position resolves true when a publish reaches it in time", async () => {
      const list = await fresh();
      await list.publish(revocation("user_id", "erin"));
      const waiting = list.catchUp(list.lastSeq + 1, 30_000);
      await list.publish(revocation("user_id", "frank"));
      expect(await waiting).toBe(true);
    });

    it("ends a pending catchUp with false when the list closes", async () => {
      const list = await fresh();
      const waiting = list.catchUp(list.lastSeq + 1000, 60_000);
      await list.close();
      expect(await waiting).toBe(false);
    });

    it("gives an already expired rule its feed position, but neither holds it, tells listeners nor replays it", async () => {
      const list = await fresh();
      const seen: Revocation[] = [];
      list.subscribe((r) => seen.push(r));
      const before = list.lastSeq;
      const now = Date.now();
      const expired = revocation("agent_id", "gone-bot", { revokedAt: now - 2 * HOUR_MS, expiresAt: now - HOUR_MS });
      await list.publish(expired);
      expect(list.lastSeq).toBeGreaterThan(before);
      expect(seen).toEqual([]);
      expect(list.size).toBe(0);
      expect(list.since(before)).toEqual([]);
      expect(list.sessionRevocation({ sessionId: "ses_g", agentId: "gone-bot", createdAt: now - 3 * HOUR_MS })).toBeUndefined();
      // The next live rule comes after it in the feed.
      const live = revocation("agent_id", "live-bot");
      await list.publish(live);
      expect(seen.map((r) => r.id)).toEqual([live.id]);
      expect(seen[0]!.seq).toBe(list.lastSeq);
      expect(list.since(before).map((r) => r.id)).toEqual([live.id]);
    });

    it("keeps delivering to other listeners when one throws, and stops delivering after unsubscribe", async () => {
      const list = await fresh();
      const got: string[] = [];
      list.subscribe(() => {
        throw new Error("listener bug");
      });
      const unsubscribe = list.subscribe((r) => got.push(r.id));
      const first = revocation("token_id", "tok_2");
      await list.publish(first);
      unsubscribe();
      await list.publish(revocation("token_id", "tok_3"));
      expect(got).toEqual([first.id]);
      expect(list.tokenRevocation({ jti: "tok_3", sessionId: "s", agentId: "a", resource: "r", issuedAtSec: 0 })).toBeDefined();
    });

    it("holds one rule per target however often it is revoked, keeping the latest", async () => {
      const list = await fresh();
      const older = revocation("agent_id", "repeat-bot", { revokedAt: Date.now() - 5000 });
      const newer = revocation("agent_id", "repeat-bot");
      await list.publish(older);
      await list.publish(newer);
      expect(list.size).toBe(1);
      expect(list.sessionRevocation({ sessionId: "s", agentId: "repeat-bot", createdAt: newer.revokedAt - 1 })?.id).toBe(newer.id);
    });

    it("rejects publish after close, and close is idempotent", async () => {
      const list = await fresh();
      await list.close();
      await list.close();
      await expect(list.publish(revocation("token_id", "tok_late"))).rejects.toThrow();
    });
  });
}

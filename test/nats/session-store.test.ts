/** KV session store behaviour beyond the shared contract: sharing between replicas, the cache during outages, CAS across replicas. */
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sessionRecord } from "../contract/session-store.contract.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";
import { connectClient, createSessionBucket, openStore, type TestClient } from "./fixtures.js";

let server: NatsServer;
let a: TestClient;
let b: TestClient;

beforeAll(async () => {
  server = await startNatsServer();
  a = await connectClient(server.url);
  b = await connectClient(server.url);
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await server?.cleanup();
});

describe("KvSessionStore", () => {
  it("serves a session created on one replica from another, and the other learns of its end through the watch", async () => {
    const bucket = await createSessionBucket(a);
    const storeA = await openStore(a, bucket);
    const storeB = await openStore(b, bucket);
    try {
      const record = sessionRecord();
      await storeA.create(record);
      expect(await storeB.get(record.id)).toEqual(record);
      const ended = await storeA.end(record.id, "done", Date.now());
      await waitFor(() => storeB.stats().cached > 0, "B to cache the session");
      await waitFor(async () => (await storeB.get(record.id))?.endedAt !== undefined, "B to see the end");
      expect(await storeB.get(record.id)).toEqual(ended);
    } finally {
      await storeA.close();
      await storeB.close();
    }
  });

  it("keeps one end of concurrent ends from two replicas (compare-and-set on the revision)", async () => {
    const bucket = await createSessionBucket(a);
    const storeA = await openStore(a, bucket);
    const storeB = await openStore(b, bucket);
    try {
      for (let i = 0; i < 5; i++) {
        const record = sessionRecord();
        await storeA.create(record);
        const [x, y] = await Promise.all([storeA.end(record.id, "from-a", 1000 + i), storeB.end(record.id, "from-b", 2000 + i)]);
        expect(x).toEqual(y);
        expect(["from-a", "from-b"]).toContain(x?.endReason);
      }
    } finally {
      await storeA.close();
      await storeB.close();
    }
  });

  it("stores the record as it is, with the credential as a sha256 only, and ignores entries that are not session records", async () => {
    const bucket = await createSessionBucket(a);
    const store = await openStore(a, bucket);
    try {
      const record = sessionRecord();
      await store.create(record);
      const kv = await new Kvm(a.js).open(bucket);
      const raw = (await kv.get(record.id))!.json<Record<string, unknown>>();
      expect(raw).toEqual(JSON.parse(JSON.stringify(record)));
      expect(Object.keys(raw).filter((k) => /credential/i.test(k))).toEqual(["credentialHash"]);

      const bogus = sessionRecord();
      await kv.put(bogus.id, JSON.stringify({ ...bogus, credentialHash: "plain-secret" }));
      expect(await store.get(bogus.id)).toBeUndefined();
      expect(store.stats().rejected).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it("answers from its cache for known sessions while NATS is down, fails fast for anything else, and recovers", async () => {
    const bucket = await createSessionBucket(a);
    const storeA = await openStore(a, bucket);
    const storeB = await openStore(b, bucket);
    try {
      const known = sessionRecord();
      await storeA.create(known);
      await waitFor(async () => storeB.stats().cached === 1, "B to cache the session");

      await server.stop();
      await waitFor(() => !b.link.connected && !a.link.connected, "the clients to notice the outage");
      expect(await storeB.get(known.id)).toEqual(known);
      // Fast: refused because the link is down, not after waiting out a deadline ("no answer within").
      for (const call of [() => storeB.get(sessionRecord().id), () => storeB.create(sessionRecord()), () => storeB.end(known.id, "x", Date.now())]) {
        const err = await call().then(() => undefined, (e: unknown) => e);
        expect(err).toMatchObject({ errorCode: "nats_unavailable" });
        expect((err as Error).message).toMatch(/NATS is unreachable$/);
      }

      await server.start();
      await waitFor(() => a.link.connected && b.link.connected, "the clients to reconnect");
      const later = sessionRecord();
      await waitFor(async () => {
        try {
          await storeA.create(later);
          return true;
        } catch {
          return false;
        }
      }, "a create to succeed after the restart");
      // B's watch is re-created after the restart and delivers what A wrote.
      await waitFor(() => storeB.stats().cached === 2, "B's cache to follow the bucket again");
    } finally {
      await storeA.close();
      await storeB.close();
    }
  }, 60_000);
});

/**
 * Listing a KV bucket without `kv.keys()` (whose ordered consumer can wait 30 s for its idle
 * heartbeat when entries are deleted or expire while it lists): the policy status bucket
 * (the replica directory) and the session store's `list`, on a real nats-server.
 */
import { Kvm, type KV } from "@nats-io/kv";
import { nanos } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bucketKeys, liveEntries, type BucketRef } from "../../src/backends/nats/kv-listing.js";
import { readPolicyStatuses } from "../../src/backends/nats/kv-policy.js";
import type { ReplicaPolicyStatus } from "../../src/backends/types.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";
import { connectClient, createSessionBucket, openStore, uniqueName, type TestClient } from "./fixtures.js";

let nats: NatsServer;
let c: TestClient;
let writer: TestClient;

beforeAll(async () => {
  nats = await startNatsServer();
  c = await connectClient(nats.url);
  writer = await connectClient(nats.url);
}, 60_000);

afterAll(async () => {
  await writer?.close();
  await c?.close();
  await nats?.cleanup();
});

const HOUR_MS = 60 * 60 * 1000;

/** A status bucket of its own, as `openPolicyStatusBucket` makes the real one (history 1, a TTL). */
async function statusBucket(client: TestClient, ttlMs = HOUR_MS): Promise<BucketRef> {
  const bucket = uniqueName("t_status");
  const kv = await new Kvm(client.js).create(bucket, { history: 1, ttl: ttlMs });
  return { kv, jsm: client.jsm, bucket };
}

function status(replica: string, version = "v1"): string {
  const s: ReplicaPolicyStatus = { replica, policy_version: version, origin: "test", loaded_at_ms: 1, reported_at_ms: 1 };
  return JSON.stringify(s);
}

/** Sets the bucket's TTL (its stream's max age): the server expires what is older at once. */
async function setTtl(ref: BucketRef, ttlMs: number): Promise<void> {
  const stream = `KV_${ref.bucket}`;
  const info = await c.jsm.streams.info(stream);
  // JetStream refuses a duplicate window longer than the max age.
  await c.jsm.streams.update(stream, { ...info.config, max_age: nanos(ttlMs), duplicate_window: nanos(Math.min(ttlMs, 60_000)) });
}

describe("reading the policy status bucket", () => {
  it("returns the live reports; deleted, purged and expired ones are absent", async () => {
    const ref = await statusBucket(c);
    await ref.kv.put("gone-1", status("gone-1"));
    await ref.kv.put("gone-2", status("gone-2"));
    // Expire those two: a short TTL, wait until the server dropped them, then a long TTL again.
    await setTtl(ref, 1000);
    await waitFor(async () => (await c.jsm.streams.info(`KV_${ref.bucket}`)).state.messages === 0, "the server to expire the first reports");
    await setTtl(ref, HOUR_MS);

    for (const r of ["replica-a", "replica-b", "replica-c", "replica-d"]) await ref.kv.put(r, status(r));
    await ref.kv.delete("replica-b");
    await ref.kv.purge("replica-c");
    await ref.kv.put("not-json", "{{{");

    // The listing sees the delete and purge markers as keys; the read leaves them out.
    expect((await bucketKeys(ref, { clock: c.clock, timeoutMs: 2000, what: "test" })).sort()).toEqual(["not-json", "replica-a", "replica-b", "replica-c", "replica-d"]);
    expect((await liveEntries(ref, { clock: c.clock, timeoutMs: 2000, what: "test" })).map((e) => e.key).sort()).toEqual(["not-json", "replica-a", "replica-d"]);
    const statuses = await readPolicyStatuses(ref, { clock: c.clock, timeoutMs: 2000 });
    expect(statuses.map((s) => s.replica)).toEqual(["replica-a", "replica-d"]);
    expect(statuses[0]).toMatchObject({ replica: "replica-a", policy_version: "v1" });
  });

  it("is empty for an empty bucket, and for one whose every entry expired", async () => {
    const ref = await statusBucket(c);
    expect(await readPolicyStatuses(ref, { clock: c.clock, timeoutMs: 2000 })).toEqual([]);
    await ref.kv.put("replica-a", status("replica-a"));
    await setTtl(ref, 1000);
    await waitFor(async () => (await c.jsm.streams.info(`KV_${ref.bucket}`)).state.messages === 0, "the server to expire the report");
    expect(await readPolicyStatuses(ref, { clock: c.clock, timeoutMs: 2000 })).toEqual([]);
  });

  it("finishes every read, with every steady report, while other reports are written, replaced and deleted", async () => {
    const ref = await statusBucket(c);
    const steady = ["steady-1", "steady-2", "steady-3"];
    for (const r of steady) await ref.kv.put(r, status(r));
    // Another connection churns the bucket as fast as it can: new keys, replaced keys and
    // deletes, the pattern under which kv.keys() waits for its 30 s heartbeat.
    const churnKv: KV = await new Kvm(writer.js).open(ref.bucket);
    let stop = false;
    let writes = 0;
    const churn = (async () => {
      for (let i = 0; !stop; i++) {
        await churnKv.put(`churn-${i}`, status(`churn-${i}`, `v${i}`));
        await churnKv.put(`churn-${i % 3}`, status(`churn-${i % 3}`, `v${i}`));
        if (i > 0) await churnKv.delete(`churn-${i - 1}`);
        writes++;
      }
    })();
    try {
      await waitFor(() => writes > 5, "the churn to start");
      for (let read = 0; read < 400; read++) {
        // A hung read would fail here with "no answer from NATS within 5000 ms".
        const statuses = await readPolicyStatuses(ref, { clock: c.clock, timeoutMs: 5000 });
        const names = statuses.map((s) => s.replica);
        for (const r of steady) expect(names).toContain(r);
        // Only live reports: each one a PUT that parses, no duplicates.
        expect(new Set(names).size).toBe(names.length);
      }
    } finally {
      stop = true;
      await churn;
    }
    expect(writes).toBeGreaterThan(5);
  }, 120_000);
});

describe("listing sessions", () => {
  it("leaves out deleted and expired sessions and finishes", async () => {
    const bucket = await createSessionBucket(c);
    const store = await openStore(c, bucket);
    try {
      const now = Date.now();
      const record = (id: string) => ({
        id,
        agentId: "bot",
        startedBy: "dev",
        createdAt: now,
        expiresAt: now + HOUR_MS,
        credentialHash: "0".repeat(64),
        labels: {},
        grants: [{ resource: "crm", scopes: ["read"] }],
      });
      await store.create(record("ses_expired"));
      const ref = { kv: await new Kvm(c.js).open(bucket), jsm: c.jsm, bucket };
      await setTtl(ref, 1000);
      await waitFor(async () => (await c.jsm.streams.info(`KV_${bucket}`)).state.messages === 0, "the server to expire the first session");
      await setTtl(ref, HOUR_MS);
      for (const id of ["ses_a", "ses_b", "ses_c"]) await store.create(record(id));
      await store.delete("ses_b");
      const listed = await store.list({ limit: 100, match: () => true });
      expect(listed.map((r) => r.id)).toEqual(["ses_a", "ses_c"]);
      expect((await store.list({ limit: 100, afterId: "ses_a", match: () => true })).map((r) => r.id)).toEqual(["ses_c"]);
      expect((await store.list({ limit: 1, match: () => true })).map((r) => r.id)).toEqual(["ses_a"]);
    } finally {
      await store.close();
    }
  });
});

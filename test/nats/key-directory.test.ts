/** The public key directory on a KV bucket: publish before use, the union JWKS, its identity, expiry and what it refuses. */
import { generateKeyPairSync, type JsonWebKey } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { systemClock, type Clock } from "../../src/clock.js";
import type { Jwks, KeyChangeEvent, KeyRing } from "../../src/keys/key-ring.js";
import { toSigningKey, type SigningKey } from "../../src/keys/signing-key.js";
import { ensureBucket } from "../../src/backends/nats/jetstream-setup.js";
import { openKeyDirectory, type KeyDirectory } from "../../src/backends/nats/key-directory.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";
import { connectClient, testStartup, uniqueName, type TestClient } from "./fixtures.js";

/** A key ring whose keys and change events the test controls (only what the directory uses). */
class FakeRing {
  keys: SigningKey[] = [];
  #jwks: Jwks = Object.freeze({ keys: [] });
  #listeners = new Set<(e: KeyChangeEvent) => void>();
  add(): SigningKey {
    const key = toSigningKey(generateKeyPairSync("ed25519").privateKey, Date.now());
    this.keys.push(key);
    this.#refresh();
    this.#listeners.forEach((l) => l({ type: "added", kid: key.kid, alg: key.alg }));
    return key;
  }
  remove(kid: string): void {
    this.keys = this.keys.filter((k) => k.kid !== kid);
    this.#refresh();
    this.#listeners.forEach((l) => l({ type: "removed", kid, alg: "EdDSA" }));
  }
  retire(kid: string, at: number): void {
    const key = this.keys.find((k) => k.kid === kid)!;
    key.retiredAt = at;
    this.#listeners.forEach((l) => l({ type: "retired", kid, alg: "EdDSA" }));
  }
  retiredAt(kid: string): number | undefined {
    return this.keys.find((k) => k.kid === kid)?.retiredAt;
  }
  jwks(): Jwks {
    return this.#jwks;
  }
  onChange(l: (e: KeyChangeEvent) => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  #refresh(): void {
    this.#jwks = Object.freeze({ keys: Object.freeze(this.keys.map((k) => k.publicJwk)) as JsonWebKey[] });
  }
}

let server: NatsServer;
let c: TestClient;
const TTL_MS = 60 * 60 * 1000;

beforeAll(async () => {
  server = await startNatsServer();
  c = await connectClient(server.url);
});
afterAll(async () => {
  await c?.close();
  await server?.cleanup();
});

const opened: KeyDirectory[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((d) => d.close()));
});

async function bucket(): Promise<{ kv: KV }> {
  const name = uniqueName("t_keys");
  const { kv } = await ensureBucket(c.js, c.jsm, { bucket: name, description: "test", ttlMs: TTL_MS, replicas: 1, timeoutMs: 2000 }, testStartup(c));
  return { kv };
}

async function directory(kv: KV, ring: FakeRing, replica: string, clock: Clock = systemClock): Promise<KeyDirectory> {
  const dir = await openKeyDirectory({ kv, ttlMs: TTL_MS, keyRing: ring as unknown as KeyRing, link: c.link, clock, logger: c.logger, replica, timeoutMs: 2000 });
  opened.push(dir);
  return dir;
}

const kids = (j: Jwks) => j.keys.map((k) => k.kid).sort();

describe("KeyDirectory", () => {
  it("has the replica's public key in the bucket, and only public members, by the time open resolves", async () => {
    const { kv } = await bucket();
    const ring = new FakeRing();
    const key = ring.add();
    await directory(kv, ring, "a");
    const entry = (await kv.get(key.kid))!.json<{ kid: string; replica: string; jwk: Record<string, unknown> }>();
    expect(entry).toMatchObject({ kid: key.kid, replica: "a" });
    expect(entry.jwk).toMatchObject({ kty: "OKP", crv: "Ed25519", kid: key.kid });
    expect(entry.jwk).not.toHaveProperty("d");
  });

  it("serves the union of every replica's keys, local ones always included, as one object until the set changes", async () => {
    const { kv } = await bucket();
    const ringA = new FakeRing();
    const ringB = new FakeRing();
    const keyA = ringA.add();
    const keyB = ringB.add();
    const dirA = await directory(kv, ringA, "a");
    const dirB = await directory(kv, ringB, "b");
    // B loaded A's key before its open resolved; A hears of B's through its watch.
    expect(kids(dirB.jwks())).toEqual([keyA.kid, keyB.kid].sort());
    await waitFor(() => dirA.jwks().keys.length === 2, "A to see B's key");

    const before = dirB.jwks();
    expect(dirB.jwks()).toBe(before);
    expect(Object.isFrozen(before)).toBe(true);
    await dirA.publishAll(); // a refresh: same keys, new revisions
    // Then an entry that is not a key: the bucket is watched in order, so once both
    // directories have logged skipping it, B has applied the refresh too.
    const from = c.lines.length;
    await kv.put("refresh-sentinel", "not a key");
    const skipped = () => c.lines.slice(from).filter((l) => l.includes("not a valid public key") && l.includes('"refresh-"')).length;
    await waitFor(() => skipped() === 2, "both directories to skip the sentinel entry");
    expect(dirB.jwks()).toBe(before);

    const keyA2 = ringA.add(); // a rotation on A
    await waitFor(() => dirB.jwks() !== before, "B to see A's new key");
    expect(kids(dirB.jwks())).toEqual([keyA.kid, keyA2.kid, keyB.kid].sort());
  });

  it("deletes a key from the bucket when the ring forgets it, and other replicas drop it", async () => {
    const { kv } = await bucket();
    const ringA = new FakeRing();
    const ringB = new FakeRing();
    const old = ringA.add();
    ringA.add();
    ringB.add();
    await directory(kv, ringA, "a");
    const dirB = await directory(kv, ringB, "b");
    expect(dirB.jwks().keys).toHaveLength(3);
    ringA.remove(old.kid);
    await waitFor(() => !dirB.jwks().keys.some((k) => k.kid === old.kid), "B to drop the removed key");
    expect((await kv.get(old.kid))?.operation).toBe("DEL");
  });

  it("carries a key's retirement time to the other replicas with the key", async () => {
    const { kv } = await bucket();
    const ringA = new FakeRing();
    const old = ringA.add();
    ringA.add();
    await directory(kv, ringA, "a");
    const dirB = await directory(kv, new FakeRing(), "b");
    expect(dirB.retiredAt(old.kid)).toBeUndefined();
    const at = Date.now();
    ringA.retire(old.kid, at);
    await waitFor(() => dirB.retiredAt(old.kid) !== undefined, "B to learn the retirement");
    expect(dirB.retiredAt(old.kid)).toBe(at);
    expect(kids(dirB.jwks())).toContain(old.kid);
  });

  it("lets another replica's key lapse once its last put is older than the bucket's max age (a dead replica)", async () => {
    const { kv } = await bucket();
    const ringA = new FakeRing();
    ringA.add();
    await directory(kv, ringA, "a");
    const ringB = new FakeRing();
    const keyB = ringB.add();
    const later: Clock = { ...systemClock, now: () => Date.now() + TTL_MS + 1000 };
    const dirB = await directory(kv, ringB, "b", later);
    expect(kids(dirB.jwks())).toEqual([keyB.kid]);
  });

  it("refuses bucket entries holding private members, a kid that is not the key's thumbprint, or garbage", async () => {
    const { kv } = await bucket();
    const ring = new FakeRing();
    const own = ring.add();
    const leaked = toSigningKey(generateKeyPairSync("ed25519").privateKey, Date.now());
    const privateJwk = leaked.privateKey.export({ format: "jwk" });
    await kv.put(leaked.kid, JSON.stringify({ v: 1, kid: leaked.kid, alg: "EdDSA", jwk: { ...privateJwk, kid: leaked.kid }, replica: "evil", published_at_ms: Date.now() }));
    const other = toSigningKey(generateKeyPairSync("ed25519").privateKey, Date.now());
    const wrongKid = "A".repeat(43);
    await kv.put(wrongKid, JSON.stringify({ v: 1, kid: wrongKid, alg: "EdDSA", jwk: other.publicJwk, replica: "evil", published_at_ms: Date.now() }));
    await kv.put("garbage", "{not json");
    const dir = await directory(kv, ring, "a");
    expect(kids(dir.jwks())).toEqual([own.kid]);
    // Refused by the reader: the entries are still there.
    expect((await kv.get(leaked.kid))?.operation).toBe("PUT");
  });
});

import { chmod, mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { openKeyRing, type KeyChangeEvent, type KeyRing } from "../../src/keys/key-ring.js";
import { KeyFileError } from "../../src/keys/pem-file.js";
import { jwkThumbprint } from "../../src/keys/thumbprint.js";
import { newPrivateKey, tempDirs, writePem } from "./fixtures.js";

const TTL = 15 * 60 * 1000;
const temp = tempDirs();
const rings: KeyRing[] = [];
afterEach(async () => {
  rings.splice(0).forEach((r) => r.close());
  await temp.cleanup();
});

async function open(dataDir: string, clock: ManualClock, alg: "EdDSA" | "ES256" = "EdDSA"): Promise<KeyRing> {
  const ring = await openKeyRing({ dataDir, alg, clock, maxTokenTtlMs: TTL });
  rings.push(ring);
  return ring;
}

async function readIndex(dataDir: string): Promise<{ version: number; keys: { kid: string; alg: string; createdAt: number; retiredAt?: number }[] }> {
  return JSON.parse(await readFile(join(dataDir, "keys", "keyring.json"), "utf8"));
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe("openKeyRing, first start", () => {
  it.each([
    ["EdDSA", "OKP", "Ed25519"],
    ["ES256", "EC", "P-256"],
  ] as const)("generates and persists a %s key", async (alg, kty, crv) => {
    const dataDir = await temp.make();
    const clock = new ManualClock();
    const ring = await open(dataDir, clock, alg);
    const key = ring.current();
    expect(key.alg).toBe(alg);
    expect(key.createdAt).toBe(clock.now());
    expect(key.retiredAt).toBeUndefined();
    expect(key.kid).toBe(jwkThumbprint(key.publicKey.export({ format: "jwk" })));

    const { keys } = ring.jwks();
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kty, crv, kid: key.kid, alg, use: "sig" });
    expect(keys[0]).not.toHaveProperty("d");

    const dir = join(dataDir, "keys");
    expect(await mode(dir)).toBe(0o700);
    expect(await mode(join(dir, `${key.kid}.pem`))).toBe(0o600);
    expect(await mode(join(dir, "keyring.json"))).toBe(0o600);
    expect((await readdir(dir)).sort()).toEqual([`${key.kid}.pem`, "keyring.json"].sort());
    expect(await readIndex(dataDir)).toEqual({ version: 1, keys: [{ kid: key.kid, alg, createdAt: clock.now() }] });
  });

  it("tightens an existing key directory to 0700", async () => {
    const dataDir = await temp.make();
    await mkdir(join(dataDir, "keys"), { mode: 0o755 });
    await chmod(join(dataDir, "keys"), 0o755);
    await open(dataDir, new ManualClock());
    expect(await mode(join(dataDir, "keys"))).toBe(0o700);
  });

  it("validates its options", async () => {
    const dataDir = await temp.make();
    const clock = new ManualClock();
    await expect(openKeyRing({ dataDir, alg: "RS256" as never, clock, maxTokenTtlMs: TTL })).rejects.toThrow(/alg must be one of EdDSA, ES256/);
    await expect(openKeyRing({ dataDir, alg: "EdDSA", clock, maxTokenTtlMs: 0 })).rejects.toThrow(RangeError);
    await expect(openKeyRing({ dataDir, alg: "EdDSA", clock, maxTokenTtlMs: 1.5 })).rejects.toThrow(RangeError);
  });
});

describe("openKeyRing, later starts", () => {
  it("loads the persisted key: same kid, same public key", async () => {
    const dataDir = await temp.make();
    const first = await open(dataDir, new ManualClock());
    const kid = first.current().kid;
    first.close();
    const second = await open(dataDir, new ManualClock(Date.UTC(2026, 5, 1)));
    expect(second.current().kid).toBe(kid);
    expect(second.jwks()).toEqual(first.jwks());
    expect(second.current().createdAt).toBe(first.current().createdAt);
  });

  it("rotates to the requested alg when it changed, keeping the old key published", async () => {
    const dataDir = await temp.make();
    const clock = new ManualClock();
    const ed = await open(dataDir, clock, "EdDSA");
    const edKid = ed.current().kid;
    clock.advance(1000);
    const es = await open(dataDir, clock, "ES256");
    expect(es.current().alg).toBe("ES256");
    expect(es.current().kid).not.toBe(edKid);
    expect(es.jwks().keys.map((k) => k.kid)).toEqual([es.current().kid, edKid]);
    expect((await readIndex(dataDir)).keys).toEqual([
      { kid: edKid, alg: "EdDSA", createdAt: clock.now() - 1000, retiredAt: clock.now() },
      { kid: es.current().kid, alg: "ES256", createdAt: clock.now() },
    ]);
    // And a third start with the same alg changes nothing.
    const again = await open(dataDir, clock, "ES256");
    expect(again.current().kid).toBe(es.current().kid);
    expect(again.jwks().keys).toHaveLength(2);
  });

  it("deletes crash debris: orphan key files and temp files", async () => {
    const dataDir = await temp.make();
    const ring = await open(dataDir, new ManualClock());
    const dir = join(dataDir, "keys");
    const orphan = newPrivateKey("ed25519");
    const orphanKid = jwkThumbprint(orphan.export({ format: "jwk" }));
    await writePem(dir, `${orphanKid}.pem`, orphan);
    await writeFile(join(dir, ".keyring.json.abc123.tmp"), "{ half a fi");
    await writeFile(join(dir, "README"), "operator's note");
    const reopened = await open(dataDir, new ManualClock());
    expect(reopened.current().kid).toBe(ring.current().kid);
    expect((await readdir(dir)).sort()).toEqual([`${ring.current().kid}.pem`, "README", "keyring.json"].sort());
  });

  it("refuses a corrupt index, naming it", async () => {
    const dataDir = await temp.make();
    await open(dataDir, new ManualClock());
    const indexPath = join(dataDir, "keys", "keyring.json");
    await writeFile(indexPath, "{ not json");
    const err = await openKeyRing({ dataDir, alg: "EdDSA", clock: new ManualClock(), maxTokenTtlMs: TTL }).catch((e) => e);
    expect(err).toBeInstanceOf(KeyFileError);
    expect(err.message).toContain(indexPath);
    expect(err.message).toContain("not valid JSON");

    await writeFile(indexPath, JSON.stringify({ version: 1, keys: [{ kid: "../../etc/passwd", alg: "EdDSA", createdAt: 1 }] }));
    await expect(openKeyRing({ dataDir, alg: "EdDSA", clock: new ManualClock(), maxTokenTtlMs: TTL })).rejects.toThrow(
      /entry 0: kid is not a key thumbprint/,
    );
  });

  it("refuses a key file that does not hold the key its name promises", async () => {
    const dataDir = await temp.make();
    const ring = await open(dataDir, new ManualClock());
    const path = join(dataDir, "keys", `${ring.current().kid}.pem`);
    await writePem(join(dataDir, "keys"), `${ring.current().kid}.pem`, newPrivateKey("ed25519"));
    const err = await openKeyRing({ dataDir, alg: "EdDSA", clock: new ManualClock(), maxTokenTtlMs: TTL }).catch((e) => e);
    expect(err).toBeInstanceOf(KeyFileError);
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/does not hold the EdDSA key/);
  });

  it("refuses a missing key file that the index lists", async () => {
    const dataDir = await temp.make();
    const ring = await open(dataDir, new ManualClock());
    const path = join(dataDir, "keys", `${ring.current().kid}.pem`);
    await rm(path);
    await expect(openKeyRing({ dataDir, alg: "EdDSA", clock: new ManualClock(), maxTokenTtlMs: TTL })).rejects.toThrow(
      `key file ${path}: cannot be read (ENOENT)`,
    );
  });
});

describe("rotation", () => {
  it("makes a new current key, retires the old one and tells listeners", async () => {
    const dataDir = await temp.make();
    const clock = new ManualClock();
    const ring = await open(dataDir, clock);
    const old = ring.current();
    const events: KeyChangeEvent[] = [];
    ring.onChange((e) => events.push(e));
    clock.advance(5000);
    const fresh = await ring.rotate();

    expect(ring.current()).toBe(fresh);
    expect(fresh.kid).not.toBe(old.kid);
    expect(fresh.createdAt).toBe(clock.now());
    expect(old.retiredAt).toBe(clock.now());
    expect(events).toEqual([
      { type: "added", kid: fresh.kid, alg: "EdDSA" },
      { type: "retired", kid: old.kid, alg: "EdDSA" },
    ]);
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([fresh.kid, old.kid]);
    expect(ring.publicKey(old.kid)).toBe(old.publicKey);
    expect(await mode(join(dataDir, "keys", `${fresh.kid}.pem`))).toBe(0o600);

    // Persisted: a restart sees the same current key and the old one's retirement time.
    const reopened = await open(dataDir, clock);
    expect(reopened.current().kid).toBe(fresh.kid);
    expect(reopened.jwks().keys.map((k) => k.kid)).toEqual([fresh.kid, old.kid]);
    expect((await readIndex(dataDir)).keys[0]).toEqual({ kid: old.kid, alg: "EdDSA", createdAt: old.createdAt, retiredAt: clock.now() });
  });

  it("keeps a retired key published until retiredAt + maxTokenTtl, then prune forgets it and deletes its file", async () => {
    const dataDir = await temp.make();
    const clock = new ManualClock();
    const ring = await open(dataDir, clock);
    const old = ring.current();
    await ring.rotate();
    const removed: KeyChangeEvent[] = [];
    ring.onChange((e) => removed.push(e));

    clock.advance(TTL - 1);
    expect(await ring.prune()).toEqual([]);
    expect(ring.jwks().keys.map((k) => k.kid)).toContain(old.kid);
    expect(ring.publicKey(old.kid)).toBeDefined();

    clock.advance(1);
    // Out of the JWKS by time alone, before any prune.
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([ring.current().kid]);
    expect(ring.publicKey(old.kid)).toBeUndefined();
    // Only its public part was left on disk when it stopped signing.
    expect(await readdir(join(dataDir, "keys"))).toContain(`${old.kid}.pub.pem`);
    expect(await readdir(join(dataDir, "keys"))).not.toContain(`${old.kid}.pem`);

    expect(await ring.prune()).toEqual([old.kid]);
    expect(removed).toEqual([{ type: "removed", kid: old.kid, alg: "EdDSA" }]);
    expect(await readdir(join(dataDir, "keys"))).not.toContain(`${old.kid}.pem`);
    expect(await readdir(join(dataDir, "keys"))).not.toContain(`${old.kid}.pub.pem`);
    expect((await readIndex(dataDir)).keys.map((k) => k.kid)).toEqual([ring.current().kid]);
    expect(await ring.prune()).toEqual([]);
  });

  it("deletes a retired key's private file when it stops signing; the public part verifies on, after a restart too", async () => {
    const dataDir = await temp.make();
    const clock = new ManualClock();
    const ring = await open(dataDir, clock);
    const old = ring.current();
    const oldJwk = old.publicJwk;
    expect(await readdir(join(dataDir, "keys"))).toContain(`${old.kid}.pem`);
    clock.advance(5000);
    await ring.rotate();
    const files = await readdir(join(dataDir, "keys"));
    expect(files).not.toContain(`${old.kid}.pem`);
    expect(files).toContain(`${old.kid}.pub.pem`);
    expect(files).toContain(`${ring.current().kid}.pem`);
    expect(ring.retiredAt(old.kid)).toBe(clock.now());
    expect(ring.retiredAt(ring.current().kid)).toBeUndefined();
    expect(ring.jwks().keys).toContainEqual(oldJwk);

    const again = await open(dataDir, clock);
    expect(again.current().kid).toBe(ring.current().kid);
    expect(again.jwks().keys).toContainEqual(oldJwk);
    expect(again.publicKey(old.kid)).toBeDefined();
    expect(again.retiredAt(old.kid)).toBe(clock.now());
  });

  it("finishes a deletion a crash interrupted: a retired key's private file left beside the index goes at the next open", async () => {
    const dataDir = await temp.make();
    const clock = new ManualClock();
    const ring = await open(dataDir, clock);
    const old = ring.current();
    const pem = old.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    await ring.rotate();
    // As if the process died after the index write, before the private file was deleted.
    await writeFile(join(dataDir, "keys", `${old.kid}.pem`), pem, { mode: 0o600 });
    await open(dataDir, clock);
    expect(await readdir(join(dataDir, "keys"))).not.toContain(`${old.kid}.pem`);
    await rm(join(dataDir, "keys", `${old.kid}.pub.pem`));
    await writeFile(join(dataDir, "keys", `${old.kid}.pem`), pem, { mode: 0o600 });
    const reopened = await open(dataDir, clock);
    expect(await readdir(join(dataDir, "keys"))).not.toContain(`${old.kid}.pem`);
    expect(reopened.publicKey(old.kid)).toBeDefined();
  });

  it("returns the same JWKS object until the key set changes", async () => {
    const clock = new ManualClock();
    const ring = await open(await temp.make(), clock);
    const a = ring.jwks();
    expect(ring.jwks()).toBe(a);
    expect(Object.isFrozen(a.keys)).toBe(true);
    await ring.rotate();
    const b = ring.jwks();
    expect(b).not.toBe(a);
    expect(ring.jwks()).toBe(b);
    clock.advance(TTL);
    expect(ring.jwks()).not.toBe(b);
    expect(ring.jwks().keys).toHaveLength(1);
  });

  it("serializes concurrent rotations: every key is indexed, one is current", async () => {
    const dataDir = await temp.make();
    const ring = await open(dataDir, new ManualClock());
    const [a, b, c] = await Promise.all([ring.rotate(), ring.rotate(), ring.prune().then(() => ring.rotate())]);
    const index = await readIndex(dataDir);
    expect(index.keys).toHaveLength(4);
    expect(index.keys.filter((k) => k.retiredAt === undefined).map((k) => k.kid)).toEqual([ring.current().kid]);
    expect(new Set([a.kid, b.kid, c.kid]).size).toBe(3);
    expect(ring.jwks().keys).toHaveLength(4);
  });

  it("leaves memory and disk unchanged when persisting the rotation fails", async () => {
    const dataDir = await temp.make();
    const ring = await open(dataDir, new ManualClock());
    const before = ring.current();
    const dir = join(dataDir, "keys");
    // A directory where the index should be makes the atomic rename fail (even for root).
    await rm(join(dir, "keyring.json"));
    await mkdir(join(dir, "keyring.json"));
    await expect(ring.rotate()).rejects.toThrow();
    expect(ring.current()).toBe(before);
    expect(before.retiredAt).toBeUndefined();
    expect(ring.jwks().keys).toHaveLength(1);
    expect((await readdir(dir)).filter((n) => n.endsWith(".pem") || n.endsWith(".tmp"))).toEqual([`${before.kid}.pem`]);
  });

  it("isolates listeners: a throwing one is reported, the others still hear, the rotation stands", async () => {
    const ring = await open(await temp.make(), new ManualClock());
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    try {
      const heard: string[] = [];
      ring.onChange(() => {
        throw new Error("listener bug");
      });
      const unsubscribe = ring.onChange((e) => heard.push(`a:${e.type}`));
      ring.onChange((e) => heard.push(`b:${e.type}`));
      const fresh = await ring.rotate();
      expect(ring.current()).toBe(fresh);
      expect(heard).toEqual(["a:added", "b:added", "a:retired", "b:retired"]);
      expect(warn).toHaveBeenCalledTimes(2);
      expect(String(warn.mock.calls[0]![0])).toContain("listener bug");
      unsubscribe();
      heard.length = 0;
      await ring.rotate();
      expect(heard).toEqual(["b:added", "b:retired"]);
    } finally {
      warn.mockRestore();
    }
  });

  it("refuses rotate and prune after close, which is idempotent", async () => {
    const ring = await open(await temp.make(), new ManualClock());
    const kid = ring.current().kid;
    ring.close();
    ring.close();
    await expect(ring.rotate()).rejects.toThrow("key ring is closed");
    await expect(ring.prune()).rejects.toThrow("key ring is closed");
    expect(ring.current().kid).toBe(kid);
    expect(ring.jwks().keys).toHaveLength(1);
  });
});

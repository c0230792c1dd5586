import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { inspect } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { openKeyRing } from "../../src/keys/key-ring.js";
import { toSigningKey } from "../../src/keys/signing-key.js";
import { leaked, secretFragments, tempDirs } from "./fixtures.js";

const temp = tempDirs();
afterEach(() => temp.cleanup());

/** Every way a careless log line or error report might render an object. */
function renderings(value: unknown): string[] {
  return [
    JSON.stringify(value),
    JSON.stringify({ nested: { value } }),
    inspect(value),
    inspect(value, { showHidden: true, depth: Infinity, getters: true }),
    inspect({ nested: [value] }, { depth: Infinity }),
    String(value),
    `${value}`,
    JSON.stringify({ ...(value as object) }),
    inspect({ ...(value as object) }, { showHidden: true, depth: Infinity }),
  ];
}

describe("no private key material in logs", () => {
  it.each(["EdDSA", "ES256"] as const)("a %s SigningKey renders as kid and alg only", async (alg) => {
    const ring = await openKeyRing({ dataDir: await temp.make(), alg, clock: new ManualClock(), maxTokenTtlMs: 60_000 });
    const key = ring.current();
    const secrets = secretFragments(key.privateKey);
    expect(secrets.length).toBeGreaterThan(3);
    for (const text of renderings(key)) expect(leaked(text, secrets)).toEqual([]);
    expect(JSON.parse(JSON.stringify(key))).toEqual({ kid: key.kid, alg, createdAt: key.createdAt });
    expect(inspect(key)).toBe(`SigningKey(${alg} ${key.kid})`);
    expect(Object.keys(key)).not.toContain("privateKey");
    // The key itself still works for whoever asks for it by name.
    expect(key.privateKey.type).toBe("private");
  });

  it("the KeyRing renders without key material, after a rotation too", async () => {
    const ring = await openKeyRing({ dataDir: await temp.make(), alg: "EdDSA", clock: new ManualClock(), maxTokenTtlMs: 60_000 });
    const first = ring.current();
    await ring.rotate();
    const secrets = [...secretFragments(first.privateKey), ...secretFragments(ring.current().privateKey)];
    for (const text of renderings(ring)) expect(leaked(text, secrets)).toEqual([]);
    expect(JSON.parse(JSON.stringify(ring))).toEqual({ alg: "EdDSA", current: ring.current().kid, kids: [first.kid, ring.current().kid] });
    // The JWKS is public by design, and must stay public.
    expect(leaked(JSON.stringify(ring.jwks()), secrets)).toEqual([]);
    expect(ring.jwks().keys.every((k) => !("d" in k))).toBe(true);
  });

  it("a retired key's JSON shows its retirement", () => {
    const key = toSigningKey(generateKeyPairSync("ed25519").privateKey, 1000, 2000);
    expect(JSON.parse(JSON.stringify(key))).toEqual({ kid: key.kid, alg: "EdDSA", createdAt: 1000, retiredAt: 2000 });
  });

  it("toSigningKey refuses a public key", () => {
    const pub = createPublicKey(generateKeyPairSync("ed25519").privateKey);
    expect(() => toSigningKey(pub, 0)).toThrow("a signing key must be a private key");
  });
});

import { calculateJwkThumbprint } from "jose";
import { createPublicKey, type KeyObject } from "node:crypto";
import { access, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { openKeyRing } from "../../src/keys/key-ring.js";
import { KeyFileError } from "../../src/keys/pem-file.js";
import { leaked, newPrivateKey, secretFragments, tempDirs, writePem } from "./fixtures.js";

const TTL = 10 * 60 * 1000;
const temp = tempDirs();
afterEach(() => temp.cleanup());

const thumbprint = (key: KeyObject) => calculateJwkThumbprint(createPublicKey(key).export({ format: "jwk" }) as never, "sha256");

describe("openKeyRing with keyFiles", () => {
  it("signs with the first file and publishes the others until they age out", async () => {
    const dir = await temp.make();
    const dataDir = await temp.make();
    const [a, b, c] = [newPrivateKey("ed25519"), newPrivateKey("ed25519"), newPrivateKey("p256")];
    const files = [await writePem(dir, "a.pem", a), await writePem(dir, "b.pem", b), await writePem(dir, "c.pem", c)];
    const clock = new ManualClock();
    const ring = await openKeyRing({ dataDir, alg: "EdDSA", clock, maxTokenTtlMs: TTL, keyFiles: files.map((f) => f.path) });

    expect(ring.current().kid).toBe(await thumbprint(a));
    expect(ring.current().alg).toBe("EdDSA");
    expect(ring.jwks().keys.map((k) => [k.kid, k.alg])).toEqual([
      [await thumbprint(a), "EdDSA"],
      [await thumbprint(b), "EdDSA"],
      [await thumbprint(c), "ES256"],
    ]);
    // Nothing is written to the data dir: the operator owns these keys.
    await expect(access(join(dataDir, "keys"))).rejects.toThrow(/ENOENT/);

    clock.advance(TTL);
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([await thumbprint(a)]);
    expect((await ring.prune()).sort()).toEqual([await thumbprint(b), await thumbprint(c)].sort());
    for (const f of files) await expect(access(f.path)).resolves.toBeUndefined();
    await expect(ring.rotate()).rejects.toThrow(/keyFiles/);
  });

  it("loads a P-256 key for ES256", async () => {
    const dir = await temp.make();
    const key = newPrivateKey("p256");
    const { path } = await writePem(dir, "p256.pem", key);
    const ring = await openKeyRing({ dataDir: dir, alg: "ES256", clock: new ManualClock(), maxTokenTtlMs: TTL, keyFiles: [path] });
    expect(ring.current().alg).toBe("ES256");
    expect(ring.current().kid).toBe(await thumbprint(key));
    expect(ring.jwks().keys[0]).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
  });

  it("refuses an empty list", async () => {
    await expect(
      openKeyRing({ dataDir: await temp.make(), alg: "EdDSA", clock: new ManualClock(), maxTokenTtlMs: TTL, keyFiles: [] }),
    ).rejects.toThrow("keyFiles must name at least one file");
  });
});

describe("bad keyFiles", () => {
  type Case = { name: string; expected: RegExp; make(dir: string): Promise<{ path: string; secrets: string[]; alg?: "EdDSA" | "ES256" }> };
  const cases: Case[] = [
    { name: "missing file", expected: /cannot be read \(ENOENT\)/, make: async (dir) => ({ path: join(dir, "nope.pem"), secrets: [] }) },
    { name: "a directory", expected: /cannot be read \(EISDIR\)/, make: async (dir) => ({ path: dir, secrets: [] }) },
    {
      name: "not a key",
      expected: /is not a PEM PKCS#8 private key/,
      make: async (dir) => {
        const path = join(dir, "junk.pem");
        await writeFile(path, "hello, this is not a key at all\n");
        return { path, secrets: ["hello, this is not a key"] };
      },
    },
    {
      name: "a public key",
      expected: /is not a PEM PKCS#8 private key/,
      make: async (dir) => {
        const key = newPrivateKey("ed25519");
        const path = join(dir, "pub.pem");
        await writeFile(path, createPublicKey(key).export({ type: "spki", format: "pem" }));
        return { path, secrets: secretFragments(key) };
      },
    },
    {
      name: "a SEC1 EC key",
      expected: /is not a PEM PKCS#8 private key/,
      make: async (dir) => {
        const key = newPrivateKey("p256");
        const path = join(dir, "sec1.pem");
        await writeFile(path, key.export({ type: "sec1", format: "pem" }));
        return { path, secrets: secretFragments(key), alg: "ES256" };
      },
    },
    {
      name: "an encrypted PKCS#8 key",
      expected: /is not a PEM PKCS#8 private key/,
      make: async (dir) => {
        const key = newPrivateKey("ed25519");
        const path = join(dir, "enc.pem");
        await writeFile(path, key.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "pw" }));
        return { path, secrets: secretFragments(key) };
      },
    },
    {
      name: "a corrupted PKCS#8 key",
      expected: /does not parse as a private key/,
      make: async (dir) => {
        const key = newPrivateKey("p256");
        const pem = key.export({ type: "pkcs8", format: "pem" }) as string;
        const lines = pem.split("\n");
        lines[1] = lines[1]!.slice(0, 20) + "AAAA" + lines[1]!.slice(24);
        const path = join(dir, "bad.pem");
        await writeFile(path, lines.join("\n"));
        return { path, secrets: [...secretFragments(key), lines[1]!], alg: "ES256" };
      },
    },
    {
      name: "a P-384 key",
      expected: /unsupported key type ec \(curve secp384r1\)/,
      make: async (dir) => {
        const key = newPrivateKey("p384");
        return { path: (await writePem(dir, "p384.pem", key)).path, secrets: secretFragments(key), alg: "ES256" };
      },
    },
    {
      name: "an RSA key",
      expected: /unsupported key type rsa/,
      make: async (dir) => {
        const key = newPrivateKey("rsa");
        return { path: (await writePem(dir, "rsa.pem", key)).path, secrets: secretFragments(key) };
      },
    },
    {
      name: "a key of another alg than configured",
      expected: /is an ES256 key but the configured signing alg is EdDSA/,
      make: async (dir) => {
        const key = newPrivateKey("p256");
        return { path: (await writePem(dir, "p256.pem", key)).path, secrets: secretFragments(key), alg: "EdDSA" };
      },
    },
  ];

  it.each(cases)("$name: KeyFileError naming the path, without key material", async ({ make, expected }) => {
    const dir = await temp.make();
    const { path, secrets, alg = "EdDSA" } = await make(dir);
    const err = await openKeyRing({ dataDir: dir, alg, clock: new ManualClock(), maxTokenTtlMs: TTL, keyFiles: [path] }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KeyFileError);
    const e = err as KeyFileError;
    expect(e.path).toBe(path);
    expect(e.message).toContain(path);
    expect(e.message).toMatch(expected);
    expect(e.cause).toBeUndefined();
    for (const text of [e.message, String(e), e.stack ?? "", inspect(e, { depth: 10, showHidden: true }), JSON.stringify(e)]) {
      expect(leaked(text, secrets)).toEqual([]);
    }
  });

  it("a second file holding the same key is refused, naming both files", async () => {
    const dir = await temp.make();
    const key = newPrivateKey("ed25519");
    const a = await writePem(dir, "a.pem", key);
    const b = await writePem(dir, "b.pem", key);
    await expect(
      openKeyRing({ dataDir: dir, alg: "EdDSA", clock: new ManualClock(), maxTokenTtlMs: TTL, keyFiles: [a.path, b.path] }),
    ).rejects.toThrow(`key file ${b.path}: holds the same key as ${a.path}`);
  });
});

import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Temp directories removed after each test by `cleanup()`. */
export function tempDirs(): { make(): Promise<string>; cleanup(): Promise<void> } {
  const dirs: string[] = [];
  return {
    async make() {
      const dir = await mkdtemp(join(tmpdir(), "capvend-keys-"));
      dirs.push(dir);
      return dir;
    },
    async cleanup() {
      await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
    },
  };
}

export type KeyKind = "ed25519" | "p256" | "p384" | "rsa";

/** A fresh private key of the given kind. */
export function newPrivateKey(kind: KeyKind): KeyObject {
  switch (kind) {
    case "ed25519":
      return generateKeyPairSync("ed25519").privateKey;
    case "p256":
      return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    case "p384":
      return generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    case "rsa":
      return generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  }
}

/** Writes a PKCS#8 PEM of `key` into `dir` and returns its path and PEM text. */
export async function writePem(dir: string, name: string, key: KeyObject): Promise<{ path: string; pem: string }> {
  const pem = key.export({ type: "pkcs8", format: "pem" }) as string;
  const path = join(dir, name);
  await writeFile(path, pem, { mode: 0o600 });
  return { path, pem };
}

/**
 * Every fragment of a private key that must never be printed: the PEM body lines, the whole
 * DER in base64/base64url/hex, and the JWK private scalar `d`.
 */
export function secretFragments(key: KeyObject): string[] {
  const pem = key.export({ type: "pkcs8", format: "pem" }) as string;
  const der = key.export({ type: "pkcs8", format: "der" });
  const jwk = key.export({ format: "jwk" });
  const lines = pem.split("\n").filter((l) => l.length >= 16 && !l.startsWith("-----"));
  return [...lines, der.toString("base64"), der.toString("base64url"), der.toString("hex"), jwk.d!].filter(
    (s): s is string => typeof s === "string" && s.length > 0,
  );
}

/** The fragments of `secrets` found in `text` (empty when it is clean). */
export function leaked(text: string, secrets: readonly string[]): string[] {
  return secrets.filter((s) => text.includes(s));
}

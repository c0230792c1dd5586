/**
 * The audit signing key: an Ed25519 key that signs checkpoints of the audit chain and nothing
 * else. It is separate from the token signing keys (rotating those never touches it, and a
 * leaked token key cannot forge a checkpoint). Kept at `<dataDir>/audit-signing-key.pem`
 * (0600) with its public half beside it (`audit-signing-key.pub.pem`), which is what an
 * auditor is given.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../keys/atomic-file.js";
import { jwkThumbprint } from "../keys/thumbprint.js";
import { PRIVATE_FILE_MODE, ensurePrivateFile, type PermissionWarning } from "./permissions.js";

/** File name of the private key in the data directory. */
export const AUDIT_SIGNING_KEY_FILE = "audit-signing-key.pem";
/** File name of the public key in the data directory: hand this to auditors. */
export const AUDIT_PUBLIC_KEY_FILE = "audit-signing-key.pub.pem";

/** Signs checkpoints. */
export interface AuditSigner {
  /** RFC 7638 thumbprint of the public key; also names the log on NATS. */
  readonly kid: string;
  /** The public key as base64url of its 32 raw bytes (the JWK `x`). */
  readonly publicX: string;
  sign(data: Uint8Array): string;
}

/** Loads the audit signing key of a data directory, creating it on first use. */
export async function openAuditSigner(dataDir: string, warn?: PermissionWarning): Promise<{ signer: AuditSigner; created: boolean }> {
  const file = join(dataDir, AUDIT_SIGNING_KEY_FILE);
  let privateKey: KeyObject;
  let created = false;
  try {
    const pem = await readFile(file, "utf8");
    await ensurePrivateFile(file, warn);
    try {
      privateKey = createPrivateKey(pem);
    } catch {
      throw new Error(`${file} does not hold a PEM private key`);
    }
    if (privateKey.asymmetricKeyType !== "ed25519") throw new Error(`${file} is not an Ed25519 key`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    privateKey = generateKeyPairSync("ed25519").privateKey;
    await writeFileAtomic(file, privateKey.export({ type: "pkcs8", format: "pem" }), PRIVATE_FILE_MODE);
    created = true;
  }
  const publicKey = createPublicKey(privateKey);
  const pubFile = join(dataDir, AUDIT_PUBLIC_KEY_FILE);
  const pubPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  const existing = await readFile(pubFile, "utf8").catch(() => undefined);
  if (existing !== pubPem) await writeFileAtomic(pubFile, pubPem, 0o644);
  const jwk = publicKey.export({ format: "jwk" });
  return {
    created,
    signer: {
      kid: jwkThumbprint(jwk),
      publicX: jwk.x!,
      sign: (data) => sign(null, data, privateKey).toString("base64url"),
    },
  };
}

/** The Ed25519 public key whose raw 32 bytes are `x` (base64url). */
export function publicKeyFromX(x: string): KeyObject {
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
}

/** Reads a PEM public key (an `audit-signing-key.pub.pem`) and returns its `x`. */
export async function readAuditPublicKey(path: string): Promise<string> {
  const pem = await readFile(path, "utf8");
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new Error(`${path} does not hold a PEM public key`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`${path} is not an Ed25519 public key`);
  return key.export({ format: "jwk" }).x!;
}

/** Checks an Ed25519 signature (base64url) over `data` made by the key `x`. */
export function verifySignature(x: string, data: Uint8Array, signature: string): boolean {
  try {
    return verify(null, data, publicKeyFromX(x), Buffer.from(signature, "base64url"));
  } catch {
    return false;
  }
}

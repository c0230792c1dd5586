import { createPrivateKey, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { algForKey } from "./signing-key.js";

/**
 * A key file that cannot be used: unreadable, not a PKCS#8 private key, or an unsupported
 * key type. The message names the file and the problem, never its contents.
 */
export class KeyFileError extends Error {
  override readonly name = "KeyFileError";
  /** The file at fault. */
  readonly path: string;

  constructor(path: string, problem: string) {
    super(`key file ${path}: ${problem}`);
    this.path = path;
  }
}

const PKCS8_LABEL = Buffer.from("-----BEGIN PRIVATE KEY-----");

/**
 * Reads a PEM PKCS#8 private key (Ed25519 or P-256). Throws `KeyFileError`.
 * OpenSSL's own errors are not passed on as `cause`: we cannot promise what they quote.
 */
export async function readPrivateKeyPem(path: string): Promise<KeyObject> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (err) {
    throw new KeyFileError(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? "unknown error"})`);
  }
  try {
    // Encrypted keys, SEC1/PKCS#1 keys, public keys and certificates all carry other labels.
    if (pem.indexOf(PKCS8_LABEL) === -1) {
      throw new KeyFileError(path, "is not a PEM PKCS#8 private key (expected a -----BEGIN PRIVATE KEY----- block)");
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: "pem" });
    } catch {
      throw new KeyFileError(path, "holds a PKCS#8 block that does not parse as a private key");
    }
    try {
      algForKey(key);
    } catch (err) {
      throw new KeyFileError(path, (err as Error).message);
    }
    return key;
  } finally {
    // The KeyObject holds its own copy; don't leave the encoded key lying in the heap.
    pem.fill(0);
  }
}

import type { KeyObject } from "node:crypto";
import { access, chmod, mkdir, readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { TEMP_SUFFIX, fsyncDir, writeFileAtomic } from "./atomic-file.js";
import { KeyFileError, readPrivateKeyPem } from "./pem-file.js";
import { createPublicKey } from "node:crypto";
import { SIGNING_ALGS, toSigningKey, toVerifyingKey, type SigningAlg, type SigningKey } from "./signing-key.js";

/** Mode of the key directory: owner only. */
export const KEY_DIR_MODE = 0o700;
/** Mode of every key and metadata file: owner read/write only. */
export const KEY_FILE_MODE = 0o600;
/** Name of the metadata file that lists the keys, their order and retirement times. */
export const INDEX_FILE = "keyring.json";

// A kid is a base64url SHA-256 thumbprint; checking the shape also keeps it a safe file name.
const KID_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const KEY_FILE_PATTERN = /^([A-Za-z0-9_-]{43})(?:\.pub)?\.pem$/;

/** What the index records about a key (everything but the key itself). */
export interface KeyMeta {
  kid: string;
  alg: SigningAlg;
  createdAt: number;
  retiredAt?: number;
}

type IndexEntry = KeyMeta;

/**
 * The key ring's persistence in `<dataDir>/keys/`: one `<kid>.pem` (PKCS#8) per key and
 * `keyring.json` listing them oldest first. The index is the source of truth: a key file
 * becomes part of the ring only once the index names it, so a crash between the two writes
 * leaves an orphan file that was never used to sign, and the next open deletes it.
 */
export interface KeyStore {
  readonly dir: string;
  /** Loads the indexed keys, oldest first; deletes orphan key files and crash debris. */
  load(): Promise<SigningKey[]>;
  /** Writes a key's private PEM atomically (mode 0600). */
  saveKey(kid: string, privateKey: KeyObject): Promise<void>;
  /** Rewrites the index atomically, oldest key first. */
  saveIndex(keys: readonly KeyMeta[]): Promise<void>;
  /**
   * Keeps only the public part of a retired key: writes `<kid>.pub.pem` (SPKI), then
   * deletes the private `<kid>.pem`. Idempotent.
   */
  retireKey(kid: string, publicKey: KeyObject): Promise<void>;
  /** Deletes key files, private and public (already dropped from the index). Missing files are not an error. */
  removeKeys(kids: readonly string[]): Promise<void>;
}

/** Creates (or tightens to 0700) `<dataDir>/keys` and returns its store. */
export async function openKeyStore(dataDir: string): Promise<KeyStore> {
  const dir = join(dataDir, "keys");
  await mkdir(dir, { recursive: true, mode: KEY_DIR_MODE });
  // mkdir's mode is filtered by the umask and ignored for an existing directory.
  await chmod(dir, KEY_DIR_MODE);
  return new FileKeyStore(dir);
}

class FileKeyStore implements KeyStore {
  constructor(readonly dir: string) {}

  async load(): Promise<SigningKey[]> {
    const indexPath = join(this.dir, INDEX_FILE);
    const entries = await readIndex(indexPath);
    const keys: SigningKey[] = [];
    for (const entry of entries) {
      const publicPath = this.#publicKeyPath(entry.kid);
      if (entry.retiredAt !== undefined && (await exists(publicPath))) {
        // A retired key whose private part is gone: verify only.
        const key = toVerifyingKey(await readPublicKeyPem(publicPath), entry.createdAt, entry.retiredAt);
        if (key.kid !== entry.kid || key.alg !== entry.alg) {
          throw new KeyFileError(publicPath, `does not hold the ${entry.alg} public key ${entry.kid} that ${INDEX_FILE} lists`);
        }
        keys.push(key);
        // A crash after the public file was written and before the private one was deleted.
        await unlinkIfPresent(this.#keyPath(entry.kid));
        continue;
      }
      const path = this.#keyPath(entry.kid);
      const key = toSigningKey(await readPrivateKeyPem(path), entry.createdAt, entry.retiredAt);
      if (key.kid !== entry.kid || key.alg !== entry.alg) {
        throw new KeyFileError(path, `does not hold the ${entry.alg} key ${entry.kid} that ${INDEX_FILE} lists`);
      }
      keys.push(key);
    }
    await this.#removeDebris(new Set(entries.map((e) => e.kid)));
    return keys;
  }

  async saveKey(kid: string, privateKey: KeyObject): Promise<void> {
    const pem = privateKey.export({ type: "pkcs8", format: "pem" });
    await writeFileAtomic(this.#keyPath(kid), pem, KEY_FILE_MODE);
  }

  async saveIndex(keys: readonly KeyMeta[]): Promise<void> {
    const entries: IndexEntry[] = keys.map((k) =>
      k.retiredAt === undefined
        ? { kid: k.kid, alg: k.alg, createdAt: k.createdAt }
        : { kid: k.kid, alg: k.alg, createdAt: k.createdAt, retiredAt: k.retiredAt },
    );
    await writeFileAtomic(
      join(this.dir, INDEX_FILE),
      `${JSON.stringify({ version: 1, keys: entries }, null, 2)}\n`,
      KEY_FILE_MODE,
    );
  }

  async retireKey(kid: string, publicKey: KeyObject): Promise<void> {
    const pem = publicKey.export({ type: "spki", format: "pem" });
    // The public file first: a crash in between leaves both, and the next start deletes the private one.
    await writeFileAtomic(this.#publicKeyPath(kid), pem, KEY_FILE_MODE);
    await unlinkIfPresent(this.#keyPath(kid));
    await fsyncDir(this.dir);
  }

  async removeKeys(kids: readonly string[]): Promise<void> {
    if (kids.length === 0) return;
    for (const kid of kids) {
      await unlinkIfPresent(this.#keyPath(kid));
      await unlinkIfPresent(this.#publicKeyPath(kid));
    }
    await fsyncDir(this.dir);
  }

  #publicKeyPath(kid: string): string {
    if (!KID_PATTERN.test(kid)) throw new TypeError(`not a key id: ${JSON.stringify(kid)}`);
    return join(this.dir, `${kid}.pub.pem`);
  }

  #keyPath(kid: string): string {
    if (!KID_PATTERN.test(kid)) throw new TypeError(`not a key id: ${JSON.stringify(kid)}`);
    return join(this.dir, `${kid}.pem`);
  }

  async #removeDebris(indexed: ReadonlySet<string>): Promise<void> {
    let removed = false;
    for (const name of await readdir(this.dir)) {
      const orphan = KEY_FILE_PATTERN.exec(name);
      const isTemp = name.startsWith(".") && name.endsWith(TEMP_SUFFIX);
      if ((orphan && !indexed.has(orphan[1]!)) || isTemp) {
        await unlinkIfPresent(join(this.dir, name));
        removed = true;
      }
    }
    if (removed) await fsyncDir(this.dir);
  }
}

async function readIndex(path: string): Promise<IndexEntry[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new KeyFileError(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? "unknown error"})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new KeyFileError(path, "is not valid JSON");
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if ((doc as { version?: unknown } | null)?.version !== 1 || !Array.isArray(keys)) {
    throw new KeyFileError(path, 'is not a version 1 key index ({"version":1,"keys":[...]})');
  }
  const seen = new Set<string>();
  return keys.map((raw: unknown, i): IndexEntry => {
    const e = raw as Partial<Record<keyof IndexEntry, unknown>> | null;
    const bad = (what: string) => new KeyFileError(path, `entry ${i}: ${what}`);
    if (typeof e?.kid !== "string" || !KID_PATTERN.test(e.kid)) throw bad("kid is not a key thumbprint");
    if (seen.has(e.kid)) throw bad(`kid ${e.kid} is listed twice`);
    seen.add(e.kid);
    if (!SIGNING_ALGS.includes(e.alg as SigningAlg)) throw bad(`alg must be one of ${SIGNING_ALGS.join(", ")}`);
    if (typeof e.createdAt !== "number" || !Number.isFinite(e.createdAt)) throw bad("createdAt is not a number");
    if (e.retiredAt !== undefined && (typeof e.retiredAt !== "number" || !Number.isFinite(e.retiredAt))) {
      throw bad("retiredAt is not a number");
    }
    const entry: IndexEntry = { kid: e.kid, alg: e.alg as SigningAlg, createdAt: e.createdAt };
    if (e.retiredAt !== undefined) entry.retiredAt = e.retiredAt as number;
    return entry;
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads an SPKI PEM public key; a KeyFileError names the file when it is not one. */
async function readPublicKeyPem(path: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, "utf8");
  } catch (err) {
    throw new KeyFileError(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? "unknown error"})`);
  }
  try {
    return createPublicKey(pem);
  } catch {
    throw new KeyFileError(path, "is not a PEM public key");
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/**
 * Signed checkpoints of the audit chain, in the manner of Certificate Transparency's signed
 * tree heads. A checkpoint says "the log holds records 1..seq, and record seq's line hashes
 * to `hash`", signed with the audit signing key. Because every line's `prev` is the hash of
 * the line before, one checkpoint commits to every record up to `seq`:
 *
 * - kept in the head file `<dataDir>/audit-head.json` (outside `audit/`), it shows a log cut
 *   short (records, segments or the whole directory deleted) and a renumbered segment;
 * - kept somewhere the writer of the log cannot reach (a copy an auditor took, the JetStream
 *   audit stream), it shows a chain rebuilt from scratch, even one re-signed with a stolen
 *   audit key, up to the checkpoint's `seq`.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../keys/atomic-file.js";
import { canonicalJson } from "./chain.js";
import type { JsonValue } from "./event.js";
import { PRIVATE_FILE_MODE } from "./permissions.js";
import type { AuditSigner } from "./signing-key.js";
import { verifySignature } from "./signing-key.js";

/** File name of the head file in the data directory. */
export const AUDIT_HEAD_FILE = "audit-head.json";

/** Format version of checkpoints. */
export const CHECKPOINT_VERSION = 1;

// Domain separation: a checkpoint signature can never be mistaken for another signature.
const SIGNING_PREFIX = "capvend audit checkpoint v1\n";

/** One signed checkpoint. */
export interface Checkpoint {
  v: number;
  /** Records 1..seq are committed to. 0 for an empty log. */
  seq: number;
  /** sha256 hex of record `seq`'s line (64 zeros when seq is 0): the next record's `prev`. */
  hash: string;
  /** Segment number holding record `seq`. */
  segment: number;
  /** The replica that wrote the log. */
  replica: string;
  /** ISO 8601 time of signing. */
  time: string;
  /** Thumbprint of the audit signing key. */
  kid: string;
  /** The audit signing key's public `x` (base64url Ed25519). Trust it only through `kid` pinned elsewhere. */
  x: string;
  /** Ed25519 signature (base64url) over the other fields. */
  sig: string;
}

function signedBytes(c: Omit<Checkpoint, "sig">): Buffer {
  const body: { [k: string]: JsonValue } = { v: c.v, seq: c.seq, hash: c.hash, segment: c.segment, replica: c.replica, time: c.time, kid: c.kid, x: c.x };
  return Buffer.from(SIGNING_PREFIX + canonicalJson(body), "utf8");
}

/** Signs a checkpoint of the chain at `seq`/`hash`. */
export function signCheckpoint(signer: AuditSigner, at: { seq: number; hash: string; segment: number; replica: string; time: string }): Checkpoint {
  const body = { v: CHECKPOINT_VERSION, ...at, kid: signer.kid, x: signer.publicX };
  return { ...body, sig: signer.sign(signedBytes(body)) };
}

/**
 * Checks a checkpoint's form and signature. With `trustedX` the signature must be by that key;
 * without it, by the key the checkpoint names (which proves only that it was not altered since
 * signing: pin the key to prove who signed). Returns why it fails, or undefined.
 */
export function checkCheckpoint(c: Checkpoint, trustedX?: string): string | undefined {
  if (c.v !== CHECKPOINT_VERSION) return `unsupported checkpoint version ${String(c.v)}`;
  if (trustedX !== undefined && c.x !== trustedX) return "signed by another audit key than the one trusted";
  if (!verifySignature(c.x, signedBytes(c), c.sig)) return "signature does not verify (checkpoint altered or forged)";
  return undefined;
}

/** Parses a checkpoint from JSON text; throws naming what is wrong. */
export function parseCheckpoint(text: string, where: string): Checkpoint {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${where}: not JSON`);
  }
  if (!isCheckpoint(v)) throw new Error(`${where}: not a capvend audit checkpoint`);
  return v;
}

function isCheckpoint(v: unknown): v is Checkpoint {
  if (typeof v !== "object" || v === null) return false;
  const c = v as Record<string, unknown>;
  return (
    typeof c.v === "number" &&
    Number.isSafeInteger(c.seq) && (c.seq as number) >= 0 &&
    typeof c.hash === "string" && /^[0-9a-f]{64}$/.test(c.hash) &&
    Number.isSafeInteger(c.segment) && (c.segment as number) >= 0 &&
    typeof c.replica === "string" && typeof c.time === "string" &&
    typeof c.kid === "string" && typeof c.x === "string" && typeof c.sig === "string"
  );
}

/**
 * Reads checkpoints from an anchor file: a head file (one checkpoint), or a JSON Lines file
 * of checkpoints (e.g. collected over time). Returns them in file order.
 */
export async function readCheckpointFile(path: string): Promise<Checkpoint[]> {
  const text = (await readFile(path, "utf8")).trim();
  if (text === "") throw new Error(`${path}: empty`);
  if (text.startsWith("{") && !text.includes("\n")) return [parseCheckpoint(text, path)];
  try {
    return [parseCheckpoint(text, path)];
  } catch {
    return text.split("\n").filter((l) => l.trim() !== "").map((l, i) => parseCheckpoint(l, `${path}:${i + 1}`));
  }
}

/** The head file of a data directory. */
export function headFileOf(dataDir: string): string {
  return join(dataDir, AUDIT_HEAD_FILE);
}

/** Reads the head file; undefined when there is none. Throws when it exists but is unreadable. */
export async function readHead(dataDir: string): Promise<Checkpoint | undefined> {
  const path = headFileOf(dataDir);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  return parseCheckpoint(text, path);
}

/** Replaces the head file atomically (temp file, fsync, rename, fsync of the directory). */
export async function writeHead(dataDir: string, c: Checkpoint): Promise<void> {
  await writeFileAtomic(headFileOf(dataDir), JSON.stringify(c) + "\n", PRIVATE_FILE_MODE);
}

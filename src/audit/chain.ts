/**
 * The hash chain that makes the log tamper-evident. One record is one line:
 *
 *   {"seq":n,"prev":"<sha256 hex of the previous line>","hash":"<sha256 hex>",<event fields, keys sorted>}
 *
 * - `hash` = sha256(prev + canonicalJson(event fields + seq)): editing a record's content
 *   breaks its own hash, so the edit is reported at that record.
 * - `prev` = sha256 of the previous line's exact bytes (without its newline): the chain links
 *   whole lines, chain fields included, and crosses file boundaries.
 * - `seq` increases by one from 1: deleting, inserting or swapping a record shows at the first
 *   line where the sequence breaks, even when the moved record is self-consistent.
 * - A line must be byte-for-byte the canonical serialisation of what it parses to, so no edit
 *   hides in whitespace, key order, escapes or duplicate keys.
 *
 * Without a key, someone who can write the files can rewrite the chain from an edit to the
 * end; anchoring the head elsewhere (another sink, a published `lastHash`) closes that gap.
 */
import { sha256Hex } from "../security/sha256.js";
import type { JsonValue } from "./event.js";

export { sha256Hex };

/** `prev` of the first record ever written. */
export const GENESIS_PREV = "0".repeat(64);

const HEX64 = /^[0-9a-f]{64}$/;

/** JSON with object keys sorted by code unit at every level and no whitespace. */
export function canonicalJson(value: JsonValue): string {
  if (typeof value !== "object" || value === null) return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  return `{${canonicalMembers(value).join(",")}}`;
}

// Sorted explicitly: JSON.stringify would put integer-like keys first in numeric order.
function canonicalMembers(obj: { [key: string]: JsonValue }): string[] {
  const keys = Object.keys(obj).sort();
  return keys.map((k) => memberPrefix(k) + canonicalJson(obj[k]!));
}

// `"key":` per key name. Records use a few dozen names, so each is quoted once, not per record.
const prefixes = new Map<string, string>();
const MAX_PREFIXES = 1024;

function memberPrefix(key: string): string {
  let p = prefixes.get(key);
  if (p === undefined) {
    p = `${JSON.stringify(key)}:`;
    if (prefixes.size < MAX_PREFIXES) prefixes.set(key, p);
  }
  return p;
}

/** A record ready to append. */
export interface SealedRecord {
  seq: number;
  hash: string;
  /** The line without its trailing newline. */
  line: string;
  /** sha256 of `line`: the next record's `prev`. */
  lineHash: string;
}

/** Chains `body` (event fields, no chain fields) after a record whose line hashes to `prev`. */
export function sealRecord(prev: string, seq: number, body: { [key: string]: JsonValue }): SealedRecord {
  // One pass over the sorted keys builds the members of the line; the hashed text is the same
  // members with "seq" at its sorted position (canonicalJson({...body, seq})), spliced in by offset.
  const keys = Object.keys(body).sort();
  let members = "";
  let seqOffset = -1;
  for (const k of keys) {
    if (seqOffset < 0 && k > "seq") seqOffset = members.length;
    const member = memberPrefix(k) + canonicalJson(body[k]!);
    members = members === "" ? member : `${members},${member}`;
  }
  const seqMember = `"seq":${seq}`;
  let withSeq: string;
  if (members === "") withSeq = seqMember;
  else if (seqOffset < 0) withSeq = `${members},${seqMember}`;
  else if (seqOffset === 0) withSeq = `${seqMember},${members}`;
  // members.slice(seqOffset) starts with the comma before the first key after "seq".
  else withSeq = `${members.slice(0, seqOffset)},${seqMember}${members.slice(seqOffset)}`;
  const hash = sha256Hex(`${prev}{${withSeq}}`);
  const head = `{"seq":${seq},"prev":"${prev}","hash":"${hash}"`;
  const line = members === "" ? `${head}}` : `${head},${members}}`;
  return { seq, hash, line, lineHash: sha256Hex(line) };
}

/** Why a line is not a valid record on its own. */
export type RecordFault = "malformed" | "not_canonical" | "hash_mismatch";

/** A line that passed the self-checks (form and own hash). */
export interface OpenedRecord {
  seq: number;
  prev: string;
  hash: string;
  body: { [key: string]: JsonValue };
  lineHash: string;
}

/**
 * Parses one line (bytes without the newline) and checks what a record can prove alone: it
 * is a canonical record and its `hash` matches its content. Chain position (`seq`, `prev`)
 * is the caller's to check.
 */
export function openRecord(raw: Uint8Array): { ok: true; record: OpenedRecord } | { ok: false; fault: RecordFault; reason: string; seq?: number } {
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, fault: "malformed", reason: "line is not valid JSON" };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { ok: false, fault: "malformed", reason: "line is not a JSON object" };
  }
  const { seq, prev, hash, ...body } = parsed as { [key: string]: JsonValue };
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) {
    return { ok: false, fault: "malformed", reason: "record has no valid seq" };
  }
  if (typeof prev !== "string" || !HEX64.test(prev) || typeof hash !== "string" || !HEX64.test(hash)) {
    return { ok: false, fault: "malformed", reason: "record has no valid prev/hash", seq };
  }
  const sealed = sealRecord(prev, seq, body);
  if (sealed.hash !== hash) {
    return { ok: false, fault: "hash_mismatch", reason: "hash does not match the record's content (record altered)", seq };
  }
  if (!Buffer.from(sealed.line, "utf8").equals(raw)) {
    return { ok: false, fault: "not_canonical", reason: "record is not in canonical form (record altered)", seq };
  }
  return { ok: true, record: { seq, prev, hash, body, lineHash: sealed.lineHash } };
}

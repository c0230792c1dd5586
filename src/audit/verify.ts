/**
 * Checks a whole audit log (or one segment) against its hash chain and its signed
 * checkpoints, and reports the first record that is missing or breaks the chain.
 */
import { basename, dirname, join } from "node:path";
import { GENESIS_PREV, openRecord } from "./chain.js";
import type { Checkpoint } from "./checkpoint.js";
import { checkCheckpoint, headFileOf, readHead } from "./checkpoint.js";
import { readRawLines } from "./line-reader.js";
import type { Segment } from "./segments.js";
import { AUDIT_SUBDIR, listSegments, resolveAuditPath, segmentName, segmentNumber } from "./segments.js";

/** Why verification stopped. */
export type AuditVerifyFault =
  | "not_found"
  | "torn"
  | "malformed"
  | "not_canonical"
  | "hash_mismatch"
  | "seq_mismatch"
  | "prev_mismatch"
  | "segment_missing"
  | "records_missing"
  | "checkpoint_mismatch"
  | "checkpoint_invalid";

/** A checkpoint the log was held to, and where it came from. */
export interface CheckedCheckpoint {
  seq: number;
  time: string;
  kid: string;
  /** "head" (the data directory's head file) or the anchor's name (a file path or NATS URL). */
  source: string;
}

/** The outcome of `verifyAuditLog`. */
export type AuditVerifyResult =
  | { ok: true; records: number; files: number; checkpoints?: CheckedCheckpoint[] }
  | {
      ok: false;
      /** Records verified before the broken or missing one. */
      records: number;
      file: string;
      /** 1-based line in `file`; 0 when no line is involved. */
      line: number;
      /** The first broken or missing record's seq, when known. */
      seq?: number;
      code: AuditVerifyFault;
      reason: string;
    };

/** Options of `verifyAuditLog`. */
export interface AuditVerifyOptions {
  /**
   * Check against the data directory's head file (`audit-head.json`) when there is one.
   * Default true; a single segment is never checked against it.
   */
  head?: boolean;
  /** Externally kept checkpoints (an auditor's copy, the JetStream audit stream), each with its source name. */
  anchors?: { checkpoint: Checkpoint; source: string }[];
  /**
   * The audit public key (`x`, base64url) the checkpoints must be signed by. Without it each
   * checkpoint is checked against the key it names, which proves it unaltered, not who signed.
   */
  trustedKeyX?: string;
}

/**
 * Verifies every record in order: each line must be a complete, canonical record whose hash
 * matches its content, whose `seq` is one more than the previous record's (1 for the first),
 * and whose `prev` is the sha256 of the previous line (64 zeros for the first); the chain runs
 * across segment files, numbered from 1 without gaps. Then the log is held to every signed
 * checkpoint (the head file, and `anchors`): it must reach each checkpoint's `seq`, and the
 * record there must hash to the checkpoint's `hash` in the segment it names. So deleted tail
 * records, a deleted or renumbered segment, a missing directory and a chain rebuilt after a
 * checkpoint was taken are all reported, naming the first missing or broken record.
 *
 * `pathOrDir`: a data directory (with `audit/` inside), the audit directory, or one segment
 * file. A single segment is anchored on the last record of the segment before it when that
 * file exists, on the genesis when it is the first segment, and otherwise on its own first
 * record.
 */
export async function verifyAuditLog(pathOrDir: string, options: AuditVerifyOptions = {}): Promise<AuditVerifyResult> {
  const where = await resolveAuditPath(pathOrDir);
  const checkpoints: { c: Checkpoint; source: string }[] = [];
  const dataDir = !where ? (basename(pathOrDir) === AUDIT_SUBDIR ? dirname(pathOrDir) : pathOrDir) : where.kind === "dir" ? dirname(where.auditDir) : undefined;
  if (dataDir !== undefined && options.head !== false) {
    let head: Checkpoint | undefined;
    try {
      head = await readHead(dataDir);
    } catch (err) {
      return { ok: false, records: 0, file: headFileOf(dataDir), line: 0, code: "checkpoint_invalid", reason: (err as Error).message };
    }
    if (head) checkpoints.push({ c: head, source: "head" });
  }
  for (const a of options.anchors ?? []) checkpoints.push({ c: a.checkpoint, source: a.source });
  for (const { c, source } of checkpoints) {
    const bad = checkCheckpoint(c, options.trustedKeyX);
    const file = source === "head" ? headFileOf(dataDir!) : source;
    if (bad) return { ok: false, records: 0, file, line: 0, code: "checkpoint_invalid", reason: `checkpoint (${source}): ${bad}` };
  }
  const kids = new Set(checkpoints.map(({ c }) => c.kid));
  if (kids.size > 1) {
    return { ok: false, records: 0, file: dataDir ?? pathOrDir, line: 0, code: "checkpoint_mismatch", reason: `checkpoints are signed by different audit keys (${[...kids].join(", ")}): the audit key was replaced, so the log may have been rebuilt` };
  }
  const committed = checkpoints.reduce((m, { c }) => Math.max(m, c.seq), 0);

  if (!where || (where.kind === "dir" && (await listSegments(where.auditDir)).length === 0)) {
    const auditDir = where?.kind === "dir" ? where.auditDir : join(dataDir ?? pathOrDir, AUDIT_SUBDIR);
    if (committed > 0) {
      return { ok: false, records: 0, file: auditDir, line: 0, seq: 1, code: "records_missing", reason: `no audit records at ${auditDir}, but a checkpoint covers records 1 to ${committed}: the log was deleted (first missing: seq 1)` };
    }
    if (!where) return { ok: false, records: 0, file: pathOrDir, line: 0, code: "not_found", reason: `no audit log at ${pathOrDir}` };
    return { ok: false, records: 0, file: auditDir, line: 0, code: "not_found", reason: `no audit log at ${auditDir}` };
  }

  let segments: Segment[];
  let expected: { seq: number; prev: string } | undefined = { seq: 1, prev: GENESIS_PREV };
  if (where.kind === "dir") {
    segments = await listSegments(where.auditDir);
    for (let i = 0; i < segments.length; i++) {
      if (segments[i]!.n !== i + 1) {
        return {
          ok: false,
          records: 0,
          file: join(where.auditDir, segmentName(i + 1)),
          line: 0,
          code: "segment_missing",
          reason: `segment ${segmentName(i + 1)} is missing (found ${segments.map((s) => s.n).join(", ")}): segments were deleted or renumbered`,
        };
      }
    }
  } else {
    const n = segmentNumber(basename(where.file));
    segments = [{ n: n ?? 0, path: where.file }];
    if (n !== 1) expected = n === undefined ? undefined : await anchorBefore(where.auditDir, n);
  }

  const wanted = new Set(checkpoints.map(({ c }) => c.seq));
  const seen = new Map<number, { hash: string; segment: number; file: string; line: number }>();
  let records = 0;
  let last = { file: segments[0]!.path, line: 0 };
  for (const seg of segments) {
    for await (const raw of readRawLines(seg.path)) {
      const at = { records, file: seg.path, line: raw.line };
      if (!raw.terminated) {
        return { ok: false, ...at, code: "torn", reason: "the last line is incomplete (no newline): a torn write" };
      }
      const opened = openRecord(raw.bytes);
      if (opened.ok === false) {
        const r: AuditVerifyResult = { ok: false, ...at, code: opened.fault, reason: opened.reason };
        if (opened.seq !== undefined) r.seq = opened.seq;
        return r;
      }
      const rec = opened.record;
      if (expected && rec.seq !== expected.seq) {
        return {
          ok: false,
          ...at,
          seq: rec.seq,
          code: "seq_mismatch",
          reason: `expected seq ${expected.seq}, found ${rec.seq}: a record was deleted, inserted or moved here (first missing or broken: seq ${expected.seq})`,
        };
      }
      if (expected && rec.prev !== expected.prev) {
        return {
          ok: false,
          ...at,
          seq: rec.seq,
          code: "prev_mismatch",
          reason: "prev does not match the hash of the previous record: the previous record was altered or replaced",
        };
      }
      if (wanted.has(rec.seq)) seen.set(rec.seq, { hash: rec.lineHash, segment: seg.n, file: seg.path, line: raw.line });
      records++;
      last = { file: seg.path, line: raw.line };
      expected = { seq: rec.seq + 1, prev: rec.lineHash };
    }
  }

  const lastSeq = expected ? expected.seq - 1 : records;
  for (const { c, source } of [...checkpoints].sort((a, b) => a.c.seq - b.c.seq)) {
    if (c.seq === 0) continue;
    const name = source === "head" ? `the head file's checkpoint of ${c.time}` : `the checkpoint of ${c.time} from ${source}`;
    if (lastSeq < c.seq) {
      return {
        ok: false,
        records,
        file: last.file,
        line: last.line + 1,
        seq: lastSeq + 1,
        code: "records_missing",
        reason: `the log ends at seq ${lastSeq} but ${name} covers records up to ${c.seq}: records ${lastSeq + 1} to ${c.seq} were deleted (first missing: seq ${lastSeq + 1})`,
      };
    }
    const got = seen.get(c.seq);
    if (!got) continue; // a single segment that does not reach back to it
    if (got.hash !== c.hash) {
      return {
        ok: false,
        records,
        file: got.file,
        line: got.line,
        seq: c.seq,
        code: "checkpoint_mismatch",
        reason: `record ${c.seq} is not the record ${name} committed to: the chain was rewritten at or before seq ${c.seq}`,
      };
    }
    if (where.kind === "dir" && got.segment !== c.segment) {
      return {
        ok: false,
        records,
        file: got.file,
        line: got.line,
        seq: c.seq,
        code: "checkpoint_mismatch",
        reason: `record ${c.seq} is in ${segmentName(got.segment)} but ${name} puts it in ${segmentName(c.segment)}: segments were renumbered`,
      };
    }
  }
  const result: AuditVerifyResult = { ok: true, records, files: segments.length };
  if (checkpoints.length > 0) result.checkpoints = checkpoints.map(({ c, source }) => ({ seq: c.seq, time: c.time, kid: c.kid, source }));
  return result;
}

/** Where the chain stands at the end of segment `n - 1`, when that segment is readable. */
async function anchorBefore(auditDir: string, n: number): Promise<{ seq: number; prev: string } | undefined> {
  let last: Buffer | undefined;
  try {
    for await (const raw of readRawLines(join(auditDir, segmentName(n - 1)))) {
      if (raw.terminated) last = raw.bytes;
    }
  } catch {
    return undefined;
  }
  if (!last) return undefined;
  const opened = openRecord(last);
  return opened.ok ? { seq: opened.record.seq + 1, prev: opened.record.lineHash } : undefined;
}

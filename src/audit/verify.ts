/**
 * Checks a whole audit log (or one segment) against its hash chain and reports the first
 * record that breaks it.
 */
import { basename, join } from "node:path";
import { GENESIS_PREV, openRecord } from "./chain.js";
import { readRawLines } from "./line-reader.js";
import type { Segment } from "./segments.js";
import { listSegments, resolveAuditPath, segmentName, segmentNumber } from "./segments.js";

/** Why verification stopped. */
export type AuditVerifyFault =
  | "not_found"
  | "torn"
  | "malformed"
  | "not_canonical"
  | "hash_mismatch"
  | "seq_mismatch"
  | "prev_mismatch";

/** The outcome of `verifyAuditLog`. */
export type AuditVerifyResult =
  | { ok: true; records: number; files: number }
  | {
      ok: false;
      /** Records verified before the broken one. */
      records: number;
      file: string;
      /** 1-based line in `file`; 0 when no line is involved. */
      line: number;
      /** The broken record's own seq, when it has a readable one. */
      seq?: number;
      code: AuditVerifyFault;
      reason: string;
    };

/**
 * Verifies every record in order: each line must be a complete, canonical record whose hash
 * matches its content, whose `seq` is one more than the previous record's (1 for the first),
 * and whose `prev` is the sha256 of the previous line (64 zeros for the first); the chain runs
 * across segment files. Reports the first record that fails, so an edited, deleted, inserted,
 * swapped or torn record is reported where it is.
 *
 * `pathOrDir`: a data directory (with `audit/` inside), the audit directory, or one segment
 * file. A single segment is anchored on the last record of the segment before it when that
 * file exists, on the genesis when it is the first segment, and otherwise on its own first
 * record.
 */
export async function verifyAuditLog(pathOrDir: string): Promise<AuditVerifyResult> {
  const where = await resolveAuditPath(pathOrDir);
  if (!where) return { ok: false, records: 0, file: pathOrDir, line: 0, code: "not_found", reason: `no audit log at ${pathOrDir}` };

  let segments: Segment[];
  let expected: { seq: number; prev: string } | undefined = { seq: 1, prev: GENESIS_PREV };
  if (where.kind === "dir") {
    segments = await listSegments(where.auditDir);
  } else {
    const n = segmentNumber(basename(where.file));
    segments = [{ n: n ?? 0, path: where.file }];
    if (n !== 1) expected = n === undefined ? undefined : await anchorBefore(where.auditDir, n);
  }

  let records = 0;
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
          reason: `expected seq ${expected.seq}, found ${rec.seq}: a record was deleted, inserted or moved here`,
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
      records++;
      expected = { seq: rec.seq + 1, prev: rec.lineHash };
    }
  }
  return { ok: true, records, files: segments.length };
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

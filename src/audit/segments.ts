/** Where the log lives on disk: `<data dir>/audit/audit-000001.jsonl`, `audit-000002.jsonl`, … */
import { readdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Sub-directory of the data directory that holds the audit log. */
export const AUDIT_SUBDIR = "audit";

const SEGMENT_RE = /^audit-(\d{6,})\.jsonl$/;

/** File name of segment `n` (1-based). */
export function segmentName(n: number): string {
  return `audit-${String(n).padStart(6, "0")}.jsonl`;
}

/** The segment number of a file name, or undefined when it is not a segment. */
export function segmentNumber(fileName: string): number | undefined {
  const m = SEGMENT_RE.exec(fileName);
  return m ? Number(m[1]) : undefined;
}

/** A segment file. */
export interface Segment {
  n: number;
  path: string;
}

/** The segments in `auditDir`, oldest first. Missing directory: none. */
export async function listSegments(auditDir: string, names?: string[]): Promise<Segment[]> {
  let entries = names;
  if (!entries) {
    try {
      entries = await readdir(auditDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
  }
  const out: Segment[] = [];
  for (const name of entries) {
    const n = segmentNumber(name);
    if (n !== undefined) out.push({ n, path: join(auditDir, name) });
  }
  return out.sort((a, b) => a.n - b.n);
}

/**
 * What a user-supplied path names: a segment file, the audit directory itself, or a data
 * directory with an `audit/` inside. Undefined when nothing exists there.
 */
export async function resolveAuditPath(
  path: string,
): Promise<{ kind: "file"; auditDir: string; file: string } | { kind: "dir"; auditDir: string } | undefined> {
  const s = await stat(path).catch(() => undefined);
  if (!s) return undefined;
  if (s.isFile()) return { kind: "file", auditDir: dirname(path), file: path };
  const sub = join(path, AUDIT_SUBDIR);
  const subStat = await stat(sub).catch(() => undefined);
  if (subStat?.isDirectory()) return { kind: "dir", auditDir: sub };
  if (basename(path) === AUDIT_SUBDIR || (await listSegments(path)).length > 0) return { kind: "dir", auditDir: path };
  return { kind: "dir", auditDir: sub };
}

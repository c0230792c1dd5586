/**
 * Prints audit records, optionally only one session's, agent's or user's, and follows the log
 * as it grows and rotates.
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { listSegments, resolveAuditPath, segmentName } from "./segments.js";

/** Which records to print; every given field must match. */
export interface AuditTailFilter {
  session_id?: string;
  agent_id?: string;
  user_id?: string;
}

/** Options for `tailAuditLog`. */
export interface TailAuditLogOptions {
  /** Data directory (with `audit/`) or the audit directory. */
  dir: string;
  /** Keep printing new records until `signal` aborts; otherwise stop at the end of the log. */
  follow: boolean;
  filter?: AuditTailFilter;
  signal?: AbortSignal;
  /** Receives each matching record's line, without its newline. */
  out: (line: string) => void;
  /** How often to look for new records when following, ms. Default 250. */
  pollMs?: number;
}

/** Default poll interval for `tailAuditLog` when following, ms. */
export const DEFAULT_AUDIT_TAIL_POLL_MS = 250;

const READ_BYTES = 256 * 1024;

/**
 * Prints every matching record from the start of the log, in order, then (with `follow`)
 * each new one as it is written, moving to the next segment when the log rotates. A record
 * matches a filter field when it has that field with that value, or targets it (a revocation
 * of the session: `target: { kind: "session_id", value }`). Lines still being written are
 * held until complete. Resolves at the end of the log, or when `signal` aborts.
 *
 * Polls rather than watching: fs.watch misses events on some file systems, and a poll of a
 * file's end costs one read. Polling uses real timers (not a `Clock`) on purpose: they keep
 * the process alive while following.
 */
export async function tailAuditLog(options: TailAuditLogOptions): Promise<void> {
  const { follow, signal, out } = options;
  const pollMs = options.pollMs ?? DEFAULT_AUDIT_TAIL_POLL_MS;
  const filter = Object.entries(options.filter ?? {}).filter(([, v]) => v !== undefined) as [string, string][];
  const decoder = new TextDecoder();

  const emit = (bytes: Uint8Array) => {
    const line = decoder.decode(bytes);
    if (filter.length > 0 && !matches(line, filter)) return;
    out(line);
  };

  let auditDir: string | undefined;
  let current: number | undefined;
  let offset = 0;
  let carry: Buffer = Buffer.alloc(0);

  // Reads `current` from `offset` to its end, emitting complete lines.
  const drain = async (): Promise<void> => {
    const path = join(auditDir!, segmentName(current!));
    let fh;
    try {
      fh = await open(path, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    try {
      const size = (await fh.stat()).size;
      if (size < offset) {
        // Truncated under us (a torn tail set aside): what we held was never a record.
        offset = size;
        carry = Buffer.alloc(0);
      }
      const buf = Buffer.allocUnsafe(READ_BYTES);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, READ_BYTES, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const data = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
        let start = 0;
        for (let nl = data.indexOf(0x0a, start); nl !== -1; nl = data.indexOf(0x0a, start)) {
          emit(data.subarray(start, nl));
          start = nl + 1;
        }
        carry = Buffer.from(data.subarray(start));
      }
    } finally {
      await fh.close();
    }
  };

  while (!signal?.aborted) {
    if (auditDir === undefined) {
      const where = await resolveAuditPath(options.dir);
      if (where?.kind === "dir") auditDir = where.auditDir;
    }
    const segments = auditDir === undefined ? [] : await listSegments(auditDir);
    if (current === undefined && segments.length > 0) current = segments[0]!.n;
    if (current !== undefined) {
      await drain();
      const next = segments.find((s) => s.n > current!) ?? (await listSegments(auditDir!)).find((s) => s.n > current!);
      if (next) {
        // The writer finishes a segment before creating the next: one more read gets its end.
        await drain();
        current = next.n;
        offset = 0;
        carry = Buffer.alloc(0);
        continue;
      }
    }
    if (!follow) return;
    try {
      await sleep(pollMs, undefined, signal ? { signal } : undefined);
    } catch {
      return;
    }
  }
}

function matches(line: string, filter: [string, string][]): boolean {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return false;
  }
  const target = rec.target as { kind?: unknown; value?: unknown } | undefined;
  return filter.every(([k, v]) => rec[k] === v || (target?.kind === k && target.value === v));
}

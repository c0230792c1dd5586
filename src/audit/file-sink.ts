/**
 * The file audit sink: an append-only, hash-chained JSON Lines log in `<dir>/audit/`,
 * rotated by size (`audit-000001.jsonl`, `audit-000002.jsonl`, …) with the chain running on
 * across files. See chain.ts for the record format.
 *
 * Group commit. Appends queue; one batch is written at a time, as one write (plus one
 * fdatasync with durability "fsync"), and every caller in it resolves when it is durable.
 * Appends arriving meanwhile form the next batch, so the cost of a sync is shared by everyone
 * who waited for it.
 *
 * Fail closed, never hang. Each append carries its own deadline (`timeoutMs`, from the
 * moment it is accepted). When the deadline passes the caller is rejected with
 * `AuditUnavailableError`, whatever the file system is doing. The sink never starts a second
 * write while one is outstanding, even a stuck one, so a write that completes late cannot
 * interleave with a later batch; while it is stuck, new appends are rejected at once instead
 * of queueing behind it. If the late write completes, its records stay in the log although
 * their callers were told "not written": the log may over-report an attempt, never miss an
 * action (the caller did not return a token). If a write or sync fails, the callers are
 * rejected and, before the next batch, the file is reopened and truncated back to the last
 * durable record, so a partial write never sits in front of later records.
 *
 * Torn tail on open (decision). A crash during a write can leave bytes after the last newline
 * of the newest segment. Such a record was never acknowledged (callers resolve only after the
 * write, and with "fsync" the sync, completed), so no token depends on it. By default
 * (`tornTail: "quarantine"`) the sink moves those bytes to `<segment>.torn-<ms>` next to the
 * log, truncates the segment to its last complete record, reports it in `state.recovered`, and
 * continues the chain. With `tornTail: "refuse"` it throws `AuditLogCorruptError` instead. A
 * newest complete record that is not a valid record (bad JSON, bad hash) is not a crash
 * artefact, and the sink always refuses to start on it: continuing would hide tampering.
 * Opening reads only the tail; `verifyAuditLog` checks the whole chain.
 *
 * One sink per directory: two writers would fork the chain. A second open in the same
 * process throws; separate replicas need separate directories.
 */
import { join, resolve } from "node:path";
import type { Clock } from "../clock.js";
import { systemClock } from "../clock.js";
import { GENESIS_PREV, openRecord, sealRecord } from "./chain.js";
import { AuditLogCorruptError, AuditUnavailableError } from "./errors.js";
import type { AuditEvent, JsonValue } from "./event.js";
import { prepareAuditEvent } from "./event.js";
import type { AuditFileHandle, AuditFs } from "./file-system.js";
import { nodeAuditFs } from "./file-system.js";
import { AUDIT_SUBDIR, listSegments, segmentName } from "./segments.js";
import type { AuditSink, AuditSinkState } from "./sink.js";
import { DEFAULT_AUDIT_MAX_FILE_BYTES, DEFAULT_AUDIT_TIMEOUT_MS } from "./sink.js";
import type { Waiter } from "./waiter.js";
import { createWaiter } from "./waiter.js";

/** When an append counts as written. */
export type AuditDurability = "fsync" | "write";

/**
 * Default durability: "fsync". An acknowledged record must survive a power loss, because a
 * token may already be in a caller's hands; group commit keeps the cost of that sync shared.
 */
export const DEFAULT_AUDIT_DURABILITY: AuditDurability = "fsync";

/** Most records written in one batch: 4096. Bounds the latency a single batch adds. */
export const DEFAULT_AUDIT_MAX_BATCH_RECORDS = 4096;

/** Options for `createFileAuditSink`. */
export interface FileAuditSinkOptions {
  /** Data directory; the log goes to `<dir>/audit/`. Created when missing. */
  dir: string;
  /** Written into every record's `replica`. */
  replica: string;
  /** Default `systemClock`. Used for `time` and for the append deadline. */
  clock?: Clock;
  /**
   * "fsync" (default): an append resolves after write + fdatasync. "write": after write()
   * returns, i.e. in the OS page cache; survives a process crash, not a power loss.
   */
  durability?: AuditDurability;
  /** Deadline for each append, ms from acceptance. Default 2000. */
  timeoutMs?: number;
  /**
   * A new segment starts when a record would take the current one past this many bytes.
   * Default 64 MiB. A record larger than this gets a segment of its own.
   */
  maxFileBytes?: number;
  /** Records per batch. Default 4096; 1 turns group commit off (for measurement). */
  maxBatchRecords?: number;
  /** What to do with a torn final line found on open. Default "quarantine" (see the module comment). */
  tornTail?: "quarantine" | "refuse";
  /** File operations; default `nodeAuditFs`. Tests inject failures and hangs here. */
  fs?: AuditFs;
}

/** A torn tail the sink set aside when it opened. */
export interface TornTailRecovery {
  file: string;
  /** Where the segment was cut: its new size in bytes. */
  offset: number;
  /** Bytes moved aside. */
  bytes: number;
  savedTo: string;
}

/** State of a file sink. */
export interface FileAuditSinkState extends AuditSinkState {
  file: string;
  lastSeq: number;
  lastHash: string;
  recovered?: TornTailRecovery;
}

/** A file-backed audit sink. */
export interface FileAuditSink extends AuditSink {
  readonly state: FileAuditSinkState;
  /** The directory holding the segments (`<dir>/audit`). */
  readonly auditDir: string;
}

interface Entry {
  body: { [key: string]: JsonValue };
  waiter: Waiter;
}

interface Part {
  fileNo: number;
  lines: string[];
  entries: Entry[];
  lastSeq: number;
  lastHash: string;
}

const openDirs = new Set<string>();
const TAIL_READ_BYTES = 64 * 1024;

/**
 * Opens (or creates) the log under `<dir>/audit/` and continues its chain from the newest
 * record. Rejects with `AuditLogCorruptError` when the newest record is corrupt (or torn with
 * `tornTail: "refuse"`), and with a plain Error when a sink is already open on the directory.
 */
export async function createFileAuditSink(options: FileAuditSinkOptions): Promise<FileAuditSink> {
  const clock = options.clock ?? systemClock;
  const fs = options.fs ?? nodeAuditFs;
  const durability = options.durability ?? DEFAULT_AUDIT_DURABILITY;
  const timeoutMs = options.timeoutMs ?? DEFAULT_AUDIT_TIMEOUT_MS;
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_AUDIT_MAX_FILE_BYTES;
  const maxBatch = options.maxBatchRecords ?? DEFAULT_AUDIT_MAX_BATCH_RECORDS;
  const tornTailPolicy = options.tornTail ?? "quarantine";
  const replica = options.replica;
  if (typeof replica !== "string" || replica === "") throw new TypeError("createFileAuditSink: replica is required");
  if (durability !== "fsync" && durability !== "write") throw new TypeError(`createFileAuditSink: durability must be "fsync" or "write"`);
  if (!(timeoutMs > 0)) throw new TypeError("createFileAuditSink: timeoutMs must be > 0");
  if (!(maxFileBytes > 0)) throw new TypeError("createFileAuditSink: maxFileBytes must be > 0");
  if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new TypeError("createFileAuditSink: maxBatchRecords must be an integer >= 1");
  const sync = durability === "fsync";

  const auditDir = join(options.dir, AUDIT_SUBDIR);
  const dirKey = resolve(auditDir);
  if (openDirs.has(dirKey)) throw new Error(`an audit sink is already open on ${auditDir} in this process`);
  openDirs.add(dirKey);

  let opened: Awaited<ReturnType<typeof openLog>>;
  try {
    opened = await openLog(fs, auditDir, tornTailPolicy, clock, sync);
  } catch (err) {
    openDirs.delete(dirKey);
    throw err;
  }

  const pathOf = (n: number) => join(auditDir, segmentName(n));
  let { fileNo, size, handle } = opened;
  let head = opened.head;
  const recovered = opened.recovered;

  let queue: Entry[] = [];
  let pending = 0;
  let inFlight = false;
  let flushScheduled = false;
  let stalled = false;
  let needsRepair = false;
  let fatal: Error | undefined;
  let healthy = true;
  let lastError: string | undefined;
  let closeStarted = false;
  let closing: Promise<void> | undefined;
  let idleWaiters: (() => void)[] = [];

  const unhealthy = (why: string) => {
    healthy = false;
    lastError = why;
  };

  const isIdle = () => !inFlight && queue.every((e) => e.waiter.settled);

  const notifyIdle = () => {
    if (!isIdle()) return;
    const ws = idleWaiters;
    idleWaiters = [];
    for (const w of ws) w();
  };

  const schedule = () => {
    if (inFlight || flushScheduled || queue.length === 0) return;
    flushScheduled = true;
    // A microtask lets appends made in the same tick join the first batch.
    queueMicrotask(runBatch);
  };

  const runBatch = () => {
    flushScheduled = false;
    if (inFlight) return;
    const batch: Entry[] = [];
    let i = 0;
    for (; i < queue.length && batch.length < maxBatch; i++) {
      const e = queue[i]!;
      // Already rejected by its deadline: writing it would only over-report.
      if (!e.waiter.settled) batch.push(e);
    }
    queue = queue.slice(i);
    if (batch.length === 0) {
      notifyIdle();
      return;
    }
    inFlight = true;
    void writeBatch(batch).finally(() => {
      inFlight = false;
      stalled = false;
      schedule();
      notifyIdle();
    });
  };

  const rotate = async (n: number) => {
    const next = await fs.openAppend(pathOf(n));
    try {
      if (sync) await fs.syncDir(auditDir);
    } catch (err) {
      await next.close().catch(() => {});
      throw err;
    }
    const old = handle;
    handle = next;
    fileNo = n;
    size = 0;
    // The old segment is complete and synced: every part is durable before the next starts.
    await old.close().catch(() => {});
  };

  const repair = async () => {
    await handle.close().catch(() => {});
    handle = await fs.openAppend(pathOf(fileNo));
    const actual = await handle.size();
    if (actual < size) {
      fatal = new Error(`${pathOf(fileNo)} is ${actual} bytes but ${size} were written: truncated underneath the sink`);
      throw fatal;
    }
    if (actual > size) await handle.truncate(size);
    if (sync) await handle.datasync();
    needsRepair = false;
  };

  const writeBatch = async (batch: Entry[]) => {
    try {
      if (fatal) throw fatal;
      if (needsRepair) await repair();
      const parts: Part[] = [];
      let prev = head.hash;
      let seq = head.seq;
      let partNo = fileNo;
      let partSize = size;
      let part: Part | undefined;
      for (const e of batch) {
        const sealed = sealRecord(prev, seq + 1, e.body);
        const bytes = Buffer.byteLength(sealed.line) + 1;
        if (partSize > 0 && partSize + bytes > maxFileBytes) {
          partNo++;
          partSize = 0;
          part = undefined;
        }
        if (!part) {
          part = { fileNo: partNo, lines: [], entries: [], lastSeq: 0, lastHash: "" };
          parts.push(part);
        }
        part.lines.push(sealed.line);
        part.entries.push(e);
        part.lastSeq = sealed.seq;
        part.lastHash = sealed.lineHash;
        partSize += bytes;
        seq = sealed.seq;
        prev = sealed.lineHash;
      }
      for (const p of parts) {
        if (p.fileNo !== fileNo) await rotate(p.fileNo);
        const data = Buffer.from(p.lines.join("\n") + "\n", "utf8");
        try {
          await handle.append(data);
          if (sync) await handle.datasync();
        } catch (err) {
          // Part of `data` may be in the file, or in a page cache a failed sync dropped.
          needsRepair = true;
          throw err;
        }
        size += data.length;
        head = { seq: p.lastSeq, hash: p.lastHash };
        healthy = true;
        lastError = undefined;
        for (const e of p.entries) e.waiter.resolve();
      }
    } catch (err) {
      const why = `audit write failed: ${describe(err)}`;
      unhealthy(why);
      const rejection = new AuditUnavailableError(`audit record not written: ${why}`);
      for (const e of batch) e.waiter.reject(rejection);
    }
  };

  const waitIdle = (ms: number): Promise<boolean> =>
    new Promise((res) => {
      if (isIdle()) return res(true);
      const timer = clock.setTimeout(() => res(false), ms);
      idleWaiters.push(() => {
        clock.clearTimeout(timer);
        res(true);
      });
    });

  const sink: FileAuditSink = {
    auditDir,
    append(event: AuditEvent): Promise<void> {
      if (closeStarted) return Promise.reject(new AuditUnavailableError("audit record not written: the audit sink is closed"));
      let body: { [key: string]: JsonValue };
      try {
        body = prepareAuditEvent(event, { replica, now: clock.now() });
      } catch (err) {
        return Promise.reject(err);
      }
      if (stalled) {
        return Promise.reject(
          new AuditUnavailableError(`audit record not written: a write has been pending for over ${timeoutMs} ms`),
        );
      }
      const waiter = createWaiter(
        clock,
        timeoutMs,
        () => {
          // Only a write in progress can hold a record past its deadline.
          if (inFlight) stalled = true;
          unhealthy(`audit write did not complete within ${timeoutMs} ms`);
          return new AuditUnavailableError(`audit record not written: timed out after ${timeoutMs} ms`);
        },
        () => {
          pending--;
        },
      );
      pending++;
      queue.push({ body, waiter });
      schedule();
      return waiter.promise;
    },
    get state(): FileAuditSinkState {
      const s: FileAuditSinkState = {
        healthy,
        pending,
        file: pathOf(fileNo),
        lastSeq: head.seq,
        lastHash: head.hash,
      };
      if (lastError !== undefined) s.lastError = lastError;
      if (recovered) s.recovered = recovered;
      return s;
    },
    close(): Promise<void> {
      if (closing) return closing;
      closeStarted = true;
      closing = (async () => {
        schedule();
        const drained = await waitIdle(timeoutMs);
        if (!drained) {
          // Closing under a pending write could let it land in a reused descriptor, and a new
          // sink on this directory would be a second writer: both wait until the write settles.
          idleWaiters.push(() => {
            void handle.close().catch(() => {});
            openDirs.delete(dirKey);
          });
          throw new AuditUnavailableError(`audit sink closed with a write still pending after ${timeoutMs} ms`);
        }
        openDirs.delete(dirKey);
        await handle.close();
      })();
      return closing;
    },
  };
  return sink;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.startsWith(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** Finds where the chain stands on disk and opens the newest segment for appending. */
async function openLog(
  fs: AuditFs,
  auditDir: string,
  tornTailPolicy: "quarantine" | "refuse",
  clock: Clock,
  sync: boolean,
): Promise<{ fileNo: number; size: number; handle: AuditFileHandle; head: { seq: number; hash: string }; recovered?: TornTailRecovery }> {
  await fs.mkdirp(auditDir);
  const segments = await listSegments(auditDir, await fs.list(auditDir));
  let head = { seq: 0, hash: GENESIS_PREV };
  let recovered: TornTailRecovery | undefined;
  let fileNo = 1;
  let size = 0;

  if (segments.length > 0) {
    const newest = segments[segments.length - 1]!;
    fileNo = newest.n;
    size = await fs.size(newest.path);
    if (size > 0) {
      const last = await fs.read(newest.path, size - 1, 1);
      if (last[0] !== 0x0a) {
        const cut = (await lastNewlineBefore(fs, newest.path, size)) + 1;
        const torn = size - cut;
        if (tornTailPolicy === "refuse") {
          throw new AuditLogCorruptError(
            `${newest.path}: ${torn} bytes after the last complete record at offset ${cut} (a torn write, e.g. from a crash); refusing to continue the log`,
          );
        }
        const savedTo = `${newest.path}.torn-${clock.now()}`;
        await fs.writeNew(savedTo, await fs.read(newest.path, cut, torn));
        const h = await fs.openAppend(newest.path);
        try {
          await h.truncate(cut);
          await h.datasync();
        } finally {
          await h.close();
        }
        await fs.syncDir(auditDir);
        recovered = { file: newest.path, offset: cut, bytes: torn, savedTo };
        size = cut;
      }
    }
    for (let i = segments.length - 1; i >= 0; i--) {
      const seg = segments[i]!;
      const segSize = seg === newest ? size : await fs.size(seg.path);
      if (segSize === 0) continue;
      const line = await readLastLine(fs, seg.path, segSize);
      const opened = openRecord(line.bytes);
      if (opened.ok === false) {
        throw new AuditLogCorruptError(
          `${seg.path}: the last record (byte offset ${line.offset}) is invalid: ${opened.reason}; refusing to continue the log (run "capvend audit verify")`,
        );
      }
      head = { seq: opened.record.seq, hash: opened.record.lineHash };
      break;
    }
  }

  const path = join(auditDir, segmentName(fileNo));
  const handle = await fs.openAppend(path);
  if (sync && segments.length === 0) await fs.syncDir(auditDir);
  const s: { fileNo: number; size: number; handle: AuditFileHandle; head: { seq: number; hash: string }; recovered?: TornTailRecovery } = {
    fileNo,
    size,
    handle,
    head,
  };
  if (recovered) s.recovered = recovered;
  return s;
}

/** Offset of the last "\n" in [0, end), or -1. Reads backwards in growing chunks. */
async function lastNewlineBefore(fs: AuditFs, path: string, end: number): Promise<number> {
  let hi = end;
  let chunk = TAIL_READ_BYTES;
  while (hi > 0) {
    const lo = Math.max(0, hi - chunk);
    const buf = await fs.read(path, lo, hi - lo);
    const at = buf.lastIndexOf(0x0a);
    if (at !== -1) return lo + at;
    hi = lo;
    chunk *= 2;
  }
  return -1;
}

/** The last line of a file that ends with "\n", without that newline. */
async function readLastLine(fs: AuditFs, path: string, size: number): Promise<{ bytes: Buffer; offset: number }> {
  const last = await fs.read(path, size - 1, 1);
  if (last[0] !== 0x0a) {
    throw new AuditLogCorruptError(`${path}: does not end with a complete record; refusing to continue the log (run "capvend audit verify")`);
  }
  const start = (await lastNewlineBefore(fs, path, size - 1)) + 1;
  return { bytes: await fs.read(path, start, size - 1 - start), offset: start };
}

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
 * Fail closed, never hang. The deadline (`timeoutMs`) bounds the file system, not the
 * process: a write or sync that has not completed `timeoutMs` after it started stalls the
 * sink, and every record waiting on it (in that batch or queued behind it) is rejected with
 * fault `audit_unavailable`, whatever the file system is doing. A record therefore waits at
 * most about twice `timeoutMs` for the disk (the write in progress when it came, then its
 * own). One timer watches the sink, not one per record, and its verdict waits for the event
 * loop's next I/O poll: a write that completed while the process was busy (a reconnect storm
 * saturating the CPU) is seen as done, so load never turns into refusals. The sink never
 * starts a second write while one is outstanding, even a stuck one, so a write that
 * completes late cannot interleave with a later batch; while it is stuck, new appends are
 * rejected at once instead of queueing behind it. If the late write completes, its records stay in the log although
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
 * continues the chain. With `tornTail: "refuse"` it throws fault `audit_log_corrupt` instead. A
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
import { fault } from "../errors.js";
import type { Checkpoint } from "./checkpoint.js";
import { checkCheckpoint, headFileOf, readHead, signCheckpoint, writeHead } from "./checkpoint.js";
import type { AuditEvent, JsonValue } from "./event.js";
import { readRawLines } from "./line-reader.js";
import { ensurePrivateDir, ensurePrivateFile } from "./permissions.js";
import type { AuditSigner } from "./signing-key.js";
import { openAuditSigner } from "./signing-key.js";
import { prepareAuditEvent } from "./event.js";
import type { AuditFileHandle, AuditFs } from "./file-system.js";
import { nodeAuditFs } from "./file-system.js";
import { AUDIT_SUBDIR, listSegments, segmentName } from "./segments.js";
import type { AuditDurability } from "../config/config.js";
import type { AuditSink, AuditSinkState } from "./sink.js";
import { DEFAULT_AUDIT_MAX_FILE_BYTES, DEFAULT_AUDIT_TIMEOUT_MS } from "./sink.js";
import type { Waiter } from "./waiter.js";
import { createSettleOnce } from "./waiter.js";

/** When an append counts as written (defined with the other settings). */
export type { AuditDurability };

/**
 * Default durability: "fsync". An acknowledged record must survive a power loss, because a
 * token may already be in a caller's hands; group commit keeps the cost of that sync shared.
 */
export const DEFAULT_AUDIT_DURABILITY: AuditDurability = "fsync";

/** Most records written in one batch: 4096. Bounds the latency a single batch adds. */
export const DEFAULT_AUDIT_MAX_BATCH_RECORDS = 4096;

/**
 * Least time between two signed checkpoints: 200 ms. A checkpoint follows the first batch
 * after this much time, so under load the head file is rewritten at most 5 times a second, and
 * a crash leaves at most the last 200 ms of records beyond the newest checkpoint (those are
 * still chained; only their deletion would go unnoticed by the head file).
 */
export const DEFAULT_AUDIT_CHECKPOINT_INTERVAL_MS = 200;

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
  /**
   * Deadline of each file-system step (write, sync, rotation), ms from its start: records
   * waiting on a step that takes longer are rejected. Default 2000.
   */
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
  /**
   * Signed checkpoints (see checkpoint.ts), on by default: the head file
   * `<dir>/audit-head.json`, signed with the audit signing key `<dir>/audit-signing-key.pem`
   * (created on first use). `false` turns them off (tests of the bare chain only).
   */
  checkpoints?: false | {
    /** Least ms between checkpoints; default `DEFAULT_AUDIT_CHECKPOINT_INTERVAL_MS`. */
    intervalMs?: number;
    /** Called after each checkpoint reached the head file (e.g. publishes it to NATS); errors go to `onWarning`. */
    onCheckpoint?: (checkpoint: Checkpoint) => void | Promise<void>;
  };
  /**
   * Opening a log shorter than its last checkpoint, whose record at the checkpoint differs from
   * it, or that is missing while `expectRecords` says records exist, throws fault `audit_gap`
   * unless this is true (the operator's CAPVEND_ACCEPT_AUDIT_GAP). When true the sink starts,
   * and its first record is an `audit.gap` naming what is missing.
   */
  acceptGap?: boolean;
  /**
   * The caller knows records were written before (state that is only made with an audit
   * record exists, e.g. signing keys or sessions): an empty log with no head file is then a
   * gap, not a first start.
   */
  expectRecords?: boolean;
  /** Loose permissions tightened, checkpoint publication failures. Default: ignored. */
  onWarning?: (message: string, details?: Record<string, string>) => void;
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
  /** The newest checkpoint in the head file, when checkpoints are on. */
  checkpoint?: { seq: number; time: string };
  /** A gap the operator accepted at open (see `acceptGap`); recorded as `audit.gap`. */
  gap?: AuditGap;
}

/** What was found missing when the sink opened. */
export interface AuditGap {
  problem: "log_shorter_than_checkpoint" | "record_differs_from_checkpoint" | "log_missing" | "segment_missing";
  /** Human-readable, names the first missing or differing record. */
  description: string;
  checkpointSeq: number;
  logSeq: number;
}

/** A file-backed audit sink. */
export interface FileAuditSink extends AuditSink {
  readonly state: FileAuditSinkState;
  /** The directory holding the segments (`<dir>/audit`). */
  readonly auditDir: string;
  /** Signs a checkpoint of what is durable now and writes the head file; resolves to it (undefined when checkpoints are off). */
  checkpoint(): Promise<Checkpoint | undefined>;
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
 * record. Rejects with fault `audit_log_corrupt` when the newest record is corrupt (or torn with
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
  const cpOptions = options.checkpoints === false ? undefined : options.checkpoints ?? {};
  const cpInterval = cpOptions?.intervalMs ?? DEFAULT_AUDIT_CHECKPOINT_INTERVAL_MS;
  if (!(cpInterval >= 0)) throw new TypeError("createFileAuditSink: checkpoints.intervalMs must be >= 0");
  const warn = options.onWarning ?? (() => {});

  const auditDir = join(options.dir, AUDIT_SUBDIR);
  const dirKey = resolve(auditDir);
  if (openDirs.has(dirKey)) throw new Error(`an audit sink is already open on ${auditDir} in this process`);
  openDirs.add(dirKey);

  let opened: Awaited<ReturnType<typeof openLog>> | undefined;
  let signer: AuditSigner | undefined;
  let gap: AuditGap | undefined;
  let lastCheckpoint: Checkpoint | undefined;
  try {
    await ensurePrivateDir(options.dir, warn);
    await ensurePrivateDir(auditDir, warn);
    const headBefore = cpOptions ? await readHead(options.dir) : undefined;
    const segmentsBefore = await listSegments(auditDir, await fs.list(auditDir));
    for (const seg of segmentsBefore) await ensurePrivateFile(seg.path, warn);
    opened = await openLog(fs, auditDir, tornTailPolicy, clock, sync);
    if (cpOptions) {
      const key = await openAuditSigner(options.dir, warn);
      signer = key.signer;
      if (headBefore) {
        const bad = checkCheckpoint(headBefore, signer.kid === headBefore.kid ? signer.publicX : undefined);
        if (bad || headBefore.kid !== signer.kid) {
          throw fault("audit_gap", `${headFileOf(options.dir)}: ${bad ?? "signed by another audit key than " + signer.kid}; refusing to continue the log (run "capvend audit verify")`);
        }
        lastCheckpoint = headBefore;
      }
      gap = await findGap(segmentsBefore, opened.head, headBefore, Boolean(options.expectRecords) && !key.created);
      if (gap && !options.acceptGap) {
        throw fault(
          "audit_gap",
          `${gap.description}; refusing to start. If the loss is understood, start once with --accept-audit-gap (CAPVEND_ACCEPT_AUDIT_GAP=true): the gap is then recorded in the log`,
        );
      }
    }
  } catch (err) {
    if (opened) await opened.handle.close().catch(() => {});
    openDirs.delete(dirKey);
    throw err;
  }

  const pathOf = (n: number) => join(auditDir, segmentName(n));
  // The current segment's path, for `state` (read after every append): joined once per segment.
  let current: { n: number; path: string } | undefined;
  const currentPath = () => (current?.n === fileNo ? current.path : (current = { n: fileNo, path: pathOf(fileNo) }).path);
  let { fileNo, size, handle } = opened!;
  let head = opened!.head;
  let headSegment = opened!.headSegment;
  let cpTimer: ReturnType<Clock["setTimeout"]> | undefined;
  let cpRunning: Promise<Checkpoint | undefined> | undefined;
  let cpAgain = false;
  const recovered = opened!.recovered;

  let queue: Entry[] = [];
  let pending = 0;
  let inFlight = false;
  /** The batch being written, and when its current file-system step started (clock ms). */
  let writing: Entry[] = [];
  let lastProgress = 0;
  let watchdog: ReturnType<Clock["setTimeout"]> | undefined;
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
    // After the I/O poll, so the appends of every request read in this turn of the event loop
    // (not only of this tick) join the first batch: one write and one sync for all of them.
    setImmediate(runBatch);
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
    writing = batch;
    lastProgress = clock.now();
    armWatchdog();
    void writeBatch(batch).finally(() => {
      inFlight = false;
      writing = [];
      stalled = false;
      scheduleCheckpoint();
      schedule();
      notifyIdle();
    });
  };

  /** One timer for the whole sink: see the module comment. */
  const armWatchdog = () => {
    if (watchdog) return;
    watchdog = clock.setTimeout(onWatchdog, Math.max(1, lastProgress + timeoutMs - clock.now()));
  };
  const onWatchdog = () => {
    watchdog = undefined;
    if (!inFlight) return;
    // Judged after the next I/O poll, where a step that already completed is delivered.
    setImmediate(() => {
      if (!inFlight || stalled) return;
      if (clock.now() - lastProgress < timeoutMs) {
        armWatchdog();
        return;
      }
      // Only a write in progress can hold a record past its deadline.
      stalled = true;
      unhealthy(`audit write did not complete within ${timeoutMs} ms`);
      const err = fault("audit_unavailable", `audit record not written: timed out after ${timeoutMs} ms`);
      for (const e of writing) e.waiter.reject(err);
      for (const e of queue) e.waiter.reject(err);
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
      if (needsRepair) {
        await repair();
        lastProgress = clock.now();
      }
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
        if (p.fileNo !== fileNo) {
          await rotate(p.fileNo);
          lastProgress = clock.now();
        }
        const data = Buffer.from(p.lines.join("\n") + "\n", "utf8");
        try {
          await handle.append(data);
          lastProgress = clock.now();
          if (sync) await handle.datasync();
        } catch (err) {
          // Part of `data` may be in the file, or in a page cache a failed sync dropped.
          needsRepair = true;
          throw err;
        }
        size += data.length;
        head = { seq: p.lastSeq, hash: p.lastHash };
        headSegment = p.fileNo;
        healthy = true;
        lastError = undefined;
        for (const e of p.entries) e.waiter.resolve();
      }
    } catch (err) {
      const why = `audit write failed: ${describe(err)}`;
      unhealthy(why);
      const rejection = fault("audit_unavailable", `audit record not written: ${why}`);
      for (const e of batch) e.waiter.reject(rejection);
    }
  };

  /**
   * Signs and writes a checkpoint of the durable head. One runs at a time: a call made while
   * one runs waits for it and then checkpoints again (the head may have moved since).
   */
  const checkpoint = (): Promise<Checkpoint | undefined> => {
    if (!signer) return Promise.resolve(undefined);
    if (cpRunning) return cpRunning.then(checkpoint, checkpoint);
    if (lastCheckpoint && lastCheckpoint.seq === head.seq && lastCheckpoint.hash === head.hash) return Promise.resolve(lastCheckpoint);
    const s0 = signer;
    const run = (async () => {
      // Never settles synchronously: `cpRunning` below is cleared only by this finally.
      await Promise.resolve();
      try {
        const c = signCheckpoint(s0, { seq: head.seq, hash: head.hash, segment: headSegment, replica, time: new Date(clock.now()).toISOString() });
        await writeHead(options.dir, c);
        lastCheckpoint = c;
        if (cpOptions?.onCheckpoint) {
          try {
            await cpOptions.onCheckpoint(c);
          } catch (err) {
            warn(`audit checkpoint ${c.seq} is in the head file but was not published: ${describe(err)}`);
          }
        }
        return c;
      } finally {
        cpRunning = undefined;
        // Records written meanwhile get the next one, after the interval.
        if (!closeStarted && lastCheckpoint?.seq !== head.seq) queueMicrotask(scheduleCheckpoint);
      }
    })();
    cpRunning = run;
    return run;
  };

  /** After a batch: a checkpoint now when the last is `cpInterval` old, else when it will be. */
  const scheduleCheckpoint = () => {
    if (!signer || cpTimer || cpRunning || closeStarted) return;
    const since = lastCheckpoint ? clock.now() - Date.parse(lastCheckpoint.time) : Infinity;
    const fire = () => {
      cpTimer = undefined;
      checkpoint().catch((err) => {
        unhealthy(`audit checkpoint failed: ${describe(err)}`);
      });
    };
    if (since >= cpInterval) fire();
    else cpTimer = clock.setTimeout(fire, cpInterval - since);
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
    checkpoint,
    append(event: AuditEvent): Promise<void> {
      if (closeStarted) return Promise.reject(fault("audit_unavailable", "audit record not written: the audit sink is closed"));
      let body: { [key: string]: JsonValue };
      try {
        body = prepareAuditEvent(event, { replica, now: clock.now() });
      } catch (err) {
        return Promise.reject(err);
      }
      if (stalled) {
        return Promise.reject(
          fault("audit_unavailable", `audit record not written: a write has been pending for over ${timeoutMs} ms`),
        );
      }
      const waiter = createSettleOnce(() => {
        pending--;
      });
      pending++;
      queue.push({ body, waiter });
      schedule();
      return waiter.promise;
    },
    get state(): FileAuditSinkState {
      const s: FileAuditSinkState = {
        healthy,
        pending,
        file: currentPath(),
        lastSeq: head.seq,
        lastHash: head.hash,
      };
      if (lastError !== undefined) s.lastError = lastError;
      if (recovered) s.recovered = recovered;
      if (lastCheckpoint) s.checkpoint = { seq: lastCheckpoint.seq, time: lastCheckpoint.time };
      if (gap) s.gap = gap;
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
          throw fault("audit_unavailable", `audit sink closed with a write still pending after ${timeoutMs} ms`);
        }
        if (cpTimer) clock.clearTimeout(cpTimer);
        cpTimer = undefined;
        if (watchdog) clock.clearTimeout(watchdog);
        watchdog = undefined;
        try {
          // The last word: a checkpoint of everything written, so a restart can tell a cut log.
          await checkpoint();
        } finally {
          openDirs.delete(dirKey);
          await handle.close();
        }
      })();
      return closing;
    },
  };
  if (gap) {
    await sink.append({
      type: "audit.gap",
      caller: { kind: "system", id: replica },
      decision: "allow",
      reason: gap.description,
      details: { problem: gap.problem, checkpoint_seq: gap.checkpointSeq, log_seq: gap.logSeq, accepted_by: "CAPVEND_ACCEPT_AUDIT_GAP" },
    });
  }
  // A first checkpoint at once: a new log is anchored from its start, an accepted gap is sealed.
  if (signer && (gap || !lastCheckpoint)) await checkpoint();
  return sink;
}

/**
 * Compares the log as found with the last checkpoint. `segments` is the listing before open;
 * `head` where the chain ends now.
 */
async function findGap(
  segments: { n: number; path: string }[],
  head: { seq: number; hash: string },
  cp: Checkpoint | undefined,
  expectRecords: boolean,
): Promise<AuditGap | undefined> {
  const nums = segments.map((s) => s.n);
  for (let i = 0; i < nums.length; i++) {
    if (nums[i] !== i + 1) {
      return { problem: "segment_missing", description: `audit segment ${segmentName(i + 1)} is missing (segments found: ${nums.join(", ")})`, checkpointSeq: cp?.seq ?? 0, logSeq: head.seq };
    }
  }
  if (!cp) {
    if (expectRecords && head.seq === 0) {
      return { problem: "log_missing", description: "the audit log is empty or missing and there is no head file, but this data directory holds state that is only made with audit records (keys or sessions)", checkpointSeq: 0, logSeq: 0 };
    }
    return undefined;
  }
  if (head.seq < cp.seq) {
    const problem = head.seq === 0 ? "log_missing" : "log_shorter_than_checkpoint";
    return {
      problem,
      description: `the audit log ends at record ${head.seq} but the checkpoint of ${cp.time} covers records up to ${cp.seq}: records ${head.seq + 1} to ${cp.seq} are missing (first missing: seq ${head.seq + 1})`,
      checkpointSeq: cp.seq,
      logSeq: head.seq,
    };
  }
  if (cp.seq === 0) return undefined;
  let at: string | undefined;
  if (head.seq === cp.seq) at = head.hash;
  else {
    const seg = segments.find((s) => s.n === cp.segment);
    if (seg) {
      for await (const raw of readRawLines(seg.path)) {
        if (!raw.terminated) break;
        const o = openRecord(raw.bytes);
        if (o.ok && o.record.seq === cp.seq) {
          at = o.record.lineHash;
          break;
        }
      }
    }
  }
  if (at !== cp.hash) {
    return {
      problem: "record_differs_from_checkpoint",
      description: `audit record ${cp.seq} ${at === undefined ? `is not in segment ${segmentName(cp.segment)}` : "differs from the checkpoint"} of ${cp.time}: the log was rewritten or renumbered at or before it`,
      checkpointSeq: cp.seq,
      logSeq: head.seq,
    };
  }
  return undefined;
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
): Promise<{ fileNo: number; size: number; handle: AuditFileHandle; head: { seq: number; hash: string }; headSegment: number; recovered?: TornTailRecovery }> {
  await fs.mkdirp(auditDir);
  let headSegment = 0;
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
          throw fault(
            "audit_log_corrupt",
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
        throw fault(
          "audit_log_corrupt",
          `${seg.path}: the last record (byte offset ${line.offset}) is invalid: ${opened.reason}; refusing to continue the log (run "capvend audit verify")`,
        );
      }
      head = { seq: opened.record.seq, hash: opened.record.lineHash };
      headSegment = seg.n;
      break;
    }
  }

  const path = join(auditDir, segmentName(fileNo));
  const handle = await fs.openAppend(path);
  if (sync && segments.length === 0) await fs.syncDir(auditDir);
  const s: { fileNo: number; size: number; handle: AuditFileHandle; head: { seq: number; hash: string }; headSegment: number; recovered?: TornTailRecovery } = {
    fileNo,
    size,
    handle,
    head,
    headSegment,
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
    throw fault("audit_log_corrupt", `${path}: does not end with a complete record; refusing to continue the log (run "capvend audit verify")`);
  }
  const start = (await lastNewlineBefore(fs, path, size - 1)) + 1;
  return { bytes: await fs.read(path, start, size - 1 - start), offset: start };
}

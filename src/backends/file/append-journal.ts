/**
 * An append-only JSON Lines journal with group commit: the durable half of the embedded
 * session store and revocation list (`<dataDir>/state/*.journal`).
 *
 * Appends queue; one batch is written at a time as one write, plus one fdatasync with
 * durability "fsync", and every caller in it resolves once it is durable. A crash can leave
 * only the last batch partly written, and none of it was acknowledged: on open, bytes after the
 * last complete line, and complete lines that do not parse at the very end, are cut off. An
 * unreadable line followed by readable ones is not a crash artefact, and opening refuses it.
 *
 * `rewrite` replaces the whole journal with a compacted one (temp file, fsync, rename, fsync
 * of the directory) between batches, so a crash leaves either the old journal or the new one.
 */
import { open, readFile, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fsyncDir } from "../../keys/atomic-file.js";

/** When a journal write counts as done: "fsync" (default) survives power loss, "write" a process crash. */
export type JournalDurability = "fsync" | "write";

/** Mode of journal files: owner read/write only. */
const JOURNAL_FILE_MODE = 0o600;

/** A journal line that cannot be read, with more after it. */
export class JournalCorruptError extends Error {
  override readonly name = "JournalCorruptError";
  readonly code = "journal_corrupt";
}

/** Options of `openJournal`. */
export interface JournalOptions {
  path: string;
  durability: JournalDurability;
  /**
   * Longest a file-system step (a batch's write and sync, or a compaction) may take, ms from
   * when it starts (default 2000): past it, the callers of that step and every caller queued
   * behind it are rejected, so a stuck disk fails calls instead of hanging them. A call can
   * so wait up to about twice this. Time spent queued behind steps that progress, or in a
   * process too busy to notice a step finished, does not count. A rejected write may still
   * land later: the entry then takes effect although its caller was told it did not
   * (over-reporting, never losing).
   */
  timeoutMs?: number;
  /** Opens the journal file for appending; default `fs.promises.open`. Tests make writes hang here. */
  openAppend?: (path: string) => Promise<FileHandle>;
}

/** Default `timeoutMs`: 2 s, as the audit log's. */
export const DEFAULT_JOURNAL_TIMEOUT_MS = 2000;

/** An open journal. */
export interface Journal {
  /**
   * Appends one entry; resolves once it is durable per the durability setting. `applied` runs
   * synchronously as soon as it is, before any later operation (so a compaction's snapshot
   * always includes it).
   */
  append(entry: unknown, applied?: () => void): Promise<void>;
  /**
   * Replaces the journal with the entries `snapshot` returns (compaction). The snapshot is
   * taken when the rewrite runs, after every earlier append was applied.
   */
  rewrite(snapshot: () => unknown[]): Promise<void>;
  /** Bytes in the journal file now. */
  readonly bytes: number;
  /** Lines cut off at open as a torn tail. */
  readonly recoveredBytes: number;
  /** Waits for what is queued and closes the file. Idempotent. */
  close(): Promise<void>;
}

type Op =
  | { kind: "append"; data: string; applied?: () => void; done: () => void; fail: (e: Error) => void }
  | { kind: "rewrite"; snapshot: () => unknown[]; done: () => void; fail: (e: Error) => void };

/** Opens (or creates) a journal and returns it with the entries it holds, oldest first. */
export async function openJournal(opts: JournalOptions): Promise<{ journal: Journal; entries: unknown[] }> {
  const { path } = opts;
  const sync = opts.durability === "fsync";
  const timeoutMs = opts.timeoutMs ?? DEFAULT_JOURNAL_TIMEOUT_MS;
  let text = "";
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const { entries, validBytes } = parse(text, path);
  const recoveredBytes = Buffer.byteLength(text) - validBytes;

  const openAppend = opts.openAppend ?? ((p: string) => open(p, "a+", JOURNAL_FILE_MODE));
  let fh: FileHandle = await openAppend(path);
  await fh.chmod(JOURNAL_FILE_MODE);
  if (recoveredBytes > 0) {
    await fh.truncate(validBytes);
    await fh.datasync();
  }
  if (text === "") await fsyncDir(dirname(path));
  let bytes = validBytes;
  let queue: Op[] = [];
  /**
   * The operations of the step in flight, and when its current file-system call started
   * (performance.now()): each call of a step gets the whole deadline.
   */
  let current: Op[] = [];
  let stepStarted = 0;
  const progress = () => {
    stepStarted = performance.now();
  };
  let watchdog: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  let closing: Promise<void> | undefined;
  let idle: (() => void)[] = [];

  const run = async () => {
    running = true;
    try {
      while (queue.length > 0) {
        const head = queue[0]!;
        if (head.kind === "rewrite") {
          queue.shift();
          startStep([head]);
          try {
            const data = head.snapshot().map(line).join("");
            const tmp = join(dirname(path), `.${basename(path)}.compact`);
            const t = await open(tmp, "w", JOURNAL_FILE_MODE);
            try {
              await t.writeFile(data);
              progress();
              await t.sync();
              progress();
            } finally {
              await t.close();
            }
            await rename(tmp, path);
            progress();
            await fsyncDir(dirname(path));
            progress();
            await fh.close().catch(() => undefined);
            fh = await openAppend(path);
            bytes = Buffer.byteLength(data);
            head.done();
          } catch (err) {
            await unlink(join(dirname(path), `.${basename(path)}.compact`)).catch(() => undefined);
            head.fail(err as Error);
          }
          continue;
        }
        const batch: Extract<Op, { kind: "append" }>[] = [];
        while (queue.length > 0 && queue[0]!.kind === "append") batch.push(queue.shift() as Extract<Op, { kind: "append" }>);
        const data = batch.map((o) => o.data).join("");
        startStep(batch);
        try {
          await fh.appendFile(data);
          progress();
          if (sync) await fh.datasync();
          bytes += Buffer.byteLength(data);
          for (const o of batch) o.applied?.();
          for (const o of batch) o.done();
        } catch (err) {
          // Cut back to the last acknowledged byte so a partial write never precedes later lines.
          await fh.truncate(bytes).catch(() => undefined);
          for (const o of batch) o.fail(err as Error);
        }
      }
    } finally {
      running = false;
      current = [];
      if (watchdog) clearTimeout(watchdog);
      watchdog = undefined;
      const ws = idle;
      idle = [];
      for (const w of ws) w();
    }
  };

  /** One file-system step begins: its deadline counts from now. */
  const startStep = (ops: Op[]) => {
    current = ops;
    progress();
    if (!watchdog) armWatchdog();
  };
  const armWatchdog = () => {
    watchdog = setTimeout(onWatchdog, Math.max(1, stepStarted + timeoutMs - performance.now()));
    watchdog.unref();
  };
  const onWatchdog = () => {
    watchdog = undefined;
    if (!running) return;
    // Judged after the next I/O poll, where a step that already completed is delivered: a
    // process too busy to hear of it in time has not found a stuck disk.
    setImmediate(() => {
      if (!running || watchdog) return;
      if (performance.now() - stepStarted < timeoutMs) return armWatchdog();
      const err = new Error(`journal ${path}: write did not complete within ${timeoutMs} ms`);
      for (const o of current) o.fail(err);
      for (const o of queue) o.fail(err);
      // Still stuck: whoever queues meanwhile is failed at the next check, a timeout from now.
      watchdog = setTimeout(onWatchdog, timeoutMs);
      watchdog.unref();
    });
  };

  const enqueue = (op: (done: () => void, fail: (e: Error) => void) => Op): Promise<void> => {
    if (closing) return Promise.reject(new Error(`journal ${path} is closed`));
    return new Promise<void>((done, fail) => {
      let settled = false;
      const finish = (f: () => void) => {
        if (settled) return;
        settled = true;
        f();
      };
      queue.push(op(() => finish(done), (e) => finish(() => fail(e))));
      if (!running) queueMicrotask(() => void (running ? undefined : run()));
    });
  };

  const journal: Journal = {
    append: (entry, applied) => enqueue((done, fail) => ({ kind: "append", data: line(entry), applied, done, fail })),
    rewrite: (snapshot) => enqueue((done, fail) => ({ kind: "rewrite", snapshot, done, fail })),
    get bytes() {
      return bytes;
    },
    recoveredBytes,
    close() {
      closing ??= (async () => {
        if (running || queue.length > 0) await new Promise<void>((r) => idle.push(r));
        await fh.close();
      })();
      return closing;
    },
  };
  return { journal, entries };
}

function line(e: unknown): string {
  return `${JSON.stringify(e)}\n`;
}

/** Parses complete lines; a torn or unreadable tail is dropped, an unreadable middle refused. */
function parse(text: string, path: string): { entries: unknown[]; validBytes: number } {
  const entries: unknown[] = [];
  let offset = 0;
  let validBytes = 0;
  let badAt: number | undefined;
  while (offset < text.length) {
    const nl = text.indexOf("\n", offset);
    if (nl === -1) break; // torn: no newline
    const raw = text.slice(offset, nl);
    let value: unknown;
    let ok = raw.trim() !== "";
    if (ok) {
      try {
        value = JSON.parse(raw);
      } catch {
        ok = false;
      }
    }
    if (ok && typeof value === "object" && value !== null) {
      if (badAt !== undefined) {
        throw new JournalCorruptError(`${path}: line at byte ${badAt} is unreadable and is followed by valid lines; refusing to open (restore it from a backup or remove the damaged line)`);
      }
      entries.push(value);
      validBytes += Buffer.byteLength(raw) + 1;
    } else if (badAt === undefined) {
      badAt = validBytes;
    }
    offset = nl + 1;
  }
  return { entries, validBytes };
}

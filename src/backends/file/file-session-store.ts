/**
 * Sessions in the data directory: the embedded durable store of a single replica without
 * NATS. Sessions are served from memory and every change is made durable first in an
 * append-only journal (`<dataDir>/state/sessions.journal`, see append-journal.ts), so they survive
 * a restart or a kill -9: runtimes' credentials keep working, and pre-restart sessions can be
 * ended and revoked. The journal is compacted to the live sessions when it has grown well past
 * them.
 */
import { join } from "node:path";
import type { Clock, TimerHandle } from "../../clock.js";
import { ensurePrivateDir } from "../../audit/permissions.js";
import { openJournal, type Journal, type JournalDurability } from "./append-journal.js";
import { MAX_RETRY_CREDENTIALS, SESSION_SWEEP_INTERVAL_MS, SessionExistsError, type SessionListQuery, type SessionRecord, type SessionStore } from "../types.js";
import { pageOf } from "../session-index.js";
import { clonePlain } from "../clone-record.js";

/** Sub-directory of the data directory holding the embedded state. */
export const STATE_SUBDIR = "state";
/** File name of the session journal. */
export const SESSION_JOURNAL_FILE = "sessions.journal";
/** A journal smaller than this is never compacted: 1 MiB. */
export const JOURNAL_COMPACT_MIN_BYTES = 1024 * 1024;

type Entry =
  | { op: "create"; rec: SessionRecord }
  | { op: "end"; id: string; reason: string; at: number }
  | { op: "credential"; id: string; hash: string }
  | { op: "delete"; id: string };

/** Options of `openFileSessionStore`. */
export interface FileSessionStoreOptions {
  dataDir: string;
  clock: Clock;
  /** As the audit log's (CAPVEND_AUDIT_DURABILITY): "fsync" by default. */
  durability?: JournalDurability;
  /** Longest wait for a journal write, ms (default 2000). */
  timeoutMs?: number;
  /** A journal smaller than this is never compacted; default `JOURNAL_COMPACT_MIN_BYTES`. */
  compactMinBytes?: number;
}

/** The durable embedded session store. */
export class FileSessionStore implements SessionStore {
  readonly #sessions = new Map<string, SessionRecord>();
  /** Creates in flight by id: a concurrent create of the same id waits for the first to settle. */
  readonly #creating = new Map<string, Promise<void>>();
  readonly #ending = new Map<string, Promise<SessionRecord | undefined>>();
  readonly #clock: Clock;
  readonly #journal: Journal;
  readonly #compactMin: number;
  #compactAt: number;
  #compacting: Promise<void> | undefined;
  #sweep: TimerHandle | undefined;
  #closed = false;

  private constructor(journal: Journal, clock: Clock, compactMin: number) {
    this.#journal = journal;
    this.#clock = clock;
    this.#compactMin = compactMin;
    this.#compactAt = Math.max(compactMin, journal.bytes * 2);
    this.#scheduleSweep();
  }

  /** Opens the store, replaying the journal. Sessions already expired are dropped. */
  static async open(opts: FileSessionStoreOptions): Promise<FileSessionStore> {
    const dir = join(opts.dataDir, STATE_SUBDIR);
    await ensurePrivateDir(dir);
    const { journal, entries } = await openJournal({ path: join(dir, SESSION_JOURNAL_FILE), durability: opts.durability ?? "fsync", timeoutMs: opts.timeoutMs });
    const store = new FileSessionStore(journal, opts.clock, opts.compactMinBytes ?? JOURNAL_COMPACT_MIN_BYTES);
    for (const e of entries) store.#apply(e as Entry);
    const now = opts.clock.now();
    for (const [id, r] of store.#sessions) if (r.expiresAt <= now) store.#sessions.delete(id);
    return store;
  }

  /** Bytes in the journal now (it shrinks when compacted). */
  get journalBytes(): number {
    return this.#journal.bytes;
  }

  /** Resolves when a compaction in progress is done. */
  async settled(): Promise<void> {
    await this.#compacting;
  }

  /** Sessions held (live or ended, not yet expired). */
  get size(): number {
    return this.#sessions.size;
  }

  async create(record: SessionRecord): Promise<void> {
    this.#open();
    // A loser of concurrent creates hears SessionExistsError only once the winner is readable
    // (as on every store); if the first create fails, the id is free again.
    for (let inFlight = this.#creating.get(record.id); inFlight; inFlight = this.#creating.get(record.id)) {
      await inFlight.catch(() => undefined);
    }
    if (this.#sessions.has(record.id)) throw new SessionExistsError(record.id);
    const rec = structuredClone(record);
    const writing = this.#journal.append({ op: "create", rec } satisfies Entry, () => this.#sessions.set(rec.id, rec));
    this.#creating.set(record.id, writing);
    try {
      await writing;
    } finally {
      if (this.#creating.get(record.id) === writing) this.#creating.delete(record.id);
    }
    this.#maybeCompact();
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const r = this.#sessions.get(id);
    // Every authenticated call reads its session: the cheap plain-data copy, as the memory store.
    return r && clonePlain(r);
  }

  async list(query: SessionListQuery): Promise<SessionRecord[]> {
    return pageOf(this.#sessions.values(), query).map((r) => structuredClone(r));
  }

  end(id: string, reason: string, atMs: number): Promise<SessionRecord | undefined> {
    // Concurrent ends of one session settle on the first: later callers wait for it.
    const pending = this.#ending.get(id);
    if (pending) return pending;
    const p = (async () => {
      this.#open();
      const r = this.#sessions.get(id);
      if (!r) return undefined;
      if (r.endedAt === undefined) {
        await this.#journal.append({ op: "end", id, reason, at: atMs } satisfies Entry, () => this.#apply({ op: "end", id, reason, at: atMs }));
        this.#maybeCompact();
      }
      const now = this.#sessions.get(id);
      return now && structuredClone(now);
    })().finally(() => this.#ending.delete(id));
    this.#ending.set(id, p);
    return p;
  }

  async addCredential(id: string, credentialHash: string): Promise<SessionRecord | undefined> {
    this.#open();
    if (!this.#sessions.has(id)) return undefined;
    const e: Entry = { op: "credential", id, hash: credentialHash };
    await this.#journal.append(e, () => this.#apply(e));
    const r = this.#sessions.get(id);
    return r && structuredClone(r);
  }

  /** Walks the sessions held (every live one is in memory): one orchestrator's count for its quota. */
  async countStartedBy(startedBy: string, live: (r: SessionRecord) => boolean): Promise<number> {
    let n = 0;
    for (const r of this.#sessions.values()) if (r.startedBy === startedBy && live(r)) n++;
    return n;
  }

  async delete(id: string): Promise<void> {
    this.#open();
    if (!this.#sessions.has(id)) return;
    await this.#journal.append({ op: "delete", id } satisfies Entry, () => this.#sessions.delete(id));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweep) this.#clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    await this.#compacting?.catch(() => undefined);
    await this.#journal.close();
  }

  #open(): void {
    if (this.#closed) throw new Error("session store is closed");
  }

  #apply(e: Entry): void {
    switch (e.op) {
      case "create":
        this.#sessions.set(e.rec.id, e.rec);
        break;
      case "end": {
        const r = this.#sessions.get(e.id);
        if (r && r.endedAt === undefined) {
          r.endedAt = e.at;
          r.endReason = e.reason;
        }
        break;
      }
      case "credential": {
        const r = this.#sessions.get(e.id);
        if (r) r.retryCredentialHashes = [...(r.retryCredentialHashes ?? []), e.hash].slice(-MAX_RETRY_CREDENTIALS);
        break;
      }
      case "delete":
        this.#sessions.delete(e.id);
        break;
    }
  }

  /** Compacts once the journal is twice what it was after the last compaction (and past 1 MiB). */
  #maybeCompact(): void {
    if (this.#compacting || this.#closed || this.#journal.bytes < this.#compactAt) return;
    this.#compacting = this.#journal
      .rewrite(() => [...this.#sessions.values()].map((rec) => ({ op: "create", rec }) satisfies Entry))
      .then(() => {
        this.#compactAt = Math.max(this.#compactMin, this.#journal.bytes * 2);
      })
      .catch(() => undefined)
      .finally(() => {
        this.#compacting = undefined;
      });
  }

  #scheduleSweep(): void {
    this.#sweep = this.#clock.setTimeout(() => {
      const now = this.#clock.now();
      for (const [id, r] of this.#sessions) if (r.expiresAt <= now) this.#sessions.delete(id);
      this.#maybeCompact();
      if (!this.#closed) this.#scheduleSweep();
    }, SESSION_SWEEP_INTERVAL_MS);
  }
}

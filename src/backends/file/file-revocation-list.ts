/**
 * The revocation list of a single replica without NATS, kept in the data directory: every
 * rule is made durable in an append-only journal (`<dataDir>/state/revocations.journal`)
 * before it applies, with its feed position, so after a restart or a kill -9 revoked tokens
 * stay revoked and streams resume from the positions runtimes hold. Lookups are the memory
 * list's (same index, same pruning); the journal is compacted to the rules still able to match.
 */
import { join } from "node:path";
import type { Clock, TimerHandle } from "../../clock.js";
import { ensurePrivateDir } from "../../audit/permissions.js";
import { openJournal, type Journal, type JournalDurability } from "./append-journal.js";
import { JOURNAL_COMPACT_MIN_BYTES, STATE_SUBDIR } from "./file-session-store.js";
import { MemoryRevocationList } from "../memory/memory-revocation-list.js";
import { type Revocation, REVOCATION_PRUNE_INTERVAL_MS } from "../types.js";

/** File name of the revocation journal. */
export const REVOCATION_JOURNAL_FILE = "revocations.journal";

type Entry = { op: "revoke"; r: Revocation } | { op: "position"; seq: number };

/** Options of `FileRevocationList.open`. */
export interface FileRevocationListOptions {
  dataDir: string;
  clock: Clock;
  /** As the audit log's (CAPVEND_AUDIT_DURABILITY): "fsync" by default. */
  durability?: JournalDurability;
  /** Longest wait for a journal write, ms (default 2000). */
  timeoutMs?: number;
}

/** The durable embedded revocation list. */
export class FileRevocationList extends MemoryRevocationList {
  readonly #journal: Journal;
  readonly #clock: Clock;
  /** Highest feed position handed out (applied or in flight). */
  #assigned: number;
  #compactAt: number;
  #compacting: Promise<void> | undefined;
  #timer: TimerHandle | undefined;
  #closed = false;

  private constructor(journal: Journal, clock: Clock) {
    super(clock);
    this.#journal = journal;
    this.#clock = clock;
    this.#assigned = 0;
    this.#compactAt = Math.max(JOURNAL_COMPACT_MIN_BYTES, journal.bytes * 2);
    this.#scheduleCompactCheck();
  }

  /** Opens the list, replaying the journal: rules already expired are dropped, positions kept. */
  static async open(opts: FileRevocationListOptions): Promise<FileRevocationList> {
    const dir = join(opts.dataDir, STATE_SUBDIR);
    await ensurePrivateDir(dir);
    const { journal, entries } = await openJournal({ path: join(dir, REVOCATION_JOURNAL_FILE), durability: opts.durability ?? "fsync", timeoutMs: opts.timeoutMs });
    const list = new FileRevocationList(journal, opts.clock);
    const now = opts.clock.now();
    let position = 0;
    for (const e of entries as Entry[]) {
      if (e.op === "position") position = Math.max(position, e.seq);
      else if (e.op === "revoke" && typeof e.r?.seq === "number") {
        position = Math.max(position, e.r.seq);
        if (e.r.expiresAt > now) list.apply(e.r);
      }
    }
    list.restorePosition(position);
    list.#assigned = position;
    return list;
  }

  override async publish(revocation: Revocation): Promise<void> {
    if (this.#closed) throw new Error("revocation list is closed");
    const r: Revocation = { ...revocation, seq: ++this.#assigned };
    // Applied (and fanned out) only once durable, in feed order: the journal runs in order.
    await this.#journal.append({ op: "revoke", r } satisfies Entry, () => this.apply(r));
    this.#maybeCompact();
  }

  override async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    await super.close();
    await this.#compacting?.catch(() => undefined);
    await this.#journal.close();
  }

  #maybeCompact(force = false): void {
    if (this.#compacting || this.#closed) return;
    if (!force && this.#journal.bytes < this.#compactAt) return;
    this.#compacting = this.#journal
      .rewrite(() => [{ op: "position", seq: this.lastSeq } satisfies Entry, ...this.since(0).filter((r) => r.expiresAt > this.#clock.now()).map((r) => ({ op: "revoke", r }) satisfies Entry)])
      .then(() => {
        this.#compactAt = Math.max(JOURNAL_COMPACT_MIN_BYTES, this.#journal.bytes * 2);
      })
      .catch(() => undefined)
      .finally(() => {
        this.#compacting = undefined;
      });
  }

  #scheduleCompactCheck(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#maybeCompact();
      if (!this.#closed) this.#scheduleCompactCheck();
    }, REVOCATION_PRUNE_INTERVAL_MS);
  }
}

import type { Clock, TimerHandle } from "../../clock.js";
import { revocationsAfter } from "../revocation-rules.js";
import { REVOCATION_PRUNE_INTERVAL_MS, type Revocation, type RevocationList, type SessionSubject, type TokenSubject } from "../types.js";
import { RevocationIndex } from "../revocation-index.js";

/** The in-process revocation list of a single replica: publish applies at once. */
export class MemoryRevocationList implements RevocationList {
  readonly #index = new RevocationIndex();
  readonly #listeners = new Set<(r: Revocation) => void>();
  /** Applied revocations in feed order, for resuming streams; pruned with the index. */
  #log: Revocation[] = [];
  #lastSeq = 0;
  readonly #clock: Clock;
  #timer: TimerHandle | undefined;
  /** Callers of `catchUp` waiting for a position not yet reached. */
  #waiters: { seq: number; resolve: (ok: boolean) => void; timer: TimerHandle }[] = [];
  #closed = false;

  constructor(clock: Clock) {
    this.#clock = clock;
    this.#schedulePrune();
  }

  get size(): number {
    return this.#index.size;
  }

  async publish(revocation: Revocation): Promise<void> {
    if (this.#closed) throw new Error("revocation list is closed");
    this.apply(revocation);
  }

  /**
   * Applies a revocation at its feed position and tells every subscriber; a throwing
   * subscriber never stops the rest. A rule already expired only takes its position: it
   * can match nothing alive (see RevocationList).
   */
  protected apply(revocation: Revocation): void {
    const applied = { ...revocation, seq: revocation.seq ?? this.#lastSeq + 1 };
    this.#lastSeq = Math.max(this.#lastSeq, applied.seq);
    if (applied.expiresAt > this.#clock.now()) {
      this.#log.push(applied);
      this.#index.add(applied);
      for (const l of [...this.#listeners]) {
        try {
          l(applied);
        } catch {
          // A listener's failure is its own; the revocation is applied regardless.
        }
      }
    }
    this.#wake();
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Sets the feed position after a replay whose newest rules were pruned (durable lists). */
  protected restorePosition(seq: number): void {
    this.#lastSeq = Math.max(this.#lastSeq, seq);
    this.#wake();
  }

  catchUp(seq: number, timeoutMs: number): Promise<boolean> {
    if (seq <= this.#lastSeq) return Promise.resolve(true);
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = {
        seq,
        resolve,
        timer: this.#clock.setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          resolve(false);
        }, Math.max(0, timeoutMs)),
      };
      this.#waiters.push(waiter);
    });
  }

  /** Resolves the `catchUp` callers whose position is reached. */
  #wake(): void {
    if (this.#waiters.length === 0) return;
    const ready = this.#waiters.filter((w) => w.seq <= this.#lastSeq);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.seq > this.#lastSeq);
    for (const w of ready) {
      this.#clock.clearTimeout(w.timer);
      w.resolve(true);
    }
  }

  since(seq: number): Revocation[] {
    return revocationsAfter(this.#log, seq);
  }

  tokenRevocation(token: TokenSubject): Revocation | undefined {
    return this.#index.token(token);
  }

  sessionRevocation(session: SessionSubject): Revocation | undefined {
    return this.#index.session(session);
  }

  grantRevocation(session: SessionSubject, resource: string): Revocation | undefined {
    return this.#index.grant(session, resource);
  }

  subscribe(listener: (revocation: Revocation) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Number of subscribers (tests check that closed streams leave none behind). */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#waiters) {
      this.#clock.clearTimeout(w.timer);
      w.resolve(false);
    }
    this.#waiters = [];
    this.#listeners.clear();
  }

  #schedulePrune(): void {
    this.#timer = this.#clock.setTimeout(() => {
      const now = this.#clock.now();
      this.#index.prune(now);
      this.#log = this.#log.filter((r) => r.expiresAt > now);
      if (!this.#closed) this.#schedulePrune();
    }, REVOCATION_PRUNE_INTERVAL_MS);
  }
}

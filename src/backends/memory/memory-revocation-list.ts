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

  /** Applies a revocation and tells every subscriber; a throwing subscriber never stops the rest. */
  protected apply(revocation: Revocation): void {
    const applied = { ...revocation, seq: revocation.seq ?? this.#lastSeq + 1 };
    this.#lastSeq = Math.max(this.#lastSeq, applied.seq);
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

  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Sets the feed position after a replay whose newest rules were pruned (durable lists). */
  protected restorePosition(seq: number): void {
    this.#lastSeq = Math.max(this.#lastSeq, seq);
  }

  async catchUp(seq: number): Promise<boolean> {
    return seq <= this.#lastSeq;
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

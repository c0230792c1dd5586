/**
 * The admission queue for stream opens. Opening a stream is the expensive moment of its life
 * (a token minted and audited per grant, then the open itself audited); a reconnect storm
 * asks for thousands at once. Admitted a bounded number at a time, in arrival order, the
 * storm is served at full speed while the audit log's queue and the event loop stay short,
 * so neither the audit deadline nor other callers' requests feel it; the rest wait here
 * instead of failing.
 */

/** Stream opens in progress at once, by default. */
export const DEFAULT_MAX_CONCURRENT_OPENS = 32;

interface Waiting {
  admit: () => void;
  signal: AbortSignal;
}

/** A FIFO semaphore whose waiters leave the queue when their call is cancelled. */
export class Admission {
  readonly limit: number;
  #active = 0;
  #queue: Waiting[] = [];
  #head = 0;

  constructor(limit = DEFAULT_MAX_CONCURRENT_OPENS) {
    if (!(limit >= 1)) throw new RangeError(`admission limit must be at least 1, got ${limit}`);
    this.limit = limit;
  }

  /** Opens in progress. */
  get active(): number {
    return this.#active;
  }

  /** Opens waiting their turn. */
  get waiting(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Resolves with the release function once admitted; resolves `undefined` if `signal` aborts
   * first (the caller went away). Call release exactly once, however the open ends.
   */
  acquire(signal: AbortSignal): Promise<(() => void) | undefined> {
    if (signal.aborted) return Promise.resolve(undefined);
    if (this.#active < this.limit && this.waiting === 0) {
      this.#active++;
      return Promise.resolve(this.#releaser());
    }
    return new Promise((resolve) => {
      const onAbort = () => resolve(undefined);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#queue.push({
        signal,
        admit: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(this.#releaser());
        },
      });
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      this.#next();
    };
  }

  #next(): void {
    while (this.#active < this.limit && this.#head < this.#queue.length) {
      const w = this.#queue[this.#head++]!;
      if (w.signal.aborted) continue;
      this.#active++;
      w.admit();
    }
    // Drop the consumed prefix now and then, so the array does not grow with every storm.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

import type { Clock, TimerHandle } from "../clock.js";

/** A scheduled callback; pass it to `cancel`. */
export interface QueuedTimer {
  readonly at: number;
}

interface Entry extends QueuedTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * Every renewal, heartbeat and stall check of every stream in one binary heap, driven by a
 * single clock timer armed for the earliest entry. Scheduling and cancelling cost
 * O(log n) whatever the number of streams; cancelled entries are dropped lazily and the
 * heap is compacted when they outnumber live ones.
 */
export class TimerQueue {
  readonly #clock: Clock;
  #heap: Entry[] = [];
  #seq = 0;
  #cancelled = 0;
  #armed: { handle: TimerHandle; at: number } | undefined;
  #closed = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Live (scheduled, not cancelled) entries. */
  get size(): number {
    return this.#heap.length - this.#cancelled;
  }

  /** Whether the single underlying clock timer is armed (tests check nothing leaks). */
  get armed(): boolean {
    return this.#armed !== undefined;
  }

  schedule(at: number, fn: () => void): QueuedTimer {
    if (this.#closed) throw new Error("timer queue is closed");
    const e: Entry = { at, seq: ++this.#seq, fn, cancelled: false };
    this.#push(e);
    this.#arm();
    return e;
  }

  cancel(timer: QueuedTimer | undefined): void {
    const e = timer as Entry | undefined;
    if (!e || e.cancelled) return;
    e.cancelled = true;
    this.#cancelled++;
    if (this.#cancelled > 64 && this.#cancelled * 2 > this.#heap.length) this.#compact();
    if (this.size === 0) this.#disarm();
  }

  close(): void {
    this.#closed = true;
    this.#disarm();
    this.#heap = [];
    this.#cancelled = 0;
  }

  #fire(): void {
    this.#armed = undefined;
    const now = this.#clock.now();
    while (this.#heap.length > 0 && this.#heap[0]!.at <= now) {
      const e = this.#pop()!;
      if (e.cancelled) {
        this.#cancelled--;
        continue;
      }
      e.cancelled = true; // fired: a later cancel is a no-op
      try {
        e.fn();
      } catch {
        // One callback's failure must not stop the others; callbacks report their own errors.
      }
    }
    this.#arm();
  }

  #arm(): void {
    while (this.#heap.length > 0 && this.#heap[0]!.cancelled) {
      this.#pop();
      this.#cancelled--;
    }
    const head = this.#heap[0];
    if (!head || this.#closed) return this.#disarm();
    if (this.#armed && this.#armed.at <= head.at) return;
    this.#disarm();
    this.#armed = { at: head.at, handle: this.#clock.setTimeout(() => this.#fire(), head.at - this.#clock.now()) };
  }

  #disarm(): void {
    if (this.#armed) this.#clock.clearTimeout(this.#armed.handle);
    this.#armed = undefined;
  }

  #compact(): void {
    this.#heap = this.#heap.filter((e) => !e.cancelled);
    this.#cancelled = 0;
    for (let i = (this.#heap.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  #less(a: Entry, b: Entry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #push(e: Entry): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  #pop(): Entry | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      this.#down(0);
    }
    return top;
  }

  #down(i: number): void {
    const h = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.#less(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.#less(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

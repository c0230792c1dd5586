/** Events a subscriber has not read yet, at most; older ones are dropped first: 1024. */
export const EVENT_BUFFER_LIMIT = 1024;

/**
 * Fan-out of events to any number of async-iterable subscribers. Each subscriber has its own
 * bounded queue, so one that stops reading never holds back the manager or other readers
 * (it loses its oldest events instead). `close()` ends every iteration.
 */
export class EventFeed<E> {
  readonly #subscribers = new Set<Subscriber<E>>();
  #closed = false;

  /** Subscribers currently attached. */
  get size(): number {
    return this.#subscribers.size;
  }

  publish(event: E): void {
    for (const s of this.#subscribers) s.push(event);
  }

  /** A new iteration over events published from now on; ends at `close()` or when `signal` aborts. */
  subscribe(signal?: AbortSignal): AsyncIterableIterator<E> {
    const sub = new Subscriber<E>(() => this.#subscribers.delete(sub), signal);
    if (this.#closed) sub.end();
    else this.#subscribers.add(sub);
    return sub;
  }

  /** Ends every subscriber's iteration (after what it has queued). Idempotent. */
  close(): void {
    this.#closed = true;
    for (const s of [...this.#subscribers]) s.end();
  }
}

class Subscriber<E> implements AsyncIterableIterator<E> {
  readonly #queue: E[] = [];
  #wake: ((r: IteratorResult<E>) => void) | undefined;
  #ended = false;
  readonly #detach: () => void;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.end();

  constructor(detach: () => void, signal: AbortSignal | undefined) {
    this.#detach = detach;
    this.#signal = signal;
    if (signal?.aborted) this.#ended = true;
    else signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  push(event: E): void {
    if (this.#ended) return;
    if (this.#wake) {
      const wake = this.#wake;
      this.#wake = undefined;
      wake({ value: event, done: false });
      return;
    }
    if (this.#queue.length >= EVENT_BUFFER_LIMIT) this.#queue.shift();
    this.#queue.push(event);
  }

  end(): void {
    if (this.#ended && !this.#wake) {
      this.#release();
      return;
    }
    this.#ended = true;
    this.#release();
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.({ value: undefined, done: true });
  }

  #release(): void {
    this.#detach();
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }

  next(): Promise<IteratorResult<E>> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve({ value: queued, done: false });
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.#wake = resolve));
  }

  return(): Promise<IteratorResult<E>> {
    this.#queue.length = 0;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<E> {
    return this;
  }
}

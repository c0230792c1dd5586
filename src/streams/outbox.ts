/** Most control events one stream may have waiting before its reader counts as stuck. */
export const MAX_PENDING_CONTROL = 10_000;

/** Events that are never dropped, merged or reordered: revocations, session end, reconnect, failure. */
export type ControlEvent =
  | { kind: "revoked"; tokenIds: string[]; grantIndexes: number[]; reason: string; seq?: number; revokedAt?: number }
  | { kind: "session_ended"; reason: string; seq?: number; revokedAt?: number }
  | { kind: "reconnect"; reason: string }
  | { kind: "fail"; error: Error };

export type OutboxItem<T> = ControlEvent | { kind: "token"; grantIndex: number; token: T } | { kind: "heartbeat" };

/**
 * What one stream has yet to send. Control events go first, in order; each grant keeps
 * only its newest unsent token (a renewal replaces an unsent older one); heartbeats
 * collapse into one. So a slow reader costs a bounded amount of memory and, once it
 * reads again, gets the current state rather than history.
 */
export class Outbox<T> {
  #control: ControlEvent[] = [];
  #tokens = new Map<number, T>();
  #heartbeat = false;
  #waiter: ((item: OutboxItem<T> | undefined) => void) | undefined;
  #closed = false;

  /** Queues a control event; returns false when the queue is over its bound (the reader is stuck). */
  pushControl(event: ControlEvent): boolean {
    if (this.#closed) return true;
    if (this.#control.length >= MAX_PENDING_CONTROL) return false;
    this.#control.push(event);
    this.#wake();
    return true;
  }

  /** Queues a token for a grant, replacing an unsent one. */
  pushToken(grantIndex: number, token: T): void {
    if (this.#closed) return;
    this.#tokens.delete(grantIndex); // re-insert: the newest goes to the back of the line
    this.#tokens.set(grantIndex, token);
    this.#wake();
  }

  /** Drops the unsent token of a grant (it was revoked before it left). */
  dropToken(grantIndex: number): T | undefined {
    const t = this.#tokens.get(grantIndex);
    this.#tokens.delete(grantIndex);
    return t;
  }

  /** The unsent token of a grant, if any. */
  pendingToken(grantIndex: number): T | undefined {
    return this.#tokens.get(grantIndex);
  }

  heartbeat(): void {
    if (this.#closed) return;
    this.#heartbeat = true;
    this.#wake();
  }

  /** Items waiting to be sent. */
  get pending(): number {
    return this.#control.length + this.#tokens.size + (this.#heartbeat ? 1 : 0);
  }

  /**
   * The next item to send, waiting for one if none is queued. Resolves undefined once the
   * outbox is closed or `signal` aborts. One reader at a time.
   */
  next(signal?: AbortSignal): Promise<OutboxItem<T> | undefined> {
    const item = this.#take();
    if (item || this.#closed || signal?.aborted) return Promise.resolve(item);
    return new Promise((resolve) => {
      const onAbort = () => {
        this.#waiter = undefined;
        resolve(undefined);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiter = (i) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(i);
      };
    });
  }

  close(): void {
    this.#closed = true;
    this.#control = [];
    this.#tokens.clear();
    this.#heartbeat = false;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.(undefined);
  }

  #take(): OutboxItem<T> | undefined {
    if (this.#closed) return undefined;
    const c = this.#control.shift();
    if (c) return c;
    for (const [grantIndex, token] of this.#tokens) {
      this.#tokens.delete(grantIndex);
      return { kind: "token", grantIndex, token };
    }
    if (this.#heartbeat) {
      this.#heartbeat = false;
      return { kind: "heartbeat" };
    }
    return undefined;
  }

  #wake(): void {
    const w = this.#waiter;
    if (!w) return;
    const item = this.#take();
    if (!item) return;
    this.#waiter = undefined;
    w(item);
  }
}

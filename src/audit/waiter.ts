/**
 * A promise that settles once, either by the sink or by its deadline. The deadline is what
 * keeps a stuck sink from holding a caller: the timer rejects the caller, whatever the sink
 * is still doing.
 */
import type { Clock, TimerHandle } from "../clock.js";

/** One caller waiting for its record. */
export interface Waiter {
  readonly promise: Promise<void>;
  readonly settled: boolean;
  /** Resolves unless already settled. */
  resolve(): void;
  /** Rejects unless already settled. */
  reject(err: Error): void;
}

/**
 * A waiter that rejects with `onTimeout()` after `timeoutMs` of `clock` time unless settled
 * first. `onTimeout` runs only when the timer wins, so it can record that the sink stalled;
 * `onSettle` runs once, however it settles.
 */
export function createWaiter(clock: Clock, timeoutMs: number, onTimeout: () => Error, onSettle?: () => void): Waiter {
  const waiter = createSettleOnce(() => {
    clock.clearTimeout(timer);
    onSettle?.();
  });
  // Cleared when the waiter settles, so when it fires the waiter is still pending.
  const timer: TimerHandle = clock.setTimeout(() => waiter.reject(onTimeout()), timeoutMs);
  return waiter;
}

/**
 * A waiter with no deadline of its own, for a sink that bounds its writes itself (the file
 * sink's watchdog): no timer per record, which is most of what a waiter costs.
 */
export function createSettleOnce(onSettle?: () => void): Waiter {
  let settled = false;
  let resolveFn!: () => void;
  let rejectFn!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolveFn = res;
    rejectFn = rej;
  });
  return {
    promise,
    get settled() {
      return settled;
    },
    resolve() {
      if (settled) return;
      settled = true;
      onSettle?.();
      resolveFn();
    },
    reject(err) {
      if (settled) return;
      settled = true;
      onSettle?.();
      rejectFn(err);
    },
  };
}

/**
 * Turns for RPC handlers, so one connection's burst cannot hold the event loop. HTTP/2 hands
 * the server every stream of a socket read at once: a client that opens hundreds of streams
 * in one write would otherwise have all of their handlers run back to back, and every other
 * connection's call would wait behind the whole burst. Here a call runs at once while the
 * current turn of the event loop has done less than a slice of handler work; past it, calls
 * wait in a queue per connection and run in later turns, one connection at a time, so a
 * call on a quiet connection waits for at most a slice and one call of each busy connection.
 */
import { performance } from "node:perf_hooks";

/** Handler work one turn of the event loop may do before further calls wait, in ms. */
export const DEFAULT_DISPATCH_SLICE_MS = 2;

/** Runs handlers in fair turns; see the module comment. */
export interface FairDispatch {
  /** Runs `fn` now, or queued behind the calls already waiting on `connection`. */
  run(connection: object, fn: () => void): void;
  /** Calls waiting their turn, all connections together. */
  readonly waiting: number;
}

/** Creates a dispatcher; `sliceMs` defaults to {@link DEFAULT_DISPATCH_SLICE_MS}. */
export function createFairDispatch(sliceMs = DEFAULT_DISPATCH_SLICE_MS): FairDispatch {
  // Connections with calls waiting, in turn order (a Map keeps insertion order).
  const queues = new Map<object, Array<() => void>>();
  let waiting = 0;
  let sliceStart = -1;
  let drainScheduled = false;

  const inSlice = (): boolean => {
    const now = performance.now();
    if (sliceStart < 0) {
      sliceStart = now;
      // The next turn starts a new slice.
      setImmediate(() => (sliceStart = -1));
      return true;
    }
    return now - sliceStart < sliceMs;
  };

  const runSafely = (fn: () => void) => {
    try {
      fn();
    } catch {
      // A handler reports its own failures to its call; nothing may stop the others' turns.
    }
  };

  const drain = () => {
    drainScheduled = false;
    const start = performance.now();
    // One call of each connection per round: a connection sent to the back of the line is
    // met again by this loop after every other one.
    for (const [connection, queue] of queues) {
      {
        const fn = queue.shift()!;
        waiting--;
        if (queue.length === 0) queues.delete(connection);
        else {
          // To the back of the line.
          queues.delete(connection);
          queues.set(connection, queue);
        }
        runSafely(fn);
        if (performance.now() - start >= sliceMs) break;
      }
    }
    if (queues.size > 0) schedule();
  };

  const schedule = () => {
    if (drainScheduled) return;
    drainScheduled = true;
    setImmediate(drain);
  };

  return {
    get waiting() {
      return waiting;
    },
    run(connection, fn) {
      const queue = queues.get(connection);
      if (!queue && inSlice()) {
        fn();
        return;
      }
      if (queue) queue.push(fn);
      else queues.set(connection, [fn]);
      waiting++;
      schedule();
    },
  };
}

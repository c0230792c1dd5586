import type { Clock } from "../../clock.js";
import type { Logger } from "../../logging/logger.js";
import { describeNatsError } from "./deadline.js";

/** Waits before re-creating a subscription that ended or failed, by consecutive failure: ms. */
export const RESUBSCRIBE_BACKOFF_MS: readonly number[] = [250, 500, 1000, 2000, 5000];

/** Options for `superviseSubscription`. */
export interface SuperviseOptions {
  /** Named in log lines, e.g. "revocation feed". */
  name: string;
  logger: Logger;
  clock: Clock;
  /** Aborting stops the loop (the current run must end on its own: close its iterator). */
  signal: AbortSignal;
  /** Default `RESUBSCRIBE_BACKOFF_MS`; the last entry repeats. */
  backoffMs?: readonly number[];
  /** Jitter source in [0, 1); adds up to half the delay. Default Math.random. */
  random?: () => number;
}

/**
 * Keeps a JetStream subscription alive for the life of the backend. `run` subscribes from
 * wherever its owner has got to and consumes until the iterator ends; whenever it ends or
 * throws (a consumer lost with its server, a create that failed 30 times while NATS was
 * away), it runs again after a backoff. `run` calls `progress()` when it receives something,
 * which resets the backoff. Resolves once `signal` is aborted and the current run returned.
 */
export async function superviseSubscription(run: (progress: () => void) => Promise<void>, opts: SuperviseOptions): Promise<void> {
  const backoff = opts.backoffMs ?? RESUBSCRIBE_BACKOFF_MS;
  const random = opts.random ?? Math.random;
  let failures = 0;
  while (!opts.signal.aborted) {
    try {
      await run(() => {
        failures = 0;
      });
      if (opts.signal.aborted) return;
      opts.logger.warn({ subscription: opts.name }, "NATS subscription ended; re-subscribing");
    } catch (err) {
      if (opts.signal.aborted) return;
      opts.logger.warn({ subscription: opts.name, error: describeNatsError(err) }, "NATS subscription failed; re-subscribing");
    }
    const base = backoff[Math.min(failures, backoff.length - 1)] ?? 1000;
    failures++;
    await sleep(opts.clock, base + Math.floor(random() * base * 0.5), opts.signal);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clock.clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

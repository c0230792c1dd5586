import type { Clock } from "../../clock.js";
import { NatsUnavailableError } from "./errors.js";

/**
 * Settles like `work`, or rejects with `NatsUnavailableError` after `timeoutMs`: nats.js
 * bounds its own requests, but this keeps any path (a reconnect in progress, a lost reply)
 * from holding a caller longer than promised. A late result is ignored.
 */
export function withDeadline<T>(work: Promise<T>, timeoutMs: number, clock: Clock, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = clock.setTimeout(() => reject(new NatsUnavailableError(`${what}: no answer from NATS within ${timeoutMs} ms`)), timeoutMs);
    work.then(
      (v) => {
        clock.clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clock.clearTimeout(timer);
        reject(err instanceof NatsUnavailableError ? err : new NatsUnavailableError(`${what}: ${describeNatsError(err)}`, { cause: err }));
      },
    );
  });
}

/** A short, content-free description of a nats.js error for messages and logs. */
export function describeNatsError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`.slice(0, 300);
  return String(err).slice(0, 300);
}

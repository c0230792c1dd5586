/**
 * Puts a deadline on any sink's appends. The file and memory sinks bound themselves; this is
 * for sinks that do not (a network sink), so a stuck one still fails fast.
 */
import type { Clock } from "../clock.js";
import { systemClock } from "../clock.js";
import { fault } from "../errors.js";
import type { AuditSink, AuditSinkState } from "./sink.js";
import { DEFAULT_AUDIT_TIMEOUT_MS } from "./sink.js";
import { createWaiter } from "./waiter.js";

/** Options for `withAuditTimeout`. */
export interface AuditTimeoutOptions {
  /** Deadline per append, ms. Default 2000. */
  timeoutMs?: number;
  /** Default `systemClock`. */
  clock?: Clock;
  /** Named in error messages, e.g. "jetstream". */
  name?: string;
}

/**
 * Wraps `sink` so each append rejects with fault `audit_unavailable` after `timeoutMs` when the
 * sink has not answered; a late answer is ignored. `state.healthy` is false from a timeout
 * until the next append the sink completes in time.
 */
export function withAuditTimeout(sink: AuditSink, options: AuditTimeoutOptions = {}): AuditSink {
  const clock = options.clock ?? systemClock;
  const timeoutMs = options.timeoutMs ?? DEFAULT_AUDIT_TIMEOUT_MS;
  const label = options.name ? `${options.name} audit sink` : "audit sink";
  let timedOut: string | undefined;
  let pending = 0;
  return {
    append(event) {
      const waiter = createWaiter(
        clock,
        timeoutMs,
        () => {
          timedOut = `${label} did not answer within ${timeoutMs} ms`;
          return fault("audit_unavailable", `audit record not written: ${label} timed out after ${timeoutMs} ms`);
        },
        () => {
          pending--;
        },
      );
      pending++;
      sink.append(event).then(
        () => {
          if (!waiter.settled) timedOut = undefined;
          waiter.resolve();
        },
        (err: unknown) => waiter.reject(err instanceof Error ? err : fault("audit_unavailable", String(err))),
      );
      return waiter.promise;
    },
    get state(): AuditSinkState {
      const inner = sink.state;
      const s: AuditSinkState = { ...inner, healthy: inner.healthy && timedOut === undefined, pending: Math.max(pending, inner.pending) };
      if (timedOut !== undefined && inner.lastError === undefined) s.lastError = timedOut;
      return s;
    },
    close: () => sink.close(),
  };
}

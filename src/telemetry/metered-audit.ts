/**
 * The audit sink seen from outside: a span per append, its latency and failures, and its
 * health as it flips. The sink itself (src/audit) stays unaware of telemetry.
 */
import type { Tracer } from "@opentelemetry/api";
import type { AuditSink, AuditSinkState } from "../audit/sink.js";
import { ATTR_AUDIT_EVENT, ATTR_AUDIT_OUTCOME, ATTR_ERROR_TYPE, ATTR_TOKEN_ID, SPAN_AUDIT } from "./attributes.js";
import type { Instruments } from "./instruments.js";
import { recordError } from "./span-errors.js";
import { errorTypeOf } from "../errors.js";

/** Options for `meterAudit`. */
export interface MeteredAuditOptions {
  /** Spans for appends; none when tracing is off (metrics are kept). */
  tracer?: Tracer;
  instruments: Instruments;
  /**
   * Called when the sink's `state.healthy` differs from what was last reported, checked after
   * every append settles (a failure or timeout turns it false; the next good write, true).
   */
  onHealthChange?: (healthy: boolean, state: AuditSinkState) => void;
}

/**
 * Wraps `sink` so each append is a `capvend.audit.append` span (event type, jti when there is
 * one) under the active span, timed in `capvend.audit.append.duration` and, when it fails,
 * counted in `capvend.audit.failures` by error class. Appends resolve and reject exactly as
 * the sink's do; `state` and `close` are the sink's.
 */
export function meterAudit(sink: AuditSink, opts: MeteredAuditOptions): AuditSink {
  const { tracer, instruments, onHealthChange } = opts;
  let reported = sink.state.healthy;
  const checkHealth = () => {
    const state = sink.state;
    if (state.healthy === reported) return;
    reported = state.healthy;
    onHealthChange?.(state.healthy, state);
  };
  return {
    append(event) {
      const span = tracer?.startSpan(SPAN_AUDIT, {
        attributes: { [ATTR_AUDIT_EVENT]: event.type, ...(event.jti ? { [ATTR_TOKEN_ID]: event.jti } : {}) },
      });
      const started = performance.now();
      const settle = (err?: unknown) => {
        const failed = err !== undefined;
        instruments.auditDuration.record((performance.now() - started) / 1000, { [ATTR_AUDIT_OUTCOME]: failed ? "failed" : "ok" });
        span?.setAttribute(ATTR_AUDIT_OUTCOME, failed ? "failed" : "ok");
        if (failed) {
          instruments.auditFailures.add(1, { [ATTR_ERROR_TYPE]: errorTypeOf(err), [ATTR_AUDIT_EVENT]: event.type });
          if (span) recordError(span, err);
        }
        span?.end();
        checkHealth();
      };
      let appended: Promise<void>;
      try {
        appended = sink.append(event);
      } catch (err) {
        // The interface promises a rejected promise, but a sink that throws must still fail closed.
        settle(err ?? new Error("audit append threw"));
        return Promise.reject(err);
      }
      return appended.then(
        () => settle(),
        (err: unknown) => {
          settle(err ?? new Error("audit append rejected"));
          throw err;
        },
      );
    },
    get state() {
      return sink.state;
    },
    close: () => sink.close(),
  };
}

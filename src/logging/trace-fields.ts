/** Trace and span ids for log lines, so a log line leads to its trace and back. */
import { context, isSpanContextValid, trace } from "@opentelemetry/api";

/**
 * `{ trace_id, span_id }` of the span active where the log call is made, or `{}` outside any
 * span. Reads the async context only; costs one lookup per log line. A new object every
 * time: pino merges the line's fields into what its mixin returns.
 */
export function activeTraceFields(): { trace_id?: string; span_id?: string } {
  const sc = trace.getSpanContext(context.active());
  if (!sc || !isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId };
}

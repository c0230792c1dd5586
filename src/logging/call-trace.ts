import { createContextKey, type ContextValues } from "@connectrpc/connect";

/** The ids of an RPC's server span: what its log lines and audit records are tied to. */
export interface CallTrace {
  /** 32 lowercase hex digits (W3C trace-id). */
  traceId: string;
  /** 16 lowercase hex digits (W3C parent-id). */
  spanId: string;
}

/**
 * The trace of the current call, set by the tracing interceptor (outermost) whenever the
 * call has valid span ids, recorded or not (a caller's `traceparent` is continued even with
 * tracing off). Handlers and interceptors read it; none of them needs to know about tracing.
 */
export const callTraceKey = createContextKey<CallTrace | undefined>(undefined, { description: "capvend call trace" });

/** The trace id of the current call, for audit records; undefined when it has none. */
export function callTraceId(values: ContextValues): string | undefined {
  return values.get(callTraceKey)?.traceId;
}

import { Code, ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { CapvendError, toWireError } from "../errors.js";
import { relay } from "../stream-relay.js";
import { callTraceKey } from "./call-trace.js";
import type { Logger } from "./logger.js";

/**
 * The single place errors leave the service: every error passes through toWireError (a
 * refusal keeps its caller-facing message; a server fault becomes its wire reason with a
 * fixed message; anything else INTERNAL with a fixed message). Failures of the server
 * (INTERNAL, UNAVAILABLE, UNKNOWN) are logged with their cause; an error that is not a
 * ConnectError at all is logged as unexpected.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  const wrap = (err: unknown, procedure: string, values: ContextValues): ConnectError => {
    if (!(err instanceof ConnectError)) logger.error({ procedure, err, ...callTraceFields(values) }, "unexpected error in handler");
    const wire = toWireError(err);
    if (err instanceof ConnectError && (wire.code === Code.Internal || wire.code === Code.Unavailable || wire.code === Code.Unknown)) {
      logger.warn({ procedure, code: Code[wire.code], msg_detail: wire.rawMessage, cause: describe(wire === err ? err.cause : err), ...callTraceFields(values) }, "rpc failed");
    }
    return wire;
  };
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: relay(res.message, { error: (err) => wrap(err, procedure, req.contextValues) }) };
    } catch (err) {
      throw wrap(err, procedure, req.contextValues);
    }
  };
}

function describe(cause: unknown): string | undefined {
  if (cause === undefined) return undefined;
  if (cause instanceof CapvendError) return `${cause.errorCode}: ${cause.rawMessage}`;
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}

/**
 * The ids of the call's span, so the line leads to its trace even when tracing is off and no
 * span is active (the log mixin adds the active span's ids, the same ones, when there is one).
 */
function callTraceFields(values: ContextValues): { trace_id?: string; span_id?: string } {
  const t = values.get(callTraceKey);
  return t ? { trace_id: t.traceId, span_id: t.spanId } : {};
}

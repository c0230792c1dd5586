import { Code, ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { capvendError, withErrorInfo } from "../errors.js";
import { callTraceKey } from "./call-trace.js";
import type { Logger } from "./logger.js";

/**
 * The last line of defence for what callers see: a ConnectError passes with its message
 * (written for the caller), given an ErrorInfo when it has none (see withErrorInfo);
 * anything else becomes INTERNAL with a fixed message, and its detail goes to the log only,
 * redacted.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  const wrap = (err: unknown, procedure: string, values: ContextValues): ConnectError => {
    if (err instanceof ConnectError) {
      if (err.code === Code.Internal || err.code === Code.Unavailable || err.code === Code.Unknown) {
        logger.warn({ procedure, code: Code[err.code], msg_detail: err.rawMessage, cause: describe(err.cause), ...callTraceFields(values) }, "rpc failed");
      }
      return withErrorInfo(err);
    }
    logger.error({ procedure, err, ...callTraceFields(values) }, "unexpected error in handler");
    return capvendError("INTERNAL", "internal error; the server log has the details", {}, err);
  };
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* res.message;
          } catch (err) {
            throw wrap(err, procedure, req.contextValues);
          }
        })(),
      };
    } catch (err) {
      throw wrap(err, procedure, req.contextValues);
    }
  };
}

function describe(cause: unknown): string | undefined {
  if (cause === undefined) return undefined;
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

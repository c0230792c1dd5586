import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { capvendError, withErrorInfo } from "../errors.js";
import type { Logger } from "./logger.js";

/**
 * The last line of defence for what callers see: a ConnectError passes with its message
 * (written for the caller), given an ErrorInfo when it has none (see withErrorInfo);
 * anything else becomes INTERNAL with a fixed message, and its detail goes to the log only,
 * redacted.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  const wrap = (err: unknown, procedure: string): ConnectError => {
    if (err instanceof ConnectError) {
      if (err.code === Code.Internal || err.code === Code.Unavailable || err.code === Code.Unknown) {
        logger.warn({ procedure, code: Code[err.code], msg_detail: err.rawMessage, cause: describe(err.cause) }, "rpc failed");
      }
      return withErrorInfo(err);
    }
    logger.error({ procedure, err }, "unexpected error in handler");
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
            throw wrap(err, procedure);
          }
        })(),
      };
    } catch (err) {
      throw wrap(err, procedure);
    }
  };
}

function describe(cause: unknown): string | undefined {
  if (cause === undefined) return undefined;
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}

import { pino, type Logger, type DestinationStream } from "pino";
import { looksSecret, redact, REDACTED } from "../security/redact.js";
import { activeTraceFields } from "./trace-fields.js";

export type { Logger };

/**
 * Structured JSON application logs (pino), apart from the audit log. Every line passes
 * through `redact`: a field or message that looks like a token, credential or key is
 * replaced before it is written, whatever the caller logged. A line written while a span is
 * active carries its `trace_id` and `span_id`.
 */
export function createLogger(opts: { level: string; replica: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: opts.level,
      base: { replica: opts.replica },
      timestamp: pino.stdTimeFunctions.isoTime,
      mixin: activeTraceFields,
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => redact(obj),
      },
      serializers: {
        err: (err: unknown) => redact(pino.stdSerializers.err(err as Error)),
      },
      hooks: {
        logMethod(args, method) {
          const safe = args.map((a) => (typeof a === "string" && looksSecret(a) ? REDACTED : a));
          return method.apply(this, safe as Parameters<typeof method>);
        },
      },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

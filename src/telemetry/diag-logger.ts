/**
 * The OpenTelemetry SDK reports its own trouble (an exporter that cannot reach its collector,
 * a dropped batch) through the global `diag` API, silent by default. An operator who set an
 * endpoint wants to hear that it does not answer, in the application log like everything else.
 */
import { diag, DiagLogLevel, type DiagLogger } from "@opentelemetry/api";
import type { Logger } from "../logging/logger.js";

/** Sends the SDK's warnings and errors to `logger` (process-wide: call it from the CLI only). */
export function routeDiagToLogger(logger: Logger): void {
  const write = (level: "warn" | "error") => (message: string, ...args: unknown[]) => {
    logger[level]({ component: "opentelemetry", details: args.length > 0 ? args.map(String) : undefined }, message);
  };
  const noop = () => {};
  const sink: DiagLogger = { error: write("error"), warn: write("warn"), info: noop, debug: noop, verbose: noop };
  diag.setLogger(sink, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
}

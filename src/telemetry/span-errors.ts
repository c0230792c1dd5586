/** How a failure is written onto a span, the same way everywhere. */
import { SpanStatusCode, type Span } from "@opentelemetry/api";
import { Code, ConnectError } from "@connectrpc/connect";
import { isFaultError, reasonOf } from "../errors.js";
import { ATTR_ERROR_REASON, ATTR_ERROR_TYPE } from "./attributes.js";

/**
 * Marks `span` failed: status ERROR with the error's message (a ConnectError's message was
 * written for the caller; anything else is redacted on export if it must be), `error.type`
 * (a server fault's code, such as "audit_unavailable"; else the gRPC code name in snake case
 * for a ConnectError; else the error's class name), and the
 * capvend reason when there is one. No stack trace: it says nothing an operator needs that
 * the log line does not, and it is the likeliest place for a stray secret.
 */
export function recordError(span: Span, err: unknown): void {
  if (err instanceof ConnectError) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.rawMessage });
    span.setAttribute(ATTR_ERROR_TYPE, isFaultError(err) ? err.errorCode : codeName(err.code));
    const reason = reasonOf(err);
    if (reason) span.setAttribute(ATTR_ERROR_REASON, reason);
    return;
  }
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  span.setAttribute(ATTR_ERROR_TYPE, err instanceof Error ? err.name : typeof err);
}

/** `Code.PermissionDenied` → "permission_denied", as the Connect protocol spells codes. */
export function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

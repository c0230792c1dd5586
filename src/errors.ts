import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Every reason a caller can see, as a closed union. The reason travels in the
 * `capvend-reason` response header/trailer next to the gRPC code, so clients branch on a
 * stable value instead of parsing messages.
 */
export type Reason =
  | "invalid_argument"
  | "missing_credential"
  | "unknown_credential"
  | "wrong_caller"
  | "session_not_found"
  | "session_ended"
  | "resource_not_granted"
  | "scope_not_granted"
  | "scope_denied"
  | "action_denied"
  | "audit_unavailable"
  | "revocation_unavailable"
  | "session_store_unavailable"
  | "slow_reader"
  | "draining"
  | "resume_ahead"
  | "internal";

const codeOf: Record<Reason, Code> = {
  invalid_argument: Code.InvalidArgument,
  missing_credential: Code.Unauthenticated,
  unknown_credential: Code.Unauthenticated,
  wrong_caller: Code.PermissionDenied,
  session_not_found: Code.NotFound,
  session_ended: Code.Unauthenticated,
  resource_not_granted: Code.PermissionDenied,
  scope_not_granted: Code.PermissionDenied,
  scope_denied: Code.PermissionDenied,
  action_denied: Code.PermissionDenied,
  audit_unavailable: Code.Unavailable,
  revocation_unavailable: Code.Unavailable,
  session_store_unavailable: Code.Unavailable,
  slow_reader: Code.ResourceExhausted,
  draining: Code.Unavailable,
  resume_ahead: Code.InvalidArgument,
  internal: Code.Internal,
};

/** Header (and trailer) that carries the stable reason of an error. */
export const REASON_HEADER = "capvend-reason";

/**
 * Builds the ConnectError for a reason. `message` is shown to the caller: it says what was
 * wrong with the input and never contains a token, credential or key. `cause` is kept for
 * the log only.
 */
export function capvendError(reason: Reason, message: string, cause?: unknown): ConnectError {
  return new ConnectError(message, codeOf[reason], { [REASON_HEADER]: reason }, undefined, cause);
}

/** The reason of an error raised by capvendError, if any. */
export function reasonOf(err: unknown): Reason | undefined {
  if (err instanceof ConnectError) {
    const r = err.metadata.get(REASON_HEADER);
    if (r && r in codeOf) return r as Reason;
  }
  return undefined;
}

/** Shorthand for the most common reason: a field broke a rule. */
export function invalidArgument(field: string, rule: string): ConnectError {
  return capvendError("invalid_argument", `${field}: ${rule}`);
}

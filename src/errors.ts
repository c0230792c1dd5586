import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorReason } from "./gen/capvend/v1/errors_pb.js";
import { ErrorInfoSchema, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";

/** ErrorInfo.domain of every capvend error (AIP-193). */
export const ERROR_DOMAIN = "capvend.dev";

/**
 * Every reason a caller can see, as a closed union: the value names of the contract's
 * `capvend.v1.ErrorReason` (proto/capvend/v1/errors.proto), which is where each one's code
 * and retryability are documented for clients.
 */
export type Reason = Exclude<keyof typeof ErrorReason, "ERROR_REASON_UNSPECIFIED">;

/**
 * The gRPC code of each reason (AIP-193). The one place a reason meets the wire: retryable
 * reasons use retryable codes (UNAVAILABLE, RESOURCE_EXHAUSTED).
 */
const CODE_OF: Record<Reason, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  MISSING_CREDENTIAL: Code.Unauthenticated,
  UNKNOWN_CREDENTIAL: Code.Unauthenticated,
  WRONG_CALLER: Code.PermissionDenied,
  SESSION_NOT_FOUND: Code.NotFound,
  SESSION_ENDED: Code.Unauthenticated,
  RESOURCE_NOT_GRANTED: Code.PermissionDenied,
  SCOPE_NOT_GRANTED: Code.PermissionDenied,
  SCOPE_DENIED: Code.PermissionDenied,
  ACTION_DENIED: Code.PermissionDenied,
  TOKEN_REVOKED: Code.PermissionDenied,
  AUDIT_UNAVAILABLE: Code.Unavailable,
  REVOCATION_UNAVAILABLE: Code.Unavailable,
  SESSION_STORE_UNAVAILABLE: Code.Unavailable,
  SLOW_READER: Code.ResourceExhausted,
  DRAINING: Code.Unavailable,
  RESUME_AHEAD: Code.Unavailable,
  RESUME_TOKEN_EXPIRED: Code.FailedPrecondition,
  REQUEST_ID_REUSED: Code.AlreadyExists,
  GRANT_REVOKED: Code.PermissionDenied,
  TTL_EXCEEDS_GRANT: Code.InvalidArgument,
  STREAM_LIMIT: Code.ResourceExhausted,
  SESSION_QUOTA: Code.ResourceExhausted,
  OVERLOADED: Code.Unavailable,
  POLICY_CHANGED: Code.PermissionDenied,
  INTERNAL: Code.Internal,
  MESSAGE_TOO_LARGE: Code.ResourceExhausted,
};

/** The gRPC code a reason is sent with. */
export function codeOf(reason: Reason): Code {
  return CODE_OF[reason];
}

/** Every reason, in the contract's order. */
export const REASONS = Object.keys(CODE_OF) as Reason[];

/**
 * What an error is about, sent as ErrorInfo.metadata (lowerCamelCase keys, AIP-193). Values
 * are ids, field paths and scopes: never a token, credential or key.
 */
export interface ErrorSubject {
  /** The request field at fault, as a path: "grants[0].scopes[1]", "resume_token". */
  field?: string;
  resource?: string;
  scope?: string;
  sessionId?: string;
  grantIndex?: string;
}

/**
 * The one error type capvend's handlers raise. It is a ConnectError (so Connect sends it
 * as it is) whose code follows from `reason`, carrying a google.rpc.ErrorInfo detail
 * (reason, domain "capvend.dev", metadata) that gRPC sends in grpc-status-details-bin and
 * Connect in "details". The message is for people and never carries a token, credential or
 * key; `cause` is kept for the server log only.
 */
export class CapvendError extends ConnectError {
  readonly reason: Reason;
  readonly subject: ErrorSubject;

  constructor(reason: Reason, message: string, subject: ErrorSubject = {}, cause?: unknown) {
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(subject)) if (v !== undefined) metadata[k] = v;
    super(message, CODE_OF[reason], undefined, [{ desc: ErrorInfoSchema, value: { reason, domain: ERROR_DOMAIN, metadata } }], cause);
    this.reason = reason;
    this.subject = subject;
  }

  // ConnectError's own check accepts any error shaped like one; this one wants a reason.
  static override [Symbol.hasInstance](v: unknown): boolean {
    const reason = v instanceof ConnectError ? (v as unknown as { reason?: unknown }).reason : undefined;
    return typeof reason === "string" && reason in CODE_OF;
  }
}

/** Builds the error for a reason: the usual way handlers refuse a call. */
export function capvendError(reason: Reason, message: string, subject: ErrorSubject = {}, cause?: unknown): CapvendError {
  return new CapvendError(reason, message, subject, cause);
}

/** Shorthand for the most common reason: a field broke a rule. The message starts with the field. */
export function invalidArgument(field: string, rule: string): CapvendError {
  return new CapvendError("INVALID_ARGUMENT", `${field}: ${rule}`, { field });
}

/** The reason of an error: a CapvendError's own, or the one in a ConnectError's ErrorInfo detail. */
export function reasonOf(err: unknown): Reason | undefined {
  if (err instanceof CapvendError) return err.reason;
  const info = errorInfoOf(err);
  return info && info.reason in CODE_OF ? (info.reason as Reason) : undefined;
}

/** The capvend ErrorInfo of a ConnectError (raised here or received from a server), if any. */
export function errorInfoOf(err: unknown): ErrorInfo | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  return err.findDetails(ErrorInfoSchema).find((d) => d.domain === ERROR_DOMAIN);
}

/**
 * The reason for a ConnectError raised outside capvend's handlers (by Connect itself: a
 * body that does not decode, a message over the size limit), so that every refusal carries
 * ErrorInfo. Undefined for codes that are not refusals (cancelled, deadline exceeded).
 */
export function reasonForCode(code: Code): Reason | undefined {
  switch (code) {
    case Code.InvalidArgument:
    case Code.OutOfRange:
      return "INVALID_ARGUMENT";
    case Code.ResourceExhausted:
      // What Connect itself refuses with RESOURCE_EXHAUSTED is a message over the size limit.
      return "MESSAGE_TOO_LARGE";
    case Code.Unavailable:
      return "OVERLOADED";
    case Code.Unauthenticated:
      return "MISSING_CREDENTIAL";
    case Code.Internal:
    case Code.Unknown:
    case Code.DataLoss:
      return "INTERNAL";
    default:
      return undefined;
  }
}

/**
 * Adds to a ConnectError without a capvend ErrorInfo one chosen by its code (see
 * reasonForCode); code, message, metadata and cause stay as they are. Returns the error.
 */
export function withErrorInfo(err: ConnectError): ConnectError {
  if (err instanceof CapvendError || errorInfoOf(err)) return err;
  const reason = reasonForCode(err.code);
  if (reason) err.details.push({ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN }) });
  return err;
}

/** ErrorReason's numeric value for a reason (for clients that switch on the enum). */
export function reasonNumber(reason: Reason): ErrorReason {
  return ErrorReason[reason];
}

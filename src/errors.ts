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
 * Faults inside the server, as a closed union: what went wrong with a dependency or a record,
 * never what a caller did. Each is sent as one wire reason with a fixed, safe message (see
 * `toWireError`); the fault's own message, which may name files, subjects and timings, goes
 * to the log only.
 * - `audit_unavailable`: the audit sink could not make a record durable (write, fsync or
 *   timeout failure, or closed); callers fail closed.
 * - `audit_event_refused`: the audit sink refused an event (it looks like it carries a
 *   secret, or it is not a valid event): a programming error.
 * - `audit_log_corrupt`: the on-disk audit log cannot be continued safely.
 * - `audit_gap`: the audit log is shorter than, or differs from, its last signed checkpoint.
 * - `session_store_unavailable`: the session store failed or did not answer.
 * - `revocation_unavailable`: a revocation could not be stored, so it did not take effect.
 * - `nats_unavailable`: NATS is unreachable, did not answer in time, or refused the operation.
 * - `backend_closed`: a backend was closed (the server is stopping); nothing more is accepted.
 * - `token_*`: why an access token was refused by the verifier (src/tokens/verify.ts).
 */
export type Fault =
  | "audit_unavailable"
  | "audit_event_refused"
  | "audit_log_corrupt"
  | "audit_gap"
  | "session_store_unavailable"
  | "revocation_unavailable"
  | "nats_unavailable"
  | "backend_closed"
  | "token_malformed"
  | "token_bad_signature"
  | "token_unknown_key"
  | "token_expired"
  | "token_not_yet_valid"
  | "token_wrong_issuer"
  | "token_wrong_type"
  | "token_wrong_claims";

/** Every code a `CapvendError` can carry: a wire reason (the caller's fault) or a server fault. */
export type ErrorCode = Reason | Fault;

/** How a fault is sent: its reason, and a fixed message (joined as `message[, so outcome]retry`). */
interface FaultWire {
  reason: Reason;
  message: string;
  retry: string;
}

const INTERNAL_MESSAGE = "internal error; the server log has the details";
const TOKEN_REFUSED: FaultWire = { reason: "UNKNOWN_CREDENTIAL", message: "the token is not valid", retry: "" };

/** The one table from server faults to the wire. */
const FAULT_WIRE: Record<Fault, FaultWire> = {
  audit_unavailable: { reason: "AUDIT_UNAVAILABLE", message: "the audit log is unavailable", retry: "; retry later" },
  audit_event_refused: { reason: "INTERNAL", message: "the audit record was refused", retry: "" },
  audit_log_corrupt: { reason: "INTERNAL", message: INTERNAL_MESSAGE, retry: "" },
  audit_gap: { reason: "INTERNAL", message: INTERNAL_MESSAGE, retry: "" },
  session_store_unavailable: { reason: "SESSION_STORE_UNAVAILABLE", message: "the session store is unavailable", retry: "; retry" },
  revocation_unavailable: { reason: "REVOCATION_UNAVAILABLE", message: "the revocation could not be stored, so it did not take effect", retry: "; retry" },
  nats_unavailable: { reason: "OVERLOADED", message: "a backend of this server is unavailable", retry: "; retry later" },
  backend_closed: { reason: "DRAINING", message: "the server is shutting down", retry: "; retry on another replica" },
  token_malformed: TOKEN_REFUSED,
  token_bad_signature: TOKEN_REFUSED,
  token_unknown_key: TOKEN_REFUSED,
  token_expired: TOKEN_REFUSED,
  token_not_yet_valid: TOKEN_REFUSED,
  token_wrong_issuer: TOKEN_REFUSED,
  token_wrong_type: TOKEN_REFUSED,
  token_wrong_claims: TOKEN_REFUSED,
};

/** Every fault code. */
export const FAULTS = Object.keys(FAULT_WIRE) as Fault[];

/** True when `code` is a server fault (its message is for the log, never for callers). */
export function isFault(code: ErrorCode): code is Fault {
  return code in FAULT_WIRE;
}

/** The wire reason of a code: itself for a reason, the table's for a fault. */
export function wireReasonOf(code: ErrorCode): Reason {
  return isFault(code) ? FAULT_WIRE[code].reason : code;
}

/**
 * capvend's one error type. `errorCode` is a closed union (`ErrorCode`): a wire reason
 * raised by a handler refusing a call, whose message is written for the caller, or a server
 * `Fault`, whose message is for the log. It is a ConnectError whose code follows from the
 * wire reason, carrying a google.rpc.ErrorInfo detail (reason, domain "capvend.dev",
 * metadata) that gRPC sends in grpc-status-details-bin and Connect in "details"; a fault is
 * replaced by its fixed wire form in one place, `toWireError`, before it leaves the server.
 * No message ever carries a token, credential or key; `cause` is kept for the log only.
 */
export class CapvendError extends ConnectError {
  /** The domain code (a reason or a fault). */
  readonly errorCode: ErrorCode;
  /** The reason sent to callers: `errorCode` itself, or the fault's wire reason. */
  readonly reason: Reason;
  readonly subject: ErrorSubject;
  /** For a fault: what it means for the call, in words safe for the caller ("nothing was issued"). */
  readonly outcome: string | undefined;

  constructor(code: ErrorCode, message: string, subject: ErrorSubject = {}, cause?: unknown, outcome?: string) {
    const reason = wireReasonOf(code);
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(subject)) if (v !== undefined) metadata[k] = v;
    super(message, CODE_OF[reason], undefined, [{ desc: ErrorInfoSchema, value: { reason, domain: ERROR_DOMAIN, metadata } }], cause);
    // The ErrorInfo detail holds its message descriptor (a large, circular object): kept off
    // the enumerable fields so logging or serializing the error shows the code, not the schema.
    Object.defineProperty(this, "details", { value: this.details, enumerable: false, writable: true, configurable: true });
    this.errorCode = code;
    this.reason = reason;
    this.subject = subject;
    this.outcome = outcome;
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

/**
 * Builds a server fault. `detail` is for the log (what failed: a file, a subject, a timeout;
 * never a token, credential or key); callers see the fault's fixed wire message, with
 * `outcome` when given.
 */
export function fault(code: Fault, detail: string, options: { cause?: unknown; outcome?: string } = {}): CapvendError {
  return new CapvendError(code, detail, {}, options.cause, options.outcome);
}

/** True for a CapvendError carrying one of `codes` (any fault when none are given). */
export function isFaultError(err: unknown, ...codes: Fault[]): err is CapvendError & { errorCode: Fault } {
  if (!(err instanceof CapvendError) || !isFault(err.errorCode)) return false;
  return codes.length === 0 || codes.includes(err.errorCode);
}

/**
 * Says which dependency a failure belongs to: any error that is not a caller-facing
 * CapvendError (a fault of a lower layer, a plain Error from a store) becomes fault `code`,
 * the original kept as `cause`. For calls whose dependency is an interface (a session store,
 * a revocation list, an audit sink) that may fail with anything.
 */
export function asFault(code: Fault, err: unknown, outcome?: string): CapvendError {
  if (err instanceof CapvendError && !isFault(err.errorCode)) return err;
  if (err instanceof CapvendError && err.errorCode === code && outcome === undefined) return err;
  return fault(code, err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err), { cause: err, outcome });
}

/**
 * The one place an error meets the wire. A CapvendError raised for a reason passes as it is
 * (its message was written for the caller); a fault becomes its wire reason with a fixed
 * message (plus its outcome), the fault kept as `cause` for the log; any other ConnectError
 * gets an ErrorInfo chosen by its code (see withErrorInfo); anything else is INTERNAL with a
 * fixed message. An internal fault's text never reaches a caller.
 */
export function toWireError(err: unknown): ConnectError {
  if (err instanceof CapvendError) {
    if (!isFault(err.errorCode)) return err;
    const w = FAULT_WIRE[err.errorCode];
    return new CapvendError(w.reason, `${w.message}${err.outcome ? `, so ${err.outcome}` : ""}${w.retry}`, {}, err);
  }
  if (err instanceof ConnectError) return withErrorInfo(err);
  return capvendError("INTERNAL", INTERNAL_MESSAGE, {}, err);
}

/**
 * A stable, low-cardinality label for an error in metrics and spans (`error.type`): a
 * CapvendError's domain code ("audit_unavailable", "SESSION_NOT_FOUND"), else the error's
 * class name.
 */
export function errorTypeOf(err: unknown): string {
  if (err instanceof CapvendError) return err.errorCode;
  return err instanceof Error ? err.name : typeof err;
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

/**
 * `asFault` as a rejection handler: `await sessions.get(id).catch(rethrowAs("session_store_unavailable"))`
 * names the dependency that failed; the wire form is chosen later, by `toWireError`.
 */
export function rethrowAs(code: Fault, outcome?: string): (err: unknown) => never {
  return (err) => {
    throw asFault(code, err, outcome);
  };
}

/**
 * An error as one line for the server's own log or stderr (never for a caller): a
 * CapvendError as "code: message" without Connect's "[code]" prefix, another Error as its
 * message.
 */
export function describeError(err: unknown): string {
  if (err instanceof CapvendError) return `${err.errorCode}: ${err.rawMessage}`;
  return err instanceof Error ? err.message : String(err);
}

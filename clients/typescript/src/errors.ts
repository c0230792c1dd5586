import { Code, ConnectError } from "@connectrpc/connect";
import type { ErrorReason } from "./gen/capvend/v1/errors_pb.js";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** The `domain` of every ErrorInfo capvend sends. */
export const CAPVEND_ERROR_DOMAIN = "capvend.dev";

/** Every reason of the contract's capvend.v1.ErrorReason. */
type ContractReason = Exclude<keyof typeof ErrorReason, "ERROR_REASON_UNSPECIFIED">;

/**
 * Reasons the server sends in `google.rpc.ErrorInfo.reason` (the contract's ErrorReason
 * names), with whether a call refused for that reason may be retried as it is (as the
 * contract marks them). Checked against the generated enum at compile time: a reason added
 * to the contract and missing here (or one here the contract lacks) fails the build.
 */
export const SERVER_REASONS = {
  INVALID_ARGUMENT: false,
  MISSING_CREDENTIAL: false,
  UNKNOWN_CREDENTIAL: false,
  WRONG_CALLER: false,
  SESSION_NOT_FOUND: false,
  SESSION_ENDED: false,
  RESOURCE_NOT_GRANTED: false,
  SCOPE_NOT_GRANTED: false,
  SCOPE_DENIED: false,
  ACTION_DENIED: false,
  TOKEN_REVOKED: false,
  AUDIT_UNAVAILABLE: true,
  REVOCATION_UNAVAILABLE: true,
  SESSION_STORE_UNAVAILABLE: true,
  SLOW_READER: true,
  DRAINING: true,
  RESUME_AHEAD: true,
  RESUME_TOKEN_EXPIRED: false,
  REQUEST_ID_REUSED: false,
  GRANT_REVOKED: false,
  TTL_EXCEEDS_GRANT: false,
  STREAM_LIMIT: true,
  SESSION_QUOTA: true,
  OVERLOADED: true,
  POLICY_CHANGED: false,
  INTERNAL: false,
  MESSAGE_TOO_LARGE: false,
} as const satisfies Record<ContractReason, boolean>;

/** A reason the server can send. */
export type ServerReason = keyof typeof SERVER_REASONS;

/**
 * Reasons the client itself decides:
 * - TRANSPORT: the call failed without an answer from capvend (connection refused or cut, a
 *   proxy's error); retryable.
 * - WATCHDOG: the stream went silent past the heartbeat deadline; retryable.
 * - TIMEOUT: no valid token arrived within the wait given to getToken.
 * - CLOSED: the manager was closed.
 * - UNKNOWN: an ErrorInfo reason this version of the client does not know.
 */
export type ClientReason = "TRANSPORT" | "WATCHDOG" | "TIMEOUT" | "CLOSED" | "UNKNOWN";

/** The stable code of a CapvendError: a closed union, safe to switch on. */
export type CapvendErrorCode = ServerReason | ClientReason;

const CLIENT_RETRYABLE: Record<ClientReason, boolean> = { TRANSPORT: true, WATCHDOG: true, TIMEOUT: true, CLOSED: false, UNKNOWN: false };

/** Whether `code` names a reason the server sends. */
export function isServerReason(code: string): code is ServerReason {
  return Object.prototype.hasOwnProperty.call(SERVER_REASONS, code);
}

/** Whether a call that failed with `code` may be tried again unchanged. */
export function isRetryable(code: CapvendErrorCode): boolean {
  return isServerReason(code) ? SERVER_REASONS[code] : CLIENT_RETRYABLE[code];
}

/**
 * Every error @capvend/client throws. `code` says what happened (decoded from the
 * server's ErrorInfo, or decided by the client); `grpcCode` is the status code it came
 * with; `metadata` is the ErrorInfo metadata (the field, resource or scope involved). The
 * message is for people and never holds a token or credential.
 */
export class CapvendError extends Error {
  override readonly name = "CapvendError";
  readonly code: CapvendErrorCode;
  readonly grpcCode: Code;
  readonly retryable: boolean;
  readonly metadata: Readonly<Record<string, string>>;

  constructor(code: CapvendErrorCode, message: string, opts: { grpcCode?: Code; metadata?: Record<string, string>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.grpcCode = opts.grpcCode ?? Code.Unknown;
    this.retryable = isRetryable(code);
    this.metadata = Object.freeze({ ...opts.metadata });
  }

  /**
   * Decodes any error from a capvend call: the `google.rpc.ErrorInfo` detail of domain
   * capvend.dev gives the code; without one the error is TRANSPORT (nothing from capvend
   * answered). A CapvendError is returned as it is.
   */
  static from(err: unknown): CapvendError {
    if (err instanceof CapvendError) return err;
    const ce = ConnectError.from(err);
    const info = ce.findDetails(ErrorInfoSchema).find((d) => d.domain === CAPVEND_ERROR_DOMAIN);
    if (!info) return new CapvendError("TRANSPORT", `${Code[ce.code] ?? ce.code}: ${ce.rawMessage}`, { grpcCode: ce.code, cause: ce });
    const code: CapvendErrorCode = isServerReason(info.reason) ? info.reason : "UNKNOWN";
    return new CapvendError(code, ce.rawMessage, { grpcCode: ce.code, metadata: { ...info.metadata, ...(code === "UNKNOWN" ? { reason: info.reason } : {}) }, cause: ce });
  }
}

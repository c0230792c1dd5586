/**
 * Records refused calls and failed authentications, the decisions no handler gets to write:
 *
 * - a refused call (after authentication) becomes one `*.denied` record of its method, with the
 *   caller, what the call named (agent, user, session, resource, scopes, target), the stable
 *   reason and the policy ids that decided it;
 * - a failed authentication becomes an `auth.failed` record with the credential kind and at
 *   most an 8-hex-digit sha256 prefix of the credential, never the credential. A flood is
 *   rate-limited: past `maxRecordsPerWindow` in a window, failures are only counted, and one
 *   `auth.failed.summary` record per window says how many and why, so an attacker cannot fill
 *   the disk through the audit log.
 */
import { createHash } from "node:crypto";
import { ConnectError, Code } from "@connectrpc/connect";
import type { Clock, TimerHandle } from "../clock.js";
import { reasonOf, toWireError } from "../errors.js";
import type { AuditEvent, AuditEventType } from "./event.js";
import type { AuditSink } from "./sink.js";

/** Failed authentications recorded one by one per window: 20. */
export const DEFAULT_AUTH_FAILURE_RECORDS_PER_WINDOW = 20;
/** The rate-limiting window of failed-authentication records: 60 s. */
export const DEFAULT_AUTH_FAILURE_WINDOW_MS = 60 * 1000;
/** Longest error message kept in a refusal record, characters. */
const MAX_MESSAGE_CHARS = 300;

/** The `*.denied` event type of a refused call to `method` (VendingService names; others `call.denied`). */
export function deniedEventType(method: string): AuditEventType {
  switch (method) {
    case "StartSession":
      return "session.denied";
    case "IssueToken":
      return "token.denied";
    case "WatchSession":
      return "stream.denied";
    case "Revoke":
      return "revoke.denied";
    case "EndSession":
      return "session.end_denied";
    case "Introspect":
      return "introspect.denied";
    default:
      return "call.denied";
  }
}

/** What a refusal record says about the call: filled in by the handler as it learns it. */
export type CallSubject = Pick<AuditEvent, "agent_id" | "user_id" | "session_id" | "resource" | "scopes" | "jti" | "target" | "policy_ids">;

const audited = new WeakSet<object>();

/** Marks an error whose refusal the code that threw it has already recorded (e.g. `token.denied` by the issuer). */
export function markAudited<E>(err: E): E {
  if (typeof err === "object" && err !== null) audited.add(err);
  return err;
}

/** True for an error marked by `markAudited`. */
export function isAudited(err: unknown): boolean {
  return typeof err === "object" && err !== null && audited.has(err);
}

/** The kind of credential an authorization header carried, for `auth.failed` records. */
export type CredentialKind = "none" | "malformed" | "session" | "jwt" | "bearer";

const SESSION_SHAPE = /^ses_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Classifies an authorization header without keeping it: its kind and an 8-hex-digit sha256 prefix. */
export function describeCredential(authorization: string | null): { kind: CredentialKind; sha256Prefix?: string; sessionId?: string } {
  if (!authorization) return { kind: "none" };
  const m = /^Bearer +(\S+) *$/i.exec(authorization);
  const prefix = createHash("sha256").update(m ? m[1]! : authorization).digest("hex").slice(0, 8);
  if (!m) return { kind: "malformed", sha256Prefix: prefix };
  const bearer = m[1]!;
  if (SESSION_SHAPE.test(bearer)) return { kind: "session", sha256Prefix: prefix, sessionId: bearer.slice(0, bearer.indexOf(".")) };
  if (JWT_SHAPE.test(bearer)) return { kind: "jwt", sha256Prefix: prefix };
  return { kind: "bearer", sha256Prefix: prefix };
}

/** Options of `createDecisionLog`. */
export interface DecisionLogOptions {
  audit: Pick<AuditSink, "append">;
  clock: Clock;
  /** Default `DEFAULT_AUTH_FAILURE_RECORDS_PER_WINDOW`. */
  maxRecordsPerWindow?: number;
  /** Default `DEFAULT_AUTH_FAILURE_WINDOW_MS`. */
  windowMs?: number;
  /** A record could not be written (the call fails regardless); for the log. */
  onError?: (err: unknown, type: AuditEventType) => void;
  /** Every record written (after rate limiting): the application log mirrors them. */
  onRecord?: (event: AuditEvent) => void;
}

/** Writes refusal and failed-authentication records. */
export interface DecisionLog {
  /** Records one refused call. Never rejects: a failure goes to `onError`. */
  refused(call: { method: string; caller: NonNullable<AuditEvent["caller"]>; subject?: CallSubject; error: unknown; traceId?: string }): Promise<void>;
  /** Records (or, past the window's limit, counts) one failed authentication. Never rejects. */
  authFailed(call: { method: string; authorization: string | null; error: unknown; traceId?: string }): Promise<void>;
  /** Writes the pending summary, if any, and stops the window timer. Idempotent. */
  close(): Promise<void>;
}

/** The stable reason of an error: its ErrorInfo reason (the contract's ErrorReason), else its code's name. */
function reasonCode(err: unknown): string {
  const r = reasonOf(err);
  if (r) return r;
  if (err instanceof ConnectError) return Code[err.code] ?? "UNKNOWN";
  return "INTERNAL";
}

function messageOf(err: unknown): string {
  // The caller-facing message: a fault's own text is for the log, not for the audit record.
  const m = err instanceof ConnectError ? toWireError(err).rawMessage : "internal error";
  return m.length > MAX_MESSAGE_CHARS ? `${m.slice(0, MAX_MESSAGE_CHARS)}…` : m;
}

/** Creates the recorder of refusals and failed authentications. */
export function createDecisionLog(opts: DecisionLogOptions): DecisionLog {
  const { audit, clock } = opts;
  const limit = opts.maxRecordsPerWindow ?? DEFAULT_AUTH_FAILURE_RECORDS_PER_WINDOW;
  const windowMs = opts.windowMs ?? DEFAULT_AUTH_FAILURE_WINDOW_MS;
  let windowStart = 0;
  let recorded = 0;
  let suppressed = new Map<string, number>();
  let timer: TimerHandle | undefined;
  let closed = false;

  const write = async (event: AuditEvent) => {
    opts.onRecord?.(event);
    try {
      await audit.append(event);
    } catch (err) {
      opts.onError?.(err, event.type);
    }
  };

  const flushSummary = async () => {
    timer = undefined;
    const counts = suppressed;
    suppressed = new Map();
    if (counts.size === 0) return;
    const details: Record<string, number | string> = { window_ms: windowMs, window_start: new Date(windowStart).toISOString(), recorded_individually: recorded };
    let total = 0;
    for (const [k, n] of counts) {
      details[`count.${k}`] = n;
      total += n;
    }
    details.suppressed = total;
    await write({ type: "auth.failed.summary", caller: { kind: "unauthenticated", id: "-" }, decision: "deny", reason: `${total} failed authentications not recorded one by one (over ${limit} per ${windowMs} ms)`, details });
  };

  return {
    async refused({ method, caller, subject, error, traceId }) {
      // The sink just failed this call: another append would fail too, and double its load.
      if (reasonCode(error) === "AUDIT_UNAVAILABLE") return;
      const event: AuditEvent = {
        ...subject,
        type: deniedEventType(method),
        caller,
        decision: "deny",
        reason: reasonCode(error),
        details: { method, message: messageOf(error) },
      };
      if (traceId) event.trace_id = traceId;
      await write(event);
    },

    async authFailed({ method, authorization, error, traceId }) {
      const now = clock.now();
      if (now - windowStart >= windowMs) {
        if (suppressed.size > 0) await flushSummary();
        windowStart = now;
        recorded = 0;
      }
      const cred = describeCredential(authorization);
      const reason = reasonCode(error);
      if (recorded >= limit) {
        const key = `${cred.kind}.${reason}`;
        suppressed.set(key, (suppressed.get(key) ?? 0) + 1);
        if (!timer && !closed) timer = clock.setTimeout(() => void flushSummary(), windowStart + windowMs - now);
        return;
      }
      recorded++;
      const details: Record<string, string> = { method, credential_kind: cred.kind, message: messageOf(error) };
      if (cred.sha256Prefix) details.credential_sha256_prefix = cred.sha256Prefix;
      const event: AuditEvent = { type: "auth.failed", caller: { kind: "unauthenticated", id: "-" }, decision: "deny", reason, details };
      if (cred.sessionId) event.session_id = cred.sessionId;
      if (traceId) event.trace_id = traceId;
      await write(event);
    },

    async close() {
      if (closed) return;
      closed = true;
      if (timer) clock.clearTimeout(timer);
      await flushSummary();
    },
  };
}

/** The audit event model and the checks every sink applies before accepting an event. */
import { looksSecret } from "../security/redact.js";
import { fault } from "../errors.js";

/**
 * Every decision capvend records (docs/observability.md has the table of when each is
 * written). Allowed calls are recorded by the code that acts; refused calls by the audit
 * interceptor with the method's `*.denied` type, one record per refused call.
 */
export type AuditEventType =
  | "session.started"
  | "session.denied"
  | "session.ended"
  | "session.end_denied"
  | "token.issued"
  | "token.renewed"
  | "token.denied"
  | "token.revoked"
  | "revoke.denied"
  | "token.introspected"
  | "introspect.denied"
  | "stream.opened"
  | "stream.resumed"
  | "stream.denied"
  | "stream.closed"
  | "call.denied"
  | "auth.failed"
  | "auth.failed.summary"
  | "policy.reloaded"
  | "key.added"
  | "key.retired"
  | "admin.called"
  | "audit.gap";

/** All event types, in declaration order. */
export const AUDIT_EVENT_TYPES: readonly AuditEventType[] = [
  "session.started",
  "session.denied",
  "session.ended",
  "session.end_denied",
  "token.issued",
  "token.renewed",
  "token.denied",
  "token.revoked",
  "revoke.denied",
  "token.introspected",
  "introspect.denied",
  "stream.opened",
  "stream.resumed",
  "stream.denied",
  "stream.closed",
  "call.denied",
  "auth.failed",
  "auth.failed.summary",
  "policy.reloaded",
  "key.added",
  "key.retired",
  "admin.called",
  "audit.gap",
];
const EVENT_TYPES = new Set<string>(AUDIT_EVENT_TYPES);

/**
 * One audit event. Tokens are named by `jti` only: an event carrying anything that looks like
 * a token, session credential or key is refused.
 */
export interface AuditEvent {
  type: AuditEventType;
  /** ISO 8601; the sink fills it from its clock when absent. */
  time?: string;
  /** The replica that recorded the event; always set by the sink. */
  replica?: string;
  /** Who called; `unauthenticated` (id "-") for a failed authentication. */
  caller?: { kind: "orchestrator" | "session" | "resource_server" | "system" | "unauthenticated"; id: string };
  agent_id?: string;
  user_id?: string;
  session_id?: string;
  resource?: string;
  scopes?: string[];
  jti?: string;
  /** Token expiry, seconds since the Unix epoch. */
  exp?: number;
  decision?: "allow" | "deny";
  policy_ids?: string[];
  /** The policy version (content hash of the set) in force when the decision was made. */
  policy_version?: string;
  reason?: string;
  target?: { kind: "token_id" | "session_id" | "agent_id" | "user_id" | "resource"; value: string };
  trace_id?: string;
  details?: Record<string, string | number | boolean>;
}

/** An event as stored: the sink's chain fields plus the event, with `time` and `replica` set. */
export type AuditRecord = AuditEvent & {
  seq: number;
  prev: string;
  hash: string;
  time: string;
  replica: string;
};

/** Field names the chain owns; an event may not set them. */
export const CHAIN_FIELDS: readonly string[] = ["seq", "prev", "hash"];

/** A JSON value as the chain stores it: plain, finite, no undefined. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * Checks an event and returns the body a sink stores: a deep copy (so later changes by the
 * caller cannot alter what is hashed) with `time` defaulted and `replica` set. Throws
 * fault `audit_event_refused` for an unknown type, a chain field, a non-JSON value, or any key or
 * string that looks like a secret; the message names the field, never the value.
 */
export function prepareAuditEvent(
  event: AuditEvent,
  stamp: { replica: string; now: number },
): Record<string, JsonValue> {
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    throw fault("audit_event_refused", "audit event refused: not an object");
  }
  if (typeof event.type !== "string" || !EVENT_TYPES.has(event.type)) {
    throw fault(
      "audit_event_refused",
      `audit event refused: unknown type ${typeof event.type === "string" && !looksSecret(event.type) ? JSON.stringify(event.type.slice(0, 40)) : "(not shown)"}`,
    );
  }
  for (const f of CHAIN_FIELDS) {
    if (f in event) throw fault("audit_event_refused", `audit event refused: "${f}" is set by the sink`);
  }
  if (event.time !== undefined && (typeof event.time !== "string" || Number.isNaN(Date.parse(event.time)))) {
    throw fault("audit_event_refused", 'audit event refused: "time" is not an ISO 8601 string');
  }
  const body = copyJson(event, "", undefined) as Record<string, JsonValue>;
  if (body.time === undefined) body.time = new Date(stamp.now).toISOString();
  body.replica = stamp.replica;
  return body;
}

/** The path of member `key` under `parent` ("" and no key for the event itself). */
function pathOf(parent: string, key: string | number | undefined): string {
  if (key === undefined) return parent;
  if (typeof key === "number") return `${parent}[${key}]`;
  return parent === "" ? key : `${parent}.${key}`;
}

/**
 * A JSON copy of `value`, the member `key` of `parent` (no key for the event itself). A path
 * is built only for an error message or a nested value: this runs on every record.
 */
function copyJson(value: unknown, parent: string, key: string | number | undefined): JsonValue | undefined {
  switch (typeof value) {
    case "string":
      if (looksSecret(value, true)) {
        throw fault(
          "audit_event_refused",
          `audit event refused: field "${pathOf(parent, key)}" looks like a token, credential or key; audit records name tokens by jti only`,
        );
      }
      return value;
    case "boolean":
      return value;
    case "number":
      if (!Number.isFinite(value)) throw fault("audit_event_refused", `audit event refused: field "${pathOf(parent, key)}" is not a finite number`);
      return value;
    case "undefined":
      return undefined;
    case "object": {
      if (value === null) return null;
      const path = pathOf(parent, key);
      if (Array.isArray(value)) {
        return value.map((item, i) => {
          const v = copyJson(item, path, i);
          if (v === undefined) throw fault("audit_event_refused", `audit event refused: field "${pathOf(path, i)}" is undefined`);
          return v;
        });
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw fault("audit_event_refused", `audit event refused: field "${path || "(event)"}" is not a plain object`);
      }
      const out: Record<string, JsonValue> = {};
      for (const k of Object.keys(value)) {
        if (looksSecret(k, true)) throw fault("audit_event_refused", `audit event refused: a key under "${path || "(event)"}" looks like a secret`);
        const v = copyJson((value as Record<string, unknown>)[k], path, k);
        if (v !== undefined) out[k] = v;
      }
      return out;
    }
    default:
      throw fault("audit_event_refused", `audit event refused: field "${pathOf(parent, key)}" has unsupported type ${typeof value}`);
  }
}

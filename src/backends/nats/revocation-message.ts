import { REVOCATION_KINDS, type Revocation, type RevocationKind } from "../types.js";
import { REVOCATION_SUBJECT_PREFIX } from "./names.js";

/** Version of the revocation message schema below. */
export const REVOCATION_MESSAGE_VERSION = 1;

/** Longest string field accepted from the feed, in characters (ids, reasons and `by` are far shorter). */
const MAX_FIELD_CHARS = 1024;

/**
 * A revocation as published on `capvend.revocations.<kind>` (public interface; see
 * docs/operations.md). Times are ms since the Unix epoch. The JetStream stream sequence of
 * the message is its feed position; the `Nats-Msg-Id` header carries `id`.
 */
export interface RevocationMessage {
  v: number;
  id: string;
  kind: RevocationKind;
  value: string;
  reason: string;
  revoked_at_ms: number;
  expires_at_ms: number;
  by: string;
  /** The replica that accepted the revocation (informational). */
  replica?: string;
}

/** The subject a revocation of `kind` is published on, under `prefix`. */
export function revocationSubject(kind: RevocationKind, prefix = REVOCATION_SUBJECT_PREFIX): string {
  return `${prefix}.${kind}`;
}

/** Serialises a revocation for the feed (its `seq` is not sent: JetStream assigns it). */
export function encodeRevocation(r: Revocation, replica?: string): Uint8Array {
  const msg: RevocationMessage = {
    v: REVOCATION_MESSAGE_VERSION,
    id: r.id,
    kind: r.kind,
    value: r.value,
    reason: r.reason,
    revoked_at_ms: r.revokedAt,
    expires_at_ms: r.expiresAt,
    by: r.by,
  };
  if (replica !== undefined) msg.replica = replica;
  return new TextEncoder().encode(JSON.stringify(msg));
}

/**
 * Parses a message from the feed. Anyone allowed to publish on the subjects can put a
 * message there, so everything is checked; a bad message yields an error string (for the
 * log, without its contents) and is skipped by the caller. Unknown fields are ignored, so
 * later versions may add some.
 */
export function decodeRevocation(data: Uint8Array, subject: string): { revocation: Revocation } | { error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return { error: "not JSON" };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return { error: "not a JSON object" };
  const m = raw as Record<string, unknown>;
  if (typeof m.v !== "number" || !Number.isInteger(m.v) || m.v < 1) return { error: 'field "v" is not a version number' };
  for (const f of ["id", "value", "reason", "by"] as const) {
    const v = m[f];
    if (typeof v !== "string" || v.length > MAX_FIELD_CHARS || (f !== "reason" && v === "")) return { error: `field "${f}" is missing or not a string` };
  }
  if (typeof m.kind !== "string" || !REVOCATION_KINDS.includes(m.kind as RevocationKind)) return { error: 'field "kind" is not a revocation kind' };
  const subjectKind = subject.slice(subject.lastIndexOf(".") + 1);
  if (subjectKind !== m.kind) return { error: `field "kind" does not match the subject's last token "${subjectKind.slice(0, 40)}"` };
  for (const f of ["revoked_at_ms", "expires_at_ms"] as const) {
    const v = m[f];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) return { error: `field "${f}" is not a time in ms` };
  }
  return {
    revocation: {
      id: m.id as string,
      kind: m.kind as RevocationKind,
      value: m.value as string,
      reason: m.reason as string,
      revokedAt: m.revoked_at_ms as number,
      expiresAt: m.expires_at_ms as number,
      by: m.by as string,
    },
  };
}

import type { Duration } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../errors.js";
import { looksSecret } from "../security/redact.js";
import type { GrantSpec } from "../sessions/session-store.js";

/** Limits on what callers send, in bytes of UTF-8 unless said otherwise. */
export const MAX_ID_BYTES = 256;
export const MAX_SCOPE_BYTES = 128;
export const MAX_SCOPES = 64;
export const MAX_GRANTS = 64;
export const MAX_LABELS = 32;
export const MAX_LABEL_KEY_BYTES = 64;
export const MAX_LABEL_VALUE_BYTES = 256;
export const MAX_REASON_BYTES = 512;
export const MAX_INTROSPECT_TOKEN_BYTES = 8 * 1024;
/** Token lifetimes and session durations are whole seconds in the JWT: under a second is refused. */
export const MIN_TTL_MS = 1000;

// Control characters (C0, DEL and C1, which holds NEL U+0085 and the 8-bit CSI U+009B) and
// the Unicode line/paragraph separators never belong in an id: they would forge lines in
// logs and audit tails, or drive the terminal that shows them.
// eslint-disable-next-line no-control-regex
const FORBIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

const byteLength = (s: string) => Buffer.byteLength(s, "utf8");

/**
 * Quotes caller input for an error message with control characters and line separators
 * escaped: a message must never carry a raw newline into whatever logs it.
 */
function quoteForMessage(s: string): string {
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** An identifier: 1 to 256 bytes, no control characters. */
export function validateId(field: string, value: string): string {
  if (value.length === 0) throw invalidArgument(field, "must not be empty");
  if (byteLength(value) > MAX_ID_BYTES) throw invalidArgument(field, `must be at most ${MAX_ID_BYTES} bytes`);
  if (FORBIDDEN_CHARS.test(value)) throw invalidArgument(field, "must not contain control characters");
  // Ids are recorded in the audit log, which never holds a token, credential or key.
  if (looksSecret(value)) throw invalidArgument(field, "must not be a token, credential or key");
  return value;
}

/** A scope list: 1 to 64 scopes, each 1 to 128 bytes without whitespace, no duplicates. */
export function validateScopes(field: string, scopes: readonly string[]): string[] {
  if (scopes.length === 0) throw invalidArgument(field, "must name at least one scope");
  if (scopes.length > MAX_SCOPES) throw invalidArgument(field, `must name at most ${MAX_SCOPES} scopes`);
  const seen = new Set<string>();
  scopes.forEach((s, i) => {
    const f = `${field}[${i}]`;
    if (s.length === 0) throw invalidArgument(f, "must not be empty");
    if (byteLength(s) > MAX_SCOPE_BYTES) throw invalidArgument(f, `must be at most ${MAX_SCOPE_BYTES} bytes`);
    if (/\s/.test(s) || FORBIDDEN_CHARS.test(s)) throw invalidArgument(f, "must not contain whitespace or control characters");
    if (seen.has(s)) throw invalidArgument(f, `duplicate scope "${s}"`);
    seen.add(s);
  });
  return [...scopes];
}

/** Converts a protobuf Duration to ms; undefined stays undefined. Negative, sub-second or above `maxMs` is refused. */
export function validateDuration(field: string, d: Duration | undefined, maxMs: number): number | undefined {
  if (d === undefined) return undefined;
  // google.protobuf.Duration: |nanos| < 1e9. Larger nanos would silently add whole seconds.
  if (!Number.isInteger(d.nanos) || Math.abs(d.nanos) > 999_999_999) {
    throw invalidArgument(field, "nanos must be between -999999999 and 999999999");
  }
  const ms = Number(d.seconds) * 1000 + Math.trunc(d.nanos / 1e6);
  if (!Number.isFinite(ms) || d.seconds < 0n || d.nanos < 0) throw invalidArgument(field, "must be positive");
  if (ms < MIN_TTL_MS) throw invalidArgument(field, "must be at least 1s");
  if (ms > maxMs) throw invalidArgument(field, `must be at most ${Math.floor(maxMs / 1000)}s`);
  return ms;
}

/** Grants of a session: 1 to 64, one per resource. */
export function validateGrants(
  field: string,
  grants: readonly { resource: string; scopes: readonly string[]; ttl?: Duration }[],
  maxTtlMs: number,
): GrantSpec[] {
  if (grants.length === 0) throw invalidArgument(field, "must contain at least one grant");
  if (grants.length > MAX_GRANTS) throw invalidArgument(field, `must contain at most ${MAX_GRANTS} grants`);
  const resources = new Set<string>();
  return grants.map((g, i) => {
    const resource = validateId(`${field}[${i}].resource`, g.resource);
    if (resources.has(resource)) throw invalidArgument(`${field}[${i}].resource`, `duplicate grant for resource "${resource}"`);
    resources.add(resource);
    const spec: GrantSpec = { resource, scopes: validateScopes(`${field}[${i}].scopes`, g.scopes) };
    const ttlMs = validateDuration(`${field}[${i}].ttl`, g.ttl, maxTtlMs);
    if (ttlMs !== undefined) spec.ttlMs = ttlMs;
    return spec;
  });
}

/** Labels passed to policy: at most 32, keys `[A-Za-z0-9_.-]{1,64}`, values up to 256 bytes. */
export function validateLabels(field: string, labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) throw invalidArgument(field, `must have at most ${MAX_LABELS} entries`);
  for (const [k, v] of entries) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(k)) throw invalidArgument(`${field}[${quoteForMessage(k.slice(0, 64))}]`, "key must be 1 to 64 characters of A-Z a-z 0-9 _ . -");
    if (byteLength(v) > MAX_LABEL_VALUE_BYTES) throw invalidArgument(`${field}.${k}`, `value must be at most ${MAX_LABEL_VALUE_BYTES} bytes`);
    if (FORBIDDEN_CHARS.test(v)) throw invalidArgument(`${field}.${k}`, "value must not contain control characters");
    if (looksSecret(v)) throw invalidArgument(`${field}.${k}`, "value must not contain a token, credential or key");
  }
  return Object.fromEntries(entries);
}

/** A free-text reason: up to 512 bytes; empty becomes `fallback`. */
export function validateReason(field: string, reason: string, fallback: string): string {
  if (byteLength(reason) > MAX_REASON_BYTES) throw invalidArgument(field, `must be at most ${MAX_REASON_BYTES} bytes`);
  if (FORBIDDEN_CHARS.test(reason)) throw invalidArgument(field, "must not contain control characters");
  // Reasons are written to the audit log and pushed to streams, which refuse secrets: refuse
  // them here, before anything takes effect, rather than fail after a revocation stood.
  if (looksSecret(reason)) throw invalidArgument(field, "must not contain a token, credential or key");
  return reason || fallback;
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** StartSession's request_id: empty (no deduplication) or a UUID (AIP-155). Returns undefined for empty. */
export function validateRequestId(field: string, value: string): string | undefined {
  if (value === "") return undefined;
  if (!UUID.test(value)) throw invalidArgument(field, "must be a UUID, e.g. 0b7f4a2e-6c1d-4f3a-9e8b-2d5c7a1f0e94");
  return value.toLowerCase();
}

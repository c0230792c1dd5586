import type { Duration } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../errors.js";
import { looksSecret } from "../security/redact.js";
import type { GrantSpec } from "../backends/types.js";

/**
 * What the contract cannot say about a request. Required fields, lengths, counts, formats
 * and the identifier profile are declared in proto/capvend/v1 and enforced first by
 * contract-validator.ts; these checks run on requests that passed it: limits from the
 * server's configuration (the maximum TTL and session duration), the well-formedness of a
 * Duration, and values that must never carry a secret.
 */

/** Token lifetimes and session durations are whole seconds in the JWT: under a second is refused. */
export const MIN_TTL_MS = 1000;

/** An identifier (already checked against the contract's profile): never a token, credential or key, since ids are recorded in the audit log. */
export function validateId(field: string, value: string): string {
  if (looksSecret(value)) throw invalidArgument(field, "must not be a token, credential or key");
  return value;
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

/** A session's grants (already checked against the contract) as GrantSpecs, each TTL at most `maxTtlMs`. */
export function validateGrants(
  field: string,
  grants: readonly { resource: string; scopes: readonly string[]; ttl?: Duration }[],
  maxTtlMs: number,
): GrantSpec[] {
  return grants.map((g, i) => {
    const spec: GrantSpec = { resource: g.resource, scopes: [...g.scopes] };
    const ttlMs = validateDuration(`${field}[${i}].ttl`, g.ttl, maxTtlMs);
    if (ttlMs !== undefined) spec.ttlMs = ttlMs;
    return spec;
  });
}

/** Labels passed to policy (already checked against the contract): no value may carry a secret. */
export function validateLabels(field: string, labels: Record<string, string>): Record<string, string> {
  for (const [k, v] of Object.entries(labels)) {
    if (looksSecret(v)) throw invalidArgument(`${field}["${k}"]`, "value must not contain a token, credential or key");
  }
  return { ...labels };
}

/** A free-text reason (already checked against the contract); empty becomes `fallback`. */
export function validateReason(field: string, reason: string, fallback: string): string {
  // Reasons are written to the audit log and pushed to streams, which refuse secrets: refuse
  // them here, before anything takes effect, rather than fail after a revocation stood.
  if (looksSecret(reason)) throw invalidArgument(field, "must not contain a token, credential or key");
  return reason || fallback;
}

/** StartSession's request_id (a UUID, checked by the contract) in canonical lower case; undefined when empty. */
export function normalizeRequestId(value: string): string | undefined {
  return value === "" ? undefined : value.toLowerCase();
}

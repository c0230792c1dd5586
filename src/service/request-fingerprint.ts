import { createHash } from "node:crypto";
import type { GrantSpec } from "../backends/types.js";

/** What a StartSession request asks for, once validated (request_id aside). */
export interface StartSessionIntent {
  agentId: string;
  userId?: string;
  grants: readonly GrantSpec[];
  durationMs: number;
  labels: Record<string, string>;
}

/**
 * sha256 hex of a StartSession request's meaning: two attempts with the same request_id
 * are the same request exactly when their fingerprints are equal. Canonical: label order,
 * and a TTL left out versus none, make no difference; grant and scope order do (they are
 * part of what the session grants and how streams index it).
 */
export function requestFingerprint(intent: StartSessionIntent): string {
  const canonical = JSON.stringify([
    intent.agentId,
    intent.userId ?? null,
    intent.grants.map((g) => [g.resource, g.scopes, g.ttlMs ?? null]),
    intent.durationMs,
    Object.entries(intent.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  ]);
  return createHash("sha256").update(canonical).digest("hex");
}

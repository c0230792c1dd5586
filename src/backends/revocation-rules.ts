import { grantTag, grantTagOfJti, sessionTag, sessionTagOfJti } from "../tokens/jti.js";
import type { Revocation, SessionSubject, TokenSubject } from "./types.js";

/**
 * Does the rule revoke the token? Exact when the token's mint time in ms is known (capvend
 * jtis carry it). Otherwise only whole seconds (iat) are known, and a token minted in the
 * same second as a revocation counts as revoked: the safe side.
 */
export function revokesToken(r: Revocation, t: TokenSubject): boolean {
  if (t.issuedAtMs !== undefined ? t.issuedAtMs > r.revokedAt : t.issuedAtSec > Math.floor(r.revokedAt / 1000)) return false;
  switch (r.kind) {
    case "token_id":
      return r.value === t.jti;
    case "session_id":
      return r.value === t.sessionId;
    case "agent_id":
      return r.value === t.agentId;
    case "user_id":
      return t.userId !== undefined && r.value === t.userId;
    case "resource":
      return r.value === t.resource;
  }
}

/** Does the rule end the session? Session, agent and user revocations do; token and resource ones don't. */
export function revokesSession(r: Revocation, s: SessionSubject): boolean {
  if (s.createdAt > r.revokedAt) return false;
  switch (r.kind) {
    case "session_id":
      return r.value === s.sessionId;
    case "agent_id":
      return r.value === s.agentId;
    case "user_id":
      return s.userId !== undefined && r.value === s.userId;
    default:
      return false;
  }
}

/**
 * Does the rule withdraw the session's grant on `resource`? A revocation also takes back,
 * from every session created at or before it, the grants its tokens were issued under, so
 * no new token for them comes from IssueToken or a new stream (GRANT_REVOKED):
 * - by resource: that resource's grant in every such session;
 * - by token id: the grant the token was issued under, in its session (its id carries
 *   both tags; ids minted before grant tags withdraw nothing beyond the token);
 * - by session, agent or user: every grant, as the session itself is over.
 * Sessions created after the revocation are not affected: they are granted afresh.
 */
export function withdrawsGrant(r: Revocation, s: SessionSubject, resource: string): boolean {
  if (s.createdAt > r.revokedAt) return false;
  switch (r.kind) {
    case "resource":
      return r.value === resource;
    case "token_id":
      // The grant tag first: it is cached, the session tag is a hash per call.
      return grantTagOfJti(r.value) === grantTag(resource) && sessionTagOfJti(r.value) === sessionTag(s.sessionId);
    default:
      return revokesSession(r, s);
  }
}

/** The key under which token revocations are indexed by the grant they withdraw. */
export function grantKeyOfJti(jti: string): string | undefined {
  const s = sessionTagOfJti(jti);
  const g = grantTagOfJti(jti);
  return s === undefined || g === undefined ? undefined : s + g;
}

/** The same key, from a session and a resource. */
export function grantKey(sessionId: string, resource: string): string {
  return sessionTag(sessionId) + grantTag(resource);
}

/** The revocations of a log kept in feed order that come after position `seq` (binary search). */
export function revocationsAfter(log: readonly Revocation[], seq: number): Revocation[] {
  let lo = 0;
  let hi = log.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (log[mid]!.seq! <= seq) lo = mid + 1;
    else hi = mid;
  }
  return log.slice(lo);
}

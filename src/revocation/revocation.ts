import { grantTag, grantTagOfJti, sessionTag, sessionTagOfJti } from "../tokens/jti.js";

/** What a revocation targets; the names match RevokeRequest's oneof. */
export type RevocationKind = "token_id" | "session_id" | "agent_id" | "user_id" | "resource";

export const REVOCATION_KINDS: readonly RevocationKind[] = ["token_id", "session_id", "agent_id", "user_id", "resource"];

/**
 * One revocation: every token matching `kind`/`value` issued at or before `revokedAt` is
 * revoked. A rule instead of a list of tokens, so revoking an agent with a million live
 * tokens is one small record, it reaches replicas that never saw those tokens, and it can
 * be forgotten once nothing it could match is still alive (`expiresAt`).
 */
export interface Revocation {
  /** `rev_…`: names the revocation in the audit log and on the feed. */
  id: string;
  kind: RevocationKind;
  value: string;
  reason: string;
  /** ms since epoch. */
  revokedAt: number;
  /** ms since epoch after which nothing this rule matches can still be alive. */
  expiresAt: number;
  /** Who revoked: "orchestrator:<id>", "session:<id>" or "system". */
  by: string;
  /**
   * Position in the revocation feed, set when the list applies it: a local counter in
   * memory, the JetStream sequence with NATS. Streams build their revisions on it.
   */
  seq?: number;
}

/** What a token is, for matching against revocations (all known from its claims). */
export interface TokenSubject {
  jti: string;
  sessionId: string;
  agentId: string;
  userId?: string;
  resource: string;
  /** Seconds since epoch (the iat claim). */
  issuedAtSec: number;
  /** The exact mint time in ms when known (capvend jtis carry it); makes matching exact. */
  issuedAtMs?: number;
}

/** What a session is, for matching against session, agent and user revocations. */
export interface SessionSubject {
  sessionId: string;
  agentId: string;
  userId?: string;
  /** ms since epoch. */
  createdAt: number;
}

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

/**
 * The revocation list of one replica, fed by its own revocations and (with NATS) every
 * other replica's. Lookups are synchronous and O(1): they sit on the Introspect and
 * issuance paths.
 */
export interface RevocationList {
  /**
   * Records a revocation and fans it out. Resolves once it is durable (memory: at once;
   * NATS: acknowledged by JetStream); rejects when it could not be stored, in which case it
   * must be reported as not done.
   */
  publish(revocation: Revocation): Promise<void>;
  /**
   * The token-level revocation (by token id or resource) that revokes this token, if any.
   * A token is also dead when its session is: check `sessionRevocation` too.
   */
  tokenRevocation(token: TokenSubject): Revocation | undefined;
  /** The revocation (by session, agent or user) that ended this session, if any. */
  sessionRevocation(session: SessionSubject): Revocation | undefined;
  /**
   * The revocation (by resource or token id) that withdrew the session's grant on
   * `resource`, if any (see `withdrawsGrant`). Session-ending rules are `sessionRevocation`'s.
   */
  grantRevocation(session: SessionSubject, resource: string): Revocation | undefined;
  /** Called for every revocation applied, local or remote. Returns an unsubscribe function. */
  subscribe(listener: (revocation: Revocation) => void): () => void;
  /** The highest feed position applied so far (0 before any). */
  readonly lastSeq: number;
  /**
   * Waits until every revocation up to feed position `seq` is applied here (a replica that
   * lags the shared feed). Resolves false when that did not happen within `timeoutMs`.
   * The memory list is never behind: it answers at once.
   */
  catchUp(seq: number, timeoutMs: number): Promise<boolean>;
  /** Applied revocations after `seq`, in feed order, that can still match something alive. */
  since(seq: number): Revocation[];
  /** Number of rules held (memory stays bounded by the rules still able to match). */
  readonly size: number;
  close(): Promise<void>;
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

import { decodeProtectedHeader } from "jose";
import type { Principal } from "../auth/principal.js";
import type { Clock } from "../clock.js";
import { capvendError, invalidArgument } from "../errors.js";
import type { RevocationList, SessionRecord, SessionStore } from "../backends/types.js";
import { subjectFor, USER_SUBJECT_PREFIX, type AccessTokenClaims } from "../tokens/claims.js";
import { issuedAtMsOfJti, sessionTag, sessionTagOfJti } from "../tokens/jti.js";
import { DEFAULT_MAX_TOKEN_BYTES, type Verifier } from "../tokens/verify.js";
import { callerRequest, explainDenial, type PolicyDecider } from "../policy/requests.js";

/**
 * The entity Introspect's first policy question is asked on, before any token is read:
 * principal the caller, action `Action::"introspect"`, resource `Introspection::"tokens"`.
 * Only a caller permitted this may introspect at all; which tokens it may learn about is
 * the second question, per token (its agent, `Agent::"<client_id>"`).
 */
export const INTROSPECTION_GATE = { type: "Introspection", id: "tokens" } as const;

/** Why a token was answered inactive: for audit records and spans, never for the caller. */
export type InactiveWhy =
  | "invalid_token"
  | "foreign_audience"
  | "not_permitted"
  | "bad_lifetime"
  | "signed_after_key_retired"
  | "claims_mismatch"
  | "token_revoked"
  | "grant_revoked"
  | "session_unknown"
  | "session_ended"
  | "session_revoked";

/** What Introspect decided. An inactive answer carries nothing the caller may see. */
export type IntrospectionOutcome =
  | { active: true; claims: AccessTokenClaims; policyIds: string[] }
  | { active: false; why: InactiveWhy; claims?: AccessTokenClaims; policyIds?: string[] };

export interface IntrospectionDeps {
  clock: Clock;
  sessions: Pick<SessionStore, "get">;
  revocations: Pick<RevocationList, "tokenRevocation" | "sessionRevocation" | "grantRevocation">;
  policy: PolicyDecider;
  verifier: Verifier;
  /** When each signing key stopped signing (ms since epoch), undefined while it signs or is unknown. */
  keyRetiredAt(kid: string): number | undefined;
  /** CAPVEND_MAX_TOKEN_TTL, ms: no genuine token lives longer. */
  maxTokenTtlMs: number;
  /**
   * CAPVEND_RESOURCE_SERVER_AUDIENCES: resource server id → the resources (token `aud`s) it
   * may learn about. A resource server with none may not introspect.
   */
  resourceServerAudiences: ReadonlyMap<string, ReadonlySet<string>>;
}

/** Introspection: the one decision the Introspect RPC and any RFC 7662 endpoint share. */
export interface Introspection {
  /**
   * Decides whether `token` is active for `caller`. The caller is authorized first, before
   * the token is read at all: a caller that may not introspect gets PERMISSION_DENIED
   * (ACTION_DENIED) whatever it sends, so the answer never tells a good signature from a
   * forged one. Everything after that answers inactive, with nothing else: a token that
   * does not verify, whose audience is not the resource server's, whose agent the caller
   * may not see, whose claims disagree with its session, its grants or its key's
   * retirement, or that is revoked, expired or of an ended session. `checkRequest` (the
   * contract's field rules) runs once the caller is authorized, before the token is read.
   */
  introspect(caller: Exclude<Principal, { kind: "session" }>, token: string, checkRequest?: () => void): Promise<IntrospectionOutcome>;
}

export function createIntrospection(deps: IntrospectionDeps): Introspection {
  const { clock, sessions, revocations, policy, verifier } = deps;
  const maxTtlSec = Math.ceil(deps.maxTokenTtlMs / 1000);

  function gate(caller: Exclude<Principal, { kind: "session" }>): void {
    const who = caller.kind === "orchestrator" ? `orchestrator "${caller.id}"` : `resource server "${caller.id}"`;
    if (caller.kind === "resource_server" && (deps.resourceServerAudiences.get(caller.id)?.size ?? 0) === 0) {
      throw capvendError("ACTION_DENIED", `${who} may not introspect: it has no audiences (CAPVEND_RESOURCE_SERVER_AUDIENCES)`);
    }
    const d = policy.authorize(callerRequest(caller, "introspect", INTROSPECTION_GATE));
    if (!d.allowed) {
      throw capvendError("ACTION_DENIED", `${who} may not introspect (asked on ${INTROSPECTION_GATE.type}::"${INTROSPECTION_GATE.id}" before the token is read): ${explainDenial(d)}`);
    }
  }

  /** Does the token claim anything a genuine token of `session` could not: another agent or user, an ungranted audience or scope, a lifetime past the grant's or outside the session's? */
  function disagreement(c: AccessTokenClaims, session: SessionRecord): boolean {
    if (c.client_id !== session.agentId || c.sub !== subjectFor(session.agentId, session.userId)) return true;
    if (c.iat < Math.floor(session.createdAt / 1000) || c.exp > Math.ceil(session.expiresAt / 1000)) return true;
    const grant = session.grants.find((g) => g.resource === c.aud);
    if (!grant) return true;
    const scopes = c.scope.split(" ");
    if (!scopes.every((s) => grant.scopes.includes(s))) return true;
    if (grant.ttlMs !== undefined && c.exp - c.iat > Math.ceil(grant.ttlMs / 1000)) return true;
    return false;
  }

  return {
    async introspect(caller, token, checkRequest) {
      gate(caller);
      checkRequest?.();
      if (token.length === 0) throw invalidArgument("token", "must not be empty");
      if (Buffer.byteLength(token) > DEFAULT_MAX_TOKEN_BYTES) throw invalidArgument("token", `must be at most ${DEFAULT_MAX_TOKEN_BYTES} bytes`);

      let claims: AccessTokenClaims;
      try {
        claims = await verifier.verify(token);
      } catch {
        // Malformed, forged, expired or signed by an unknown key: RFC 7662 says inactive.
        return { active: false, why: "invalid_token" };
      }
      if (caller.kind === "resource_server" && !deps.resourceServerAudiences.get(caller.id)!.has(claims.aud)) {
        return { active: false, why: "foreign_audience" };
      }
      const agentId = claims.client_id;
      const userId = claims.sub.startsWith(USER_SUBJECT_PREFIX) ? claims.sub.slice(USER_SUBJECT_PREFIX.length) : undefined;
      const d = policy.authorize(callerRequest(caller, "introspect", { type: "Agent", id: agentId }, { userId, audience: claims.aud }));
      // Inactive, not PERMISSION_DENIED: a denial here would tell a good token from a forged one.
      if (!d.allowed) return { active: false, why: "not_permitted", claims };
      const seen = { claims, policyIds: d.policyIds };

      if (claims.exp <= claims.iat || claims.exp - claims.iat > maxTtlSec || claims.nbf !== claims.iat) return { active: false, why: "bad_lifetime", ...seen };
      const mintedAtMs = issuedAtMsOfJti(claims.jti);
      const retiredAt = deps.keyRetiredAt(decodeProtectedHeader(token).kid as string);
      if (retiredAt !== undefined && (claims.iat > Math.floor(retiredAt / 1000) || (mintedAtMs !== undefined && mintedAtMs > retiredAt))) {
        return { active: false, why: "signed_after_key_retired", ...seen };
      }
      if (sessionTagOfJti(claims.jti) !== sessionTag(claims.sid)) return { active: false, why: "claims_mismatch", ...seen };
      const tokenSubject = { jti: claims.jti, sessionId: claims.sid, agentId, userId, resource: claims.aud, issuedAtSec: claims.iat, issuedAtMs: mintedAtMs };
      if (revocations.tokenRevocation(tokenSubject)) return { active: false, why: "token_revoked", ...seen };

      let session: SessionRecord | undefined;
      try {
        session = await sessions.get(claims.sid);
      } catch (err) {
        throw capvendError("SESSION_STORE_UNAVAILABLE", "the session store is unavailable; retry", {}, err);
      }
      // A token whose session is unknown here cannot be shown not to be ended: inactive.
      if (!session) return { active: false, why: "session_unknown", ...seen };
      if (session.endedAt !== undefined || session.expiresAt <= clock.now()) return { active: false, why: "session_ended", ...seen };
      const sessionSubject = { sessionId: session.id, agentId: session.agentId, userId: session.userId, createdAt: session.createdAt };
      if (revocations.sessionRevocation(sessionSubject)) return { active: false, why: "session_revoked", ...seen };
      if (disagreement(claims, session)) return { active: false, why: "claims_mismatch", ...seen };
      // No token is minted for a withdrawn grant; one that claims to be was not minted here.
      const withdrawn = revocations.grantRevocation(sessionSubject, claims.aud);
      if (withdrawn && (mintedAtMs ?? claims.iat * 1000) > withdrawn.revokedAt) return { active: false, why: "grant_revoked", ...seen };
      return { active: true, ...seen };
    },
  };
}

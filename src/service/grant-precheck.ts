import type { Decision } from "../policy/engine.js";
import type { GrantSpec, SessionRecord } from "../backends/types.js";
import { explainDenial, scopeRequest, type PolicyDecider } from "../policy/requests.js";

/** The shortest token a runtime can ask for, in seconds (issuance refuses less than a second of life). */
const MIN_TTL_SECONDS = 1;

/** A grant StartSession refuses: no token for it could ever be issued under the policy in force. */
export interface UnallowableGrant {
  index: number;
  resource: string;
  scope: string;
  decision: Decision;
  /** For the caller: names the grant, the scope and why. */
  message: string;
}

/**
 * Finds the first grant scope that the policy can never allow for this agent and user, so
 * StartSession refuses it (SCOPE_DENIED) instead of opening a session that fails on every
 * IssueToken. The issuance context is known at StartSession (agent, user, session id,
 * labels) except the TTL a runtime will ask for, so a scope counts as never allowed only
 * when it is denied both at the grant's TTL and at the shortest TTL: a policy that caps
 * token lifetimes does not refuse a session whose runtime may ask for shorter tokens.
 */
export function unallowableGrant(
  policy: PolicyDecider,
  session: Pick<SessionRecord, "id" | "agentId" | "userId" | "labels">,
  grants: readonly GrantSpec[],
  limits: { maxTokenTtlMs: number; tokenTtlMs?: number },
): UnallowableGrant | undefined {
  const record = session as SessionRecord;
  for (const [index, grant] of grants.entries()) {
    const ttlMs = Math.min(grant.ttlMs ?? limits.tokenTtlMs ?? limits.maxTokenTtlMs, limits.maxTokenTtlMs);
    const ttls = [...new Set([Math.ceil(ttlMs / 1000), MIN_TTL_SECONDS])];
    for (const scope of grant.scopes) {
      let denied: Decision | undefined;
      for (const ttl of ttls) {
        const d = policy.authorize(scopeRequest(record, grant.resource, scope, ttl));
        if (d.allowed) {
          denied = undefined;
          break;
        }
        denied ??= d;
      }
      if (denied) {
        const message = `grants[${index}]: scope "${scope}" on resource "${grant.resource}" can never be allowed for agent "${session.agentId}"${session.userId !== undefined ? ` acting for user "${session.userId}"` : ""}: ${explainDenial(denied)}`;
        return { index, resource: grant.resource, scope, decision: denied, message };
      }
    }
  }
  return undefined;
}

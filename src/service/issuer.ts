import type { Clock } from "../clock.js";
import type { AuditEvent } from "../audit/event.js";
import type { AuditSink } from "../audit/sink.js";
import { markAudited } from "../audit/decision-log.js";
import { AuditEventRefusedError } from "../audit/errors.js";
import { capvendError } from "../errors.js";
import type { Decision } from "../policy/engine.js";
import type { RevocationList, SessionRecord } from "../backends/types.js";
import type { Minter, MintedToken } from "../tokens/mint.js";
import { explainDenial, scopeRequest, type PolicyDecider } from "../policy/requests.js";

/** A token wanted for one resource; the caller has validated the shape already. */
export interface TokenRequest {
  resource: string;
  scopes: readonly string[];
  /** Lifetime asked for in ms; undefined means the grant's, else the server default. */
  ttlMs?: number;
}

export interface IssuerOptions {
  clock: Clock;
  policy: PolicyDecider;
  minter: Minter;
  audit: Pick<AuditSink, "append">;
  /** Grants withdrawn by revocations are refused (GRANT_REVOKED). */
  revocations: Pick<RevocationList, "grantRevocation">;
  defaultTtlMs: number;
  maxTtlMs: number;
}

/** Why the token is being minted: the audit event differs. */
export interface IssueContext {
  event: "token.issued" | "token.renewed";
  caller: NonNullable<AuditEvent["caller"]>;
  traceId?: string;
}

/** What a token was granted under, for audits and spans. */
export type IssuedToken = MintedToken & { readonly policyIds: string[] };

/**
 * The one path every token takes: the session's grants, then Cedar per scope, then mint,
 * then the audit record. Nothing is returned unless its audit record is written.
 */
export interface Issuer {
  /**
   * Throws PERMISSION_DENIED naming the scope when the grant, a revocation that withdrew it,
   * or policy refuses it; INVALID_ARGUMENT (TTL_EXCEEDS_GRANT) when the TTL asked for is
   * longer than the grant's.
   */
  authorize(session: SessionRecord, req: TokenRequest): { ttlMs: number; policyIds: string[] };
  issue(session: SessionRecord, req: TokenRequest, ctx: IssueContext): Promise<IssuedToken>;
}

export function createIssuer(opts: IssuerOptions): Issuer {
  const { clock, policy, minter, audit } = opts;

  function grantFor(session: SessionRecord, req: TokenRequest) {
    const grant = session.grants.find((g) => g.resource === req.resource);
    if (!grant) {
      throw capvendError("RESOURCE_NOT_GRANTED", `resource "${req.resource}" is not among the grants of session ${session.id}`, { resource: req.resource });
    }
    for (const scope of req.scopes) {
      if (!grant.scopes.includes(scope)) {
        throw capvendError("SCOPE_NOT_GRANTED", `scope "${scope}" on resource "${req.resource}" is not among the grants of session ${session.id}`, { resource: req.resource, scope });
      }
    }
    const withdrawn = opts.revocations.grantRevocation({ sessionId: session.id, agentId: session.agentId, userId: session.userId, createdAt: session.createdAt }, req.resource);
    if (withdrawn) {
      throw capvendError(
        "GRANT_REVOKED",
        `the grant of resource "${req.resource}" was withdrawn from session ${session.id} by revocation ${withdrawn.id} (${withdrawn.kind === "resource" ? "of the resource" : "of one of its tokens"}); a session started after it may be granted it again`,
        { resource: req.resource, sessionId: session.id },
      );
    }
    if (req.ttlMs !== undefined && grant.ttlMs !== undefined && req.ttlMs > grant.ttlMs) {
      // Refused, not shortened: a caller that asked for an hour and silently got a minute
      // would plan its refreshes on the wrong lifetime.
      throw capvendError(
        "TTL_EXCEEDS_GRANT",
        `ttl: ${Math.ceil(req.ttlMs / 1000)}s is longer than the grant of resource "${req.resource}" allows (${Math.floor(grant.ttlMs / 1000)}s); ask for at most that, or leave ttl unset`,
        { field: "ttl", resource: req.resource },
      );
    }
    return grant;
  }

  type Verdict = { ok: true; policyIds: string[] } | { ok: false; scope: string; decision: Decision };

  function decide(session: SessionRecord, req: TokenRequest, ttlMs: number): Verdict {
    const policyIds = new Set<string>();
    const ttlSeconds = Math.ceil(ttlMs / 1000);
    for (const scope of req.scopes) {
      const decision = policy.authorize(scopeRequest(session, req.resource, scope, ttlSeconds));
      if (!decision.allowed) return { ok: false, scope, decision };
      for (const id of decision.policyIds) policyIds.add(id);
    }
    return { ok: true, policyIds: [...policyIds] };
  }

  function ttlFor(session: SessionRecord, req: TokenRequest): number {
    const grant = grantFor(session, req);
    const ttlMs = req.ttlMs ?? grant.ttlMs ?? opts.defaultTtlMs;
    return Math.min(ttlMs, opts.maxTtlMs);
  }

  const deniedError = (session: SessionRecord, req: TokenRequest, scope: string, why: string) =>
    capvendError("SCOPE_DENIED", `scope "${scope}" on resource "${req.resource}" is denied for agent "${session.agentId}": ${why}`, { resource: req.resource, scope });

  return {
    authorize(session, req) {
      const ttlMs = ttlFor(session, req);
      const r = decide(session, req, ttlMs);
      if (!r.ok) throw deniedError(session, req, r.scope, explainDenial(r.decision));
      return { ttlMs, policyIds: r.policyIds };
    },

    async issue(session, req, ctx) {
      const ttlMs = ttlFor(session, req);
      const base = {
        caller: ctx.caller,
        agent_id: session.agentId,
        user_id: session.userId,
        session_id: session.id,
        resource: req.resource,
        scopes: [...req.scopes],
        trace_id: ctx.traceId,
      } satisfies Partial<AuditEvent>;
      const r = decide(session, req, ttlMs);
      if (!r.ok) {
        const why = explainDenial(r.decision);
        await appendOrFail(audit, {
          ...base,
          type: "token.denied",
          decision: "deny",
          policy_ids: r.decision.policyIds,
          reason: `scope "${r.scope}": ${why}`,
        });
        // Recorded above: the call's refusal needs no second record.
        throw markAudited(deniedError(session, req, r.scope, why));
      }
      const now = clock.now();
      // Never past the session's end: a token outliving its session would outlive its revocation.
      const expiresAtMs = Math.min(now + ttlMs, session.expiresAt);
      if (expiresAtMs - now < 1000) throw capvendError("SESSION_ENDED", `session ${session.id} ends in less than a second`, { sessionId: session.id });
      const minted = minter.mint({
        agentId: session.agentId,
        userId: session.userId,
        sessionId: session.id,
        resource: req.resource,
        scopes: req.scopes,
        expiresAtMs,
      });
      await appendOrFail(audit, {
        ...base,
        type: ctx.event,
        decision: "allow",
        policy_ids: r.policyIds,
        jti: minted.jti,
        exp: minted.claims.exp,
      });
      // Not a spread: the minted token keeps its JWT behind a getter so it never serializes.
      return Object.assign(minted, { policyIds: r.policyIds });
    },
  };
}

/**
 * Appends an audit record, turning any sink failure into UNAVAILABLE (fail closed).
 * `outcome` tells the caller what the failure means for the call, e.g. "nothing was issued".
 */
export async function appendOrFail(audit: Pick<AuditSink, "append">, event: AuditEvent, outcome = "nothing was issued"): Promise<void> {
  try {
    await audit.append(event);
  } catch (err) {
    // A refused event is a bug here (inputs are validated first): retrying cannot help.
    if (err instanceof AuditEventRefusedError) throw capvendError("INTERNAL", `the audit record was refused, so ${outcome}`, {}, err);
    throw capvendError("AUDIT_UNAVAILABLE", `the audit log is unavailable, so ${outcome}; retry later`, {}, err);
  }
}

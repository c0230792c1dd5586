import { setImmediate as nextTick } from "node:timers/promises";
import type { AuditEvent } from "../audit/event.js";
import { newRevocationId } from "../auth/credentials.js";
import type { Clock } from "../clock.js";
import type { Decision } from "../policy/engine.js";
import type { GrantSpec, Revocation, SessionRecord } from "../backends/types.js";
import { explainDenial, scopeRequest, type PolicyDecider } from "../policy/requests.js";
import type { WatchStream } from "./watch-stream.js";

/** The reason carried by every revocation a policy change causes (streams, feed, audit). */
export const POLICY_CHANGED = "POLICY_CHANGED";

/**
 * Longest stretch of re-evaluation work between two yields to the event loop, ms: requests
 * wait at most about this long behind a pass, whatever the number of grants.
 */
export const DRIFT_SLICE_MS = 10;

/** Revocations being stored at once while re-evaluating (each a feed publish and an audit append): 64. */
export const DRIFT_MAX_IN_FLIGHT = 64;

/** Why a grant is no longer allowed: the first scope the policy refuses, and its decision. */
export interface GrantDenial {
  scope: string;
  decision: Decision;
}

/**
 * Evaluates a grant under the policy in force, exactly as issuance would for its next
 * token (one request per scope, at the grant's TTL). Undefined when every scope is allowed.
 */
export function grantDenial(policy: PolicyDecider, session: SessionRecord, grant: GrantSpec, ttlMs: number): GrantDenial | undefined {
  const ttlSeconds = Math.ceil(ttlMs / 1000);
  for (const scope of grant.scopes) {
    const decision = policy.authorize(scopeRequest(session, grant.resource, scope, ttlSeconds));
    if (!decision.allowed) return { scope, decision };
  }
  return undefined;
}

/** What one re-evaluation did. */
export interface DriftReport {
  /** The policy version the grants were evaluated under. */
  policyVersion: string;
  streams: number;
  /** Live grants evaluated. */
  grants: number;
  /** Grants the new set no longer allows (their tokens are revoked). */
  revokedGrants: number;
  /** Token revocations stored (a grant may hold a current and a previous token). */
  revokedTokens: number;
  /** Revocations that could not be stored; their grants were stopped on this replica's streams only. */
  failed: number;
  /** Wall time of the whole pass, including storing the revocations, in ms. */
  durationMs: number;
}

export interface PolicyDriftOptions {
  clock: Clock;
  policy: PolicyDecider;
  /** The policy version in force, for audit records and the report. */
  policyVersion(): string;
  /** Token lifetime when a grant names none (CAPVEND_TOKEN_TTL) and the cap (CAPVEND_MAX_TOKEN_TTL), ms. */
  defaultTtlMs: number;
  maxTtlMs: number;
  /**
   * Stores a revocation and its audit record, the way Revoke does: the feed (and with NATS
   * every replica) first, then the audit log. Rejects when the revocation was not stored.
   */
  revoke(revocation: Revocation, audit: AuditEvent): Promise<void>;
  /** Told about an audit failure after the revocation took effect, or a revocation that could not be stored. */
  onError?(error: unknown, what: string): void;
}

/**
 * Closes policy drift: after a new policy set is swapped in, every live grant on this
 * replica's streams is evaluated again, and every token of a grant the set no longer
 * allows is revoked through the revocation feed with reason POLICY_CHANGED and the ids of
 * the deciding policies. Evaluation runs in slices of at most DRIFT_SLICE_MS that yield to
 * the event loop, so requests keep being served while thousands of grants are checked.
 */
export class PolicyDrift {
  readonly #opts: PolicyDriftOptions;

  constructor(opts: PolicyDriftOptions) {
    this.#opts = opts;
  }

  /** The policy version in force now. */
  policyVersion(): string {
    return this.#opts.policyVersion();
  }

  /** The policy the grants are evaluated under. */
  get policy(): PolicyDecider {
    return this.#opts.policy;
  }

  /** The lifetime issuance would give the grant's next token, ms. */
  ttlOf(grant: GrantSpec): number {
    return Math.min(grant.ttlMs ?? this.#opts.defaultTtlMs, this.#opts.maxTtlMs);
  }

  /** Re-evaluates every live grant of `streams` under the policy in force now. */
  async reevaluate(streams: Iterable<WatchStream>): Promise<DriftReport> {
    const { clock, policy } = this.#opts;
    const started = performance.now();
    const policyVersion = this.#opts.policyVersion();
    const report: DriftReport = { policyVersion, streams: 0, grants: 0, revokedGrants: 0, revokedTokens: 0, failed: 0, durationMs: 0 };
    const limiter = new Limiter(DRIFT_MAX_IN_FLIGHT);
    let sliceStart = performance.now();
    for (const stream of [...streams]) {
      const live = stream.liveGrants(clock.now());
      if (live.length === 0) continue;
      report.streams++;
      for (const g of live) {
        report.grants++;
        const denial = grantDenial(policy, stream.session, g.grant, this.ttlOf(g.grant));
        if (denial) {
          report.revokedGrants++;
          stream.beginRevocation(g.index);
          await limiter.run(async () => {
            const r = await this.revokeGrant(stream, g.index, g.grant, g.tokens, denial, policyVersion);
            report.revokedTokens += r.revoked;
            report.failed += r.failed;
          });
        }
        if (performance.now() - sliceStart >= DRIFT_SLICE_MS) {
          await nextTick();
          sliceStart = performance.now();
        }
      }
    }
    await limiter.idle();
    report.durationMs = performance.now() - started;
    return report;
  }

  /**
   * Revokes every live token of one grant the policy no longer allows. The stream hears it
   * through the feed like any revocation; a token whose revocation cannot be stored is
   * still dropped on this stream.
   */
  async revokeGrant(
    stream: WatchStream,
    index: number,
    grant: GrantSpec,
    tokens: { jti: string; expiresAtMs: number }[],
    denial: GrantDenial,
    policyVersion = this.#opts.policyVersion(),
  ): Promise<{ revoked: number; failed: number }> {
    stream.beginRevocation(index);
    const s = stream.session;
    const why = explainDenial(denial.decision);
    const reason = `${POLICY_CHANGED}: scope "${denial.scope}" on resource "${grant.resource}" is no longer allowed: ${why}`;
    let revoked = 0;
    let failed = 0;
    const unstored: string[] = [];
    await Promise.all(
      tokens.map(async (t) => {
        const now = this.#opts.clock.now();
        const revocation: Revocation = {
          id: newRevocationId(),
          kind: "token_id",
          value: t.jti,
          reason,
          revokedAt: now,
          expiresAt: Math.max(t.expiresAtMs, now),
          by: "system:policy",
        };
        const event: AuditEvent = {
          type: "token.revoked",
          caller: { kind: "system", id: "policy" },
          agent_id: s.agentId,
          user_id: s.userId,
          session_id: s.id,
          resource: grant.resource,
          scopes: [...grant.scopes],
          jti: t.jti,
          target: { kind: "token_id", value: t.jti },
          reason: POLICY_CHANGED,
          decision: "deny",
          policy_ids: denial.decision.policyIds,
          policy_version: policyVersion,
          details: { revocation_id: revocation.id, scope: denial.scope, explanation: why },
        };
        try {
          await this.#opts.revoke(revocation, event);
          revoked++;
        } catch (err) {
          failed++;
          unstored.push(t.jti);
          this.#opts.onError?.(err, `revocation of token ${t.jti} after a policy change`);
        }
      }),
    );
    // Nothing was stored (or the grant held no live token): stop it here and tell the runtime.
    if (revoked === 0) stream.revokeGrantLocally(index, unstored, reason);
    return { revoked, failed };
  }
}

/** Runs at most `max` tasks at once; `run` waits for a free slot, not for the task. */
class Limiter {
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  readonly #running = new Set<Promise<void>>();

  constructor(readonly max: number) {}

  async run(task: () => Promise<void>): Promise<void> {
    while (this.#active >= this.max) await new Promise<void>((r) => this.#waiting.push(r));
    this.#active++;
    const p = task()
      .catch(() => undefined)
      .finally(() => {
        this.#active--;
        this.#running.delete(p);
        this.#waiting.shift()?.();
      });
    this.#running.add(p);
  }

  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running]);
  }
}

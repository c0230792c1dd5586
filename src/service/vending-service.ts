import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { AuditEvent } from "../audit/event.js";
import type { AuditSink } from "../audit/sink.js";
import { newRevocationId, newSessionCredential, newSessionId, sessionIdForRequest } from "../auth/credentials.js";
import { callerOf, describePrincipal, type Principal } from "../auth/principal.js";
import type { Clock } from "../clock.js";
import { asFault, capvendError, invalidArgument, rethrowAs } from "../errors.js";
import { afterSetup } from "../stream-relay.js";
import { callTraceId } from "../logging/call-trace.js";
import {
  EndSessionRequestSchema,
  IntrospectRequestSchema,
  IntrospectResponseSchema,
  IssueTokenRequestSchema,
  RevokeRequestSchema,
  StartSessionRequestSchema,
  WatchSessionRequestSchema,
  type VendingService,
  type WatchSessionResponse,
} from "../gen/capvend/v1/vending_pb.js";
import { type Revocation, type RevocationKind, type RevocationList, SessionExistsError, type SessionRecord, type SessionStore } from "../backends/types.js";
import { AGENT_SUBJECT_PREFIX, USER_SUBJECT_PREFIX } from "../tokens/claims.js";
import { noteSubject } from "./audit-interceptor.js";
import type { Introspection } from "./introspection.js";
import type { Issuer } from "./issuer.js";
import { appendOrFail } from "../audit/append-or-fail.js";
import { tokenMessage } from "./token-message.js";
import { unallowableGrant } from "./grant-precheck.js";
import { markAudited } from "../audit/decision-log.js";
import type { Logger } from "../logging/logger.js";
import { callerRequest, explainDenial, type OrchestratorAction, type PolicyDecider } from "../policy/requests.js";
import { normalizeRequestId, validateDuration, validateGrants, validateId, validateLabels, validateReason } from "./validate.js";
import { createContractValidator } from "./contract-validator.js";
import { admitWatch } from "./watch-session.js";
import { publishOrFail, type RevocationPublisher } from "./revocation-publisher.js";
import type { StreamOpening } from "../streams/stream-hub.js";
import { requestFingerprint } from "./request-fingerprint.js";

/** What the vending service needs; each piece is an interface with a memory and a NATS form. */
export interface VendingServiceDeps {
  clock: Clock;
  sessions: SessionStore;
  revocations: RevocationList;
  policy: PolicyDecider;
  issuer: Issuer;
  /** Introspect's decision (shared with any RFC 7662 endpoint). */
  introspection: Introspection;
  audit: Pick<AuditSink, "append">;
  /** Where a session store that failed to record a session's end is reported. */
  logger: Pick<Logger, "warn">;
  /** Token and session limits, ms; `tokenTtlMs` (CAPVEND_TOKEN_TTL) is what a grant without a ttl gets; `maxSessionsPerOrchestrator` is a count. */
  limits: { maxTokenTtlMs: number; sessionMaxDurationMs: number; tokenTtlMs?: number; maxSessionsPerOrchestrator?: number };
  /** Serves WatchSession calls once they are validated and authorized (the stream hub, src/streams/). */
  streams: WatchStreams;
  /**
   * Where Revoke and EndSession store revocations, failing with REVOCATION_UNAVAILABLE;
   * default `publishOrFail(revocations)` (server.ts has telemetry decorate it).
   */
  publisher?: RevocationPublisher;
}

/** What WatchSession needs of the stream hub. */
export interface WatchStreams {
  /** Throws DRAINING when no stream may open (the server is shutting down). */
  assertOpen(): void;
  /** Serves a validated, authorized call until it ends. */
  open(opening: StreamOpening, ctx: HandlerContext): AsyncIterable<WatchSessionResponse>;
}

/** capvend.v1.VendingService, independent of the transport. */
export function createVendingService(deps: VendingServiceDeps): ServiceImpl<typeof VendingService> {
  const { clock, sessions, revocations, policy, issuer, audit, limits } = deps;
  // The contract's field rules (protovalidate), compiled once for the server's life.
  const contract = createContractValidator();

  function requireAllowed(ctx: HandlerContext, caller: Exclude<Principal, { kind: "session" }>, action: OrchestratorAction, resource: { type: string; id: string }, context: Parameters<typeof callerRequest>[3] = {}) {
    const d = policy.authorize(callerRequest(caller, action, resource, context));
    noteSubject(ctx, { policy_ids: d.policyIds });
    if (!d.allowed) {
      throw capvendError("ACTION_DENIED", `${caller.kind === "orchestrator" ? "orchestrator" : "resource server"} "${caller.id}" may not ${action} on ${resource.type} "${resource.id}": ${explainDenial(d)}`);
    }
    return d;
  }

  /**
   * The session is over on every replica once its revocation is stored; a store that then
   * fails to record the end (see SessionStore) is logged, not reported to the caller.
   */
  function endNotStored(sessionId: string): (err: unknown) => void {
    return (err) => deps.logger.warn({ err, session_id: sessionId }, "session ended by its revocation, but the session store did not record the end");
  }

  async function loadSession(id: string): Promise<SessionRecord> {
    const s = await sessions.get(id).catch(rethrowAs("session_store_unavailable"));
    if (!s) throw capvendError("SESSION_NOT_FOUND", `session_id: no session "${id}"`, { field: "session_id", sessionId: id });
    return s;
  }

  /**
   * A StartSession retry (same orchestrator and request_id): the session an earlier attempt
   * opened, with `credentialHash` added as another valid credential. Refuses a different
   * request under the same id (REQUEST_ID_REUSED) and a session that is over (SESSION_ENDED).
   */
  async function retriedSession(orchestratorId: string, requestId: string, attempt: SessionRecord, credentialHash: string): Promise<SessionRecord> {
    const existing = await loadSession(attempt.id);
    if (existing.startedBy !== orchestratorId || existing.requestFingerprint !== attempt.requestFingerprint) {
      throw capvendError("REQUEST_ID_REUSED", `request_id: ${requestId} was used before for a different StartSession request; use a new request_id`, { field: "request_id" });
    }
    const now = clock.now();
    const revoked = revocations.sessionRevocation({ sessionId: existing.id, agentId: existing.agentId, userId: existing.userId, createdAt: existing.createdAt });
    if (existing.endedAt !== undefined || existing.expiresAt <= now || revoked) {
      throw capvendError("SESSION_ENDED", `session ${existing.id}, opened for request_id ${requestId}, is over; start a new session with a new request_id`, { sessionId: existing.id });
    }
    const updated = await sessions.addCredential(existing.id, credentialHash).catch(rethrowAs("session_store_unavailable"));
    if (!updated) throw capvendError("SESSION_STORE_UNAVAILABLE", "the session was removed while retrying; retry", {});
    return updated;
  }

  /** StartSessions of each orchestrator between their quota check and their store write. */
  const admitting = new Map<string, number>();

  /**
   * Admits one more session for the orchestrator, or throws SESSION_QUOTA. Live means not
   * ended, not expired and not revoked; `sessionId` (a request_id retry's own session) is
   * not counted. Returns the release to call once the session is stored (or not).
   */
  async function admitSession(orchestratorId: string, sessionId: string): Promise<() => void> {
    const max = limits.maxSessionsPerOrchestrator;
    if (max === undefined) return () => {};
    const now = clock.now();
    const live = await sessions
      .countStartedBy(orchestratorId, (r) =>
        r.id !== sessionId && r.endedAt === undefined && r.expiresAt > now && !revocations.sessionRevocation({ sessionId: r.id, agentId: r.agentId, userId: r.userId, createdAt: r.createdAt }),
      )
      .catch(rethrowAs("session_store_unavailable"));
    const inFlight = admitting.get(orchestratorId) ?? 0;
    if (live + inFlight >= max) {
      throw capvendError(
        "SESSION_QUOTA",
        `orchestrator "${orchestratorId}" holds ${live + inFlight} live sessions, the most CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR (${max}) allows; end one with EndSession, or wait for one to expire`,
      );
    }
    admitting.set(orchestratorId, inFlight + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (admitting.get(orchestratorId) ?? 1) - 1;
      if (n <= 0) admitting.delete(orchestratorId);
      else admitting.set(orchestratorId, n);
    };
  }

  const publisher = deps.publisher ?? publishOrFail(revocations);
  const publish = (r: Revocation) => publisher.publish(r);

  return {
    async startSession(req, ctx) {
      const caller = callerOf(ctx, "orchestrator");
      contract.check(StartSessionRequestSchema, req);
      const agentId = validateId("agent_id", req.agentId);
      noteSubject(ctx, { agent_id: agentId });
      const userId = req.userId === undefined ? undefined : validateId("user_id", req.userId);
      noteSubject(ctx, { user_id: userId });
      const grants = validateGrants("grants", req.grants, limits.maxTokenTtlMs);
      const durationMs = validateDuration("max_duration", req.maxDuration, limits.sessionMaxDurationMs) ?? limits.sessionMaxDurationMs;
      const labels = validateLabels("labels", req.labels);
      const requestId = normalizeRequestId(req.requestId);
      const decision = requireAllowed(ctx, caller, "start_session", { type: "Agent", id: agentId }, { userId, labels });

      const now = clock.now();
      const id = requestId ? sessionIdForRequest(caller.id, requestId) : newSessionId();
      // A retry of a request that already opened its session is answered as a retry (or
      // REQUEST_ID_REUSED), even if the policy has changed since: the check is for new sessions.
      const opened = requestId ? await sessions.get(id).catch(() => undefined) : undefined;
      const refused = opened ? undefined : unallowableGrant(policy, { id, agentId, userId, labels }, grants, limits);
      if (refused) {
        await audit
          .append({
            type: "session.denied",
            caller: describePrincipal(caller),
            agent_id: agentId,
            user_id: userId,
            resource: refused.resource,
            scopes: [refused.scope],
            decision: "deny",
            policy_ids: refused.decision.policyIds,
            reason: refused.message,
            trace_id: callTraceId(ctx.values),
          })
          .catch(() => undefined);
        // Recorded above with the deciding policies: the decision log must not record it again.
        throw markAudited(capvendError("SCOPE_DENIED", refused.message, { field: `grants[${refused.index}]`, resource: refused.resource, scope: refused.scope, grantIndex: String(refused.index) }));
      }
      const { credential, hash } = newSessionCredential(id);
      const record: SessionRecord = {
        id,
        agentId,
        userId,
        grants,
        labels,
        credentialHash: hash,
        startedBy: caller.id,
        createdAt: now,
        expiresAt: now + durationMs,
      };
      if (requestId) record.requestFingerprint = requestFingerprint({ agentId, userId, grants, durationMs, labels });
      let retryOf: SessionRecord | undefined;
      const release = await admitSession(caller.id, id);
      try {
        await sessions.create(record);
      } catch (err) {
        release();
        if (!(err instanceof SessionExistsError) || !requestId) throw asFault("session_store_unavailable", err);
        // An earlier attempt of this request opened the session (here or on another replica).
        retryOf = await retriedSession(caller.id, requestId, record, hash);
      }
      // Stored: the session now counts itself.
      release();
      const session = retryOf ?? record;
      try {
        await appendOrFail(audit, {
          type: "session.started",
          caller: describePrincipal(caller),
          agent_id: agentId,
          user_id: userId,
          session_id: id,
          decision: "allow",
          policy_ids: decision.policyIds,
          scopes: grants.flatMap((g) => g.scopes.map((s) => `${g.resource}:${s}`)),
          details: requestId ? { request_id: requestId, retry: retryOf !== undefined } : undefined,
          trace_id: callTraceId(ctx.values),
        }, "no session was started");
      } catch (err) {
        // No credential without its audit record: the session must not exist half-made
        // (a retry's credential stays unknown to anyone: it was never sent).
        if (!retryOf) await sessions.delete(id).catch(() => undefined);
        throw err;
      }
      return { sessionId: id, sessionCredential: credential, expiresAt: timestampFromMs(session.expiresAt) };
    },

    async issueToken(req, ctx) {
      const caller = callerOf(ctx, "session");
      noteSubject(ctx, { session_id: caller.session.id, agent_id: caller.session.agentId, user_id: caller.session.userId });
      contract.check(IssueTokenRequestSchema, req);
      const resource = validateId("resource", req.resource);
      noteSubject(ctx, { resource });
      const scopes = [...req.scopes];
      noteSubject(ctx, { scopes });
      const ttlMs = validateDuration("ttl", req.ttl, limits.maxTokenTtlMs);
      const token = await issuer.issue(
        caller.session,
        { resource, scopes, ttlMs },
        { event: "token.issued", caller: describePrincipal(caller), traceId: callTraceId(ctx.values) },
      );
      return { token: tokenMessage(token) };
    },

    watchSession(req, ctx) {
      const caller = callerOf(ctx, "session");
      contract.check(WatchSessionRequestSchema, req);
      noteSubject(ctx, { session_id: caller.session.id, agent_id: caller.session.agentId, user_id: caller.session.userId });
      const session = caller.session;
      return afterSetup(async () => {
        deps.streams.assertOpen();
        const opening = await admitWatch({ clock, issuer, revocations, maxTokenTtlMs: limits.maxTokenTtlMs }, session, req);
        return deps.streams.open(opening, ctx);
      });
    },

    async revoke(req, ctx) {
      const caller = callerOf(ctx, "orchestrator");
      contract.check(RevokeRequestSchema, req);
      const target = req.target;
      if (target.case === undefined) {
        throw invalidArgument("target", "set one of token_id, session_id, agent_id, user_id, resource");
      }
      const kind: RevocationKind = ({ tokenId: "token_id", sessionId: "session_id", agentId: "agent_id", userId: "user_id", resource: "resource" } as const)[target.case];
      const value = validateId(kind, target.value);
      noteSubject(ctx, { target: { kind, value } });
      const reason = validateReason("reason", req.reason, "revoked");

      let session: SessionRecord | undefined;
      let entity: { type: string; id: string };
      switch (kind) {
        case "session_id":
          session = await loadSession(value);
          entity = { type: "Agent", id: session.agentId };
          break;
        case "agent_id":
          entity = { type: "Agent", id: value };
          break;
        case "user_id":
          entity = { type: "User", id: value };
          break;
        case "resource":
          entity = { type: "Resource", id: value };
          break;
        case "token_id":
          entity = { type: "Token", id: value };
          break;
      }
      const decision = requireAllowed(ctx, caller, "revoke", entity, { userId: session?.userId });

      const now = clock.now();
      // A rule must outlive everything it can match: tokens (max TTL) and the sessions
      // created before it, which it ends (session, agent, user) or whose grants it
      // withdraws (resource, token id) for the rest of their lives.
      const horizon = Math.max(limits.maxTokenTtlMs, limits.sessionMaxDurationMs);
      const revocation: Revocation = {
        id: newRevocationId(),
        kind,
        value,
        reason,
        revokedAt: now,
        expiresAt: now + horizon,
        by: `orchestrator:${caller.id}`,
      };
      await publish(revocation);
      if (session) await sessions.end(session.id, reason, now).catch(endNotStored(session.id));
      await appendOrFail(audit, {
        type: "token.revoked",
        caller: describePrincipal(caller),
        agent_id: session?.agentId ?? (kind === "agent_id" ? value : undefined),
        user_id: session?.userId ?? (kind === "user_id" ? value : undefined),
        session_id: session?.id,
        resource: kind === "resource" ? value : undefined,
        jti: kind === "token_id" ? value : undefined,
        target: { kind, value },
        reason,
        decision: "allow",
        policy_ids: decision.policyIds,
        details: { revocation_id: revocation.id },
        trace_id: callTraceId(ctx.values),
      }, "the revocation took effect but is not yet in the audit log; retrying is safe");
      return { revocationId: revocation.id, revokedAt: timestampFromMs(now) };
    },

    async endSession(req, ctx) {
      const caller = callerOf(ctx, "orchestrator", "session");
      contract.check(EndSessionRequestSchema, req);
      const sessionId = validateId("session_id", req.sessionId);
      noteSubject(ctx, { session_id: sessionId });
      const reason = validateReason("reason", req.reason, "ended");
      if (caller.kind === "session" && caller.id !== sessionId) {
        throw capvendError("WRONG_CALLER", "a session credential can only end its own session");
      }
      const session = await loadSession(sessionId);
      noteSubject(ctx, { agent_id: session.agentId, user_id: session.userId });
      const decision = caller.kind === "orchestrator" ? requireAllowed(ctx, caller, "end_session", { type: "Agent", id: session.agentId }, { userId: session.userId }) : undefined;
      if (session.endedAt !== undefined) {
        // Allowed, and nothing to do: still a decision on record.
        await appendOrFail(audit, {
          type: "session.ended",
          caller: describePrincipal(caller),
          agent_id: session.agentId,
          user_id: session.userId,
          session_id: session.id,
          reason: session.endReason,
          decision: "allow",
          policy_ids: decision?.policyIds,
          details: { already_ended: true },
          trace_id: callTraceId(ctx.values),
        }, "the session had ended already but this call is not in the audit log");
        return { endedAt: timestampFromMs(session.endedAt) };
      }

      const now = clock.now();
      // The revocation first: once it is stored, the session is over on every replica even
      // if the store update below fails.
      await publish({
        id: newRevocationId(),
        kind: "session_id",
        value: session.id,
        reason,
        revokedAt: now,
        expiresAt: Math.max(session.expiresAt, now),
        by: `${caller.kind}:${caller.id}`,
      });
      await sessions.end(session.id, reason, now).catch(endNotStored(session.id));
      await appendOrFail(audit, {
        type: "session.ended",
        caller: describePrincipal(caller),
        agent_id: session.agentId,
        user_id: session.userId,
        session_id: session.id,
        reason,
        decision: "allow",
        policy_ids: decision?.policyIds,
        trace_id: callTraceId(ctx.values),
      }, "the session ended but that is not yet in the audit log; retrying is safe");
      return { endedAt: timestampFromMs(now) };
    },

    async introspect(req, ctx) {
      const caller = callerOf(ctx, "orchestrator", "resource_server");
      // The contract's rules on the request are checked only once the caller may introspect.
      const outcome = await deps.introspection.introspect(caller, req.token, () => contract.check(IntrospectRequestSchema, req));
      const seen = outcome.claims;
      const about = seen
        ? {
            agent_id: seen.client_id,
            user_id: seen.sub.startsWith(USER_SUBJECT_PREFIX) ? seen.sub.slice(USER_SUBJECT_PREFIX.length) : undefined,
            session_id: seen.sid,
            resource: seen.aud,
            jti: seen.jti,
          }
        : {};
      if (seen) noteSubject(ctx, about);
      // Every answer is a decision on record, with why it was inactive (never told the caller).
      await appendOrFail(audit, {
        ...about,
        policy_ids: outcome.policyIds,
        exp: seen?.exp,
        type: "token.introspected",
        caller: describePrincipal(caller),
        decision: "allow",
        reason: outcome.active ? "active" : outcome.why,
        details: { active: outcome.active },
        trace_id: callTraceId(ctx.values),
      }, "no introspection answer was given");
      if (!outcome.active) return create(IntrospectResponseSchema, { active: false });
      const claims = outcome.claims;
      return create(IntrospectResponseSchema, {
        active: true,
        scope: claims.scope,
        clientId: claims.client_id,
        sub: claims.sub,
        aud: claims.aud,
        iss: claims.iss,
        jti: claims.jti,
        tokenType: "Bearer",
        exp: timestampFromMs(claims.exp * 1000),
        iat: timestampFromMs(claims.iat * 1000),
        nbf: timestampFromMs(claims.nbf * 1000),
        sid: claims.sid,
        actSub: claims.act?.sub ?? `${AGENT_SUBJECT_PREFIX}${claims.client_id}`,
      });
    },
  };
}

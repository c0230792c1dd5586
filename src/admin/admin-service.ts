import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { AuditSink } from "../audit/sink.js";
import { callerOf, describePrincipal, type Principal } from "../auth/principal.js";
import type { Clock } from "../clock.js";
import { capvendError } from "../errors.js";
import {
  GetSessionResponseSchema,
  ListSessionsResponseSchema,
  SessionSchema,
  StreamSchema,
  type AdminService,
  type Session,
  type Stream,
} from "../gen/capvend/admin/v1/admin_pb.js";
import type { KeyRotation } from "../keys/rotate.js";
import type { ReplicaPolicyStatus, SessionRecord, SessionStore } from "../backends/types.js";
import type { PolicyEngine } from "../policy/engine.js";
import { callerRequest, explainDenial, type AdminAction, type PolicyDecider } from "../policy/requests.js";
import { validateId } from "../service/validate.js";
import type { WatchStream } from "../streams/watch-stream.js";
import { decodePageToken, encodePageToken } from "./page-token.js";

/** ListSessions page size when the request names none. */
export const DEFAULT_PAGE_SIZE = 50;
/** The largest page ListSessions serves. */
export const MAX_PAGE_SIZE = 500;

/** What the admin service needs; each piece is a narrow view of a replica part. */
export interface AdminServiceDeps {
  clock: Clock;
  /** This replica's id (CAPVEND_REPLICA_ID). */
  replica: string;
  policy: PolicyDecider;
  sessions: SessionStore;
  audit: Pick<AuditSink, "append">;
  /** This replica's open streams of a session. */
  streamsOf(sessionId: string): WatchStream[];
  /** Streams of a session held on other replicas (NATS); absent with one replica. */
  remoteStreams?(sessionId: string): Promise<{ streams: Stream[]; unanswered: string[] }>;
  /** The policy engine (reload, version). */
  engine?: Pick<PolicyEngine, "reload" | "state">;
  /** Every replica's policy report (NATS); absent with one replica. */
  policyStatuses?(): Promise<ReplicaPolicyStatus[]>;
  /** Rotates this replica's signing key with the publish delay; absent when keys come from files. */
  rotateKey?(): Promise<KeyRotation>;
}

/** capvend.admin.v1.AdminService, independent of the transport. */
export function createAdminService(deps: AdminServiceDeps): ServiceImpl<typeof AdminService> {
  const { clock, sessions } = deps;

  /** Orchestrators only, and only for the admin actions their policy permits. */
  function authorize(ctx: HandlerContext, action: AdminAction, context: { userId?: string } = {}): { caller: Principal; policyIds: string[] } {
    const caller = callerOf(ctx, "orchestrator");
    const d = deps.policy.authorize(callerRequest(caller, action, { type: "Capvend", id: "admin" }, context));
    if (!d.allowed) throw capvendError("ACTION_DENIED", `orchestrator "${caller.id}" may not ${action}: ${explainDenial(d)}`);
    return { caller, policyIds: d.policyIds };
  }

  async function audited(ctx: HandlerContext, action: AdminAction, auth: { caller: Principal; policyIds: string[] }, details: Record<string, string | number | boolean> = {}, extra: { session_id?: string } = {}): Promise<void> {
    try {
      await deps.audit.append({ type: "admin.called", caller: describePrincipal(auth.caller), decision: "allow", policy_ids: auth.policyIds, ...extra, details: { action, replica: deps.replica, ...details } });
    } catch (err) {
      throw capvendError("AUDIT_UNAVAILABLE", "the audit log is unavailable, so the call was not made; retry later", {}, err);
    }
  }

  async function loadSession(id: string): Promise<SessionRecord> {
    let s: SessionRecord | undefined;
    try {
      s = await sessions.get(id);
    } catch (err) {
      throw capvendError("SESSION_STORE_UNAVAILABLE", "the session store is unavailable; retry", {}, err);
    }
    if (!s) throw capvendError("SESSION_NOT_FOUND", `session_id: no session "${id}"`, { field: "session_id", sessionId: id });
    return s;
  }

  return {
    async listSessions(req, ctx) {
      const auth = authorize(ctx, "admin.list_sessions");
      if (req.pageSize < 0 || req.pageSize > MAX_PAGE_SIZE) {
        throw capvendError("INVALID_ARGUMENT", `page_size: must be from 0 to ${MAX_PAGE_SIZE}`, { field: "page_size" });
      }
      const filter = {
        agentId: req.agentId === "" ? undefined : validateId("agent_id", req.agentId),
        userId: req.userId === "" ? undefined : validateId("user_id", req.userId),
        resource: req.resource === "" ? undefined : validateId("resource", req.resource),
        includeEnded: req.includeEnded,
      };
      const afterId = req.pageToken === "" ? undefined : decodePageToken(req.pageToken, filter);
      if (!sessions.list) throw capvendError("INTERNAL", "this session store cannot list sessions");
      const now = clock.now();
      const size = req.pageSize || DEFAULT_PAGE_SIZE;
      let page: SessionRecord[];
      try {
        page = await sessions.list({
          afterId,
          // One more than the page: tells whether there is a next page.
          limit: size + 1,
          match: (r) =>
            (filter.agentId === undefined || r.agentId === filter.agentId) &&
            (filter.userId === undefined || r.userId === filter.userId) &&
            (filter.resource === undefined || r.grants.some((g) => g.resource === filter.resource)) &&
            (filter.includeEnded || (r.endedAt === undefined && r.expiresAt > now)),
        });
      } catch (err) {
        throw capvendError("SESSION_STORE_UNAVAILABLE", "the session store is unavailable; retry", {}, err);
      }
      const more = page.length > size;
      const shown = page.slice(0, size);
      await audited(ctx, "admin.list_sessions", auth, { returned: shown.length });
      return create(ListSessionsResponseSchema, {
        sessions: shown.map(sessionMessage),
        nextPageToken: more ? encodePageToken(shown.at(-1)!.id, filter) : "",
      });
    },

    async getSession(req, ctx) {
      const auth = authorize(ctx, "admin.get_session");
      const id = validateId("session_id", req.sessionId);
      const session = await loadSession(id);
      const now = clock.now();
      const local = deps.streamsOf(id).map((s) => streamMessage(deps.replica, s, now));
      const remote = deps.remoteStreams ? await deps.remoteStreams(id) : { streams: [], unanswered: [] };
      await audited(ctx, "admin.get_session", auth, {}, { session_id: id });
      return create(GetSessionResponseSchema, { session: sessionMessage(session), streams: [...local, ...remote.streams], unansweredReplicas: remote.unanswered });
    },

    async rotateKeys(_req, ctx) {
      const auth = authorize(ctx, "admin.rotate_keys");
      if (!deps.rotateKey) throw capvendError("INTERNAL", "this replica signs with CAPVEND_SIGNING_KEY_FILES: rotate by changing the files");
      await audited(ctx, "admin.rotate_keys", auth);
      let r: KeyRotation;
      try {
        r = await deps.rotateKey();
      } catch (err) {
        throw capvendError("INTERNAL", "the key rotation failed; the current key keeps signing", {}, err);
      }
      return { replica: deps.replica, kid: r.kid, retiredKid: r.retired, activatesAt: timestampFromMs(r.activatesAt) };
    },

    async reloadPolicy(_req, ctx) {
      const auth = authorize(ctx, "admin.reload_policy");
      if (!deps.engine) throw capvendError("INTERNAL", "this replica's policy cannot be reloaded");
      await audited(ctx, "admin.reload_policy", auth);
      const r = await deps.engine.reload();
      return r.ok
        ? { replica: deps.replica, policyVersion: r.policyVersion, changed: r.changed, error: "" }
        : { replica: deps.replica, policyVersion: deps.engine.state.policyVersion, changed: false, error: r.error.message };
    },

    async policyStatus(_req, ctx) {
      const auth = authorize(ctx, "admin.policy_status");
      let statuses: ReplicaPolicyStatus[];
      if (deps.policyStatuses) {
        try {
          statuses = await deps.policyStatuses();
        } catch (err) {
          throw capvendError("SESSION_STORE_UNAVAILABLE", "the policy status bucket is unavailable; retry", {}, err);
        }
      } else {
        const s = deps.engine?.state;
        statuses = s ? [{ replica: deps.replica, policy_version: s.policyVersion, origin: s.origin, loaded_at_ms: s.loadedAt, ...(s.lastError ? { last_error: s.lastError } : {}), reported_at_ms: clock.now() }] : [];
      }
      await audited(ctx, "admin.policy_status", auth);
      return {
        replicas: statuses.map((s) => ({
          replica: s.replica,
          policyVersion: s.policy_version,
          origin: s.origin,
          loadedAt: timestampFromMs(s.loaded_at_ms),
          lastError: s.last_error ?? "",
          reportedAt: timestampFromMs(s.reported_at_ms),
        })),
        converged: new Set(statuses.map((s) => s.policy_version)).size <= 1,
      };
    },
  };
}

function sessionMessage(r: SessionRecord): Session {
  return create(SessionSchema, {
    sessionId: r.id,
    agentId: r.agentId,
    userId: r.userId ?? "",
    grants: r.grants.map((g) => ({ resource: g.resource, scopes: g.scopes, ttl: g.ttlMs === undefined ? undefined : durationFromMs(g.ttlMs) })),
    labels: { ...r.labels },
    startedBy: r.startedBy,
    createdAt: timestampFromMs(r.createdAt),
    expiresAt: timestampFromMs(r.expiresAt),
    endedAt: r.endedAt === undefined ? undefined : timestampFromMs(r.endedAt),
    endReason: r.endReason ?? "",
  });
}

/** A stream as GetSession shows it: grants, and live tokens by id and expiry only. */
export function streamMessage(replica: string, s: WatchStream, now: number): Stream {
  const live = new Map(s.liveGrants(now).map((g) => [g.index, g]));
  return create(StreamSchema, {
    replica,
    streamId: BigInt(s.id),
    state: s.state,
    grants: s.grants.map((grant, index) => {
      const g = live.get(index);
      return {
        grantIndex: index,
        resource: grant.resource,
        scopes: grant.scopes,
        live: g !== undefined,
        tokens: (g?.tokens ?? []).map((t) => ({ tokenId: t.jti, expiresAt: timestampFromMs(t.expiresAtMs) })),
      };
    }),
  });
}

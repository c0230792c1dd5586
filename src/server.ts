import type { AddressInfo } from "node:net";
import { createContextValues } from "@connectrpc/connect";
import type { AuditSink } from "./audit/sink.js";
import { createDecisionLog } from "./audit/decision-log.js";
import { authInterceptor } from "./auth/auth-interceptor.js";
import { auditInterceptor } from "./service/audit-interceptor.js";
import { createAuthenticator } from "./auth/authenticator.js";
import type { Clock } from "./clock.js";
import { type Config, DEFAULT_KEY_PUBLISH_DELAY_MS } from "./config/config.js";
import { VendingService } from "./gen/capvend/v1/vending_pb.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "./gen/grpc/health/v1/health_pb.js";
import { createHealthService, type HealthService } from "./health/health-service.js";
import { jwksMaxAgeSeconds, wellKnownRoutes } from "./http/well-known.js";
import { healthRoutes } from "./http/health-endpoints.js";
import { introspectRoute } from "./http/introspect-endpoint.js";
import { metricsRoute, type MetricsSource } from "./http/metrics-endpoint.js";
import type { Jwks, KeyRing } from "./keys/key-ring.js";
import { errorInterceptor } from "./logging/error-interceptor.js";
import type { Logger } from "./logging/logger.js";
import type { ReplicaPolicyStatus, ReplicaQueries, RevocationList, SessionStore } from "./backends/types.js";
import { cacheDecisions, type VersionedDecider } from "./policy/decision-cache.js";
import { routes } from "./routes.js";
import { createAdminService } from "./admin/admin-service.js";
import { shareStreams } from "./admin/remote-streams.js";
import { rotateWithPublishDelay, type KeyRotation } from "./keys/rotate.js";
import { createIntrospection } from "./service/introspection.js";
import { createIssuer } from "./service/issuer.js";
import type { PolicyDecider } from "./policy/requests.js";
import { createVendingService } from "./service/vending-service.js";
import { streamTokens } from "./service/watch-session.js";
import { publishOrFail } from "./service/revocation-publisher.js";
import { nodeRequestKey, resetStream } from "./transport/reset-stream.js";
import { StreamHub, type StreamHubView } from "./streams/stream-hub.js";
import { AUDIT_HEALTH_SERVICE, POLICY_HEALTH_SERVICE } from "./telemetry/attributes.js";
import { PolicyDrift, type DriftReport } from "./streams/policy-drift.js";
import type { PolicyEngine } from "./policy/engine.js";
import { stampPolicyVersion } from "./audit/policy-version-stamp.js";
import { globalTelemetry, type Telemetry } from "./telemetry/telemetry.js";
import { createMinter } from "./tokens/mint.js";
import { createVerifier } from "./tokens/verify.js";
import { createTransportServer, type TransportServer } from "./transport/transport-server.js";

/** The settings the server itself uses (the rest of Config is for main). */
export type ServerSettings = Pick<
  Config,
  | "issuer"
  | "tokenTtlMs"
  | "maxTokenTtlMs"
  | "renewLeadMs"
  | "sessionMaxDurationMs"
  | "heartbeatIntervalMs"
  | "streamStallTimeoutMs"
  | "shutdownGraceMs"
  | "maxMessageBytes"
  | "oidc"
  | "resourceServerHashes"
  | "keyPublishDelayMs"
  | "replicaId"
  | "resourceServerAudiences"
  | "maxSessionsPerOrchestrator"
> &
  Partial<Pick<Config, "limits">>;

/** Everything a replica is built from. Swap any part (memory or NATS) without touching the services. */
export interface CapvendServerDeps {
  settings: ServerSettings;
  clock: Clock;
  logger: Logger;
  /** Orchestrator id → sha256 hex of its bearer token (including `dev` from CAPVEND_ORCHESTRATOR_TOKEN). */
  orchestratorHashes: ReadonlyMap<string, string>;
  /**
   * Decides every request. When it is a PolicyEngine (it has `state` and `subscribe`), the
   * server also follows its reloads: live grants are re-evaluated after each change, its
   * version is stamped on audit records, and its health is reported as "capvend.policy".
   */
  policy: PolicyDecider | PolicyEngine;
  keyRing: KeyRing;
  /**
   * JWKS to serve and verify with, and when each key stopped signing; default this
   * replica's key ring (with NATS: every replica's keys).
   */
  publicKeys?: { jwks(): Jwks; retiredAt?(kid: string): number | undefined };
  sessions: SessionStore;
  revocations: RevocationList;
  audit: AuditSink;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Rotates this replica's signing key with the publish delay (AdminService.RotateKeys); absent: RotateKeys fails. */
  rotateKey?: () => Promise<KeyRotation>;
  /** Questions to the other replicas (NATS), for AdminService.GetSession's remote streams; absent: this replica's streams alone. */
  replicaQueries?: ReplicaQueries;
  /** Every replica's policy report (NATS), for AdminService.PolicyStatus; absent: this replica's alone. */
  policyStatuses?: () => Promise<ReplicaPolicyStatus[]>;
  /** Serves `GET /metrics` on the main port (the OpenTelemetry PrometheusExporter); absent: no endpoint. */
  metrics?: MetricsSource;
  /** Jitter source for renewals; Math.random by default. */
  random?: () => number;
  /**
   * Spans and metrics (see src/telemetry). Default: the global OpenTelemetry API, a no-op
   * unless the embedding application registered providers. The server never shuts it down:
   * whoever built it does, after `close()`.
   */
  telemetry?: Telemetry;
}

/** One capvend replica's RPC and HTTP surface, built but not yet listening. */
export interface CapvendServer {
  /** This replica's WatchSession streams: counts, drain, policy re-evaluation. */
  readonly hub: StreamHubView;
  /** This replica's id (CAPVEND_REPLICA_ID). */
  readonly replica: string;
  readonly health: HealthService;
  readonly transport: TransportServer;
  listen(host: string, port: number): Promise<AddressInfo>;
  /** Reports a sub-service's health (e.g. "capvend.revocation") through grpc.health.v1. */
  setHealth(service: string, serving: boolean): void;
  /**
   * Graceful stop: health turns NOT_SERVING, every stream is told to reconnect and ends with
   * UNAVAILABLE, in-flight calls get up to `graceMs` to finish. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

/** Builds a replica's server from its parts. Only main.ts reads config and listens for real. */
export async function createCapvendServer(deps: CapvendServerDeps): Promise<CapvendServer> {
  const { settings, clock, logger, keyRing } = deps;
  const telemetry = deps.telemetry ?? globalTelemetry();
  const engine = isPolicyEngine(deps.policy) ? deps.policy : undefined;
  // Filled in below, once the health service exists; the sink cannot flip before a call.
  let reportAuditHealth = (_healthy: boolean) => {};
  const audit = telemetry.wrapAudit(engine ? stampPolicyVersion(deps.audit, () => engine.state.policyVersion) : deps.audit, (healthy, state) => {
    reportAuditHealth(healthy);
    if (healthy) logger.info("audit sink healthy again");
    else logger.error({ error: state.lastError, pending: state.pending }, "audit sink unhealthy: issuance fails closed until it recovers");
  });
  // Decisions are remembered per policy version when the decider says which version it runs;
  // the span of each decision still names the policy version (content hash) in force.
  const cached = isVersioned(deps.policy) ? cacheDecisions(deps.policy) : undefined;
  const decider: PolicyDecider = cached
    ? { authorize: (req) => cached.authorize(req), ...(engine ? { get state() { return engine.state; } } : {}) }
    : deps.policy;
  const policy = telemetry.wrapPolicy(decider);
  // Policy drift stores its revocations as they are: a failure is logged, nobody is answered.
  const driftPublisher = telemetry.wrapPublisher(deps.revocations);
  const drift = engine
    ? new PolicyDrift({
        clock,
        policy,
        policyVersion: () => engine.state.policyVersion,
        defaultTtlMs: settings.tokenTtlMs,
        maxTtlMs: settings.maxTokenTtlMs,
        async revoke(revocation, event) {
          await driftPublisher.publish(revocation);
          // The revocation is in force; a missing audit record is reported, not undone.
          await audit.append(event).catch((err) => logger.error({ err, revocation_id: revocation.id }, "audit append failed for a policy revocation"));
        },
        onError: (err, what) => logger.error({ err }, `${what} failed; the grant was stopped on this replica only`),
      })
    : undefined;
  const minter = telemetry.wrapMinter(createMinter({ keyRing, issuer: settings.issuer, clock }));
  const publicKeys = deps.publicKeys ?? keyRing;
  const verifier = createVerifier({ keyRing: publicKeys, issuer: settings.issuer, clock });
  const issuer = telemetry.wrapIssuer(
    createIssuer({
      clock,
      policy,
      minter,
      audit,
      revocations: deps.revocations,
      defaultTtlMs: settings.tokenTtlMs,
      maxTtlMs: settings.maxTokenTtlMs,
    }),
  );
  const hub = new StreamHub({
    clock,
    tokens: telemetry.wrapStreamTokens(streamTokens(issuer)),
    revocations: deps.revocations,
    audit,
    renewLeadMs: settings.renewLeadMs,
    heartbeatIntervalMs: settings.heartbeatIntervalMs,
    stallTimeoutMs: settings.streamStallTimeoutMs,
    maxStreamsPerSession: settings.limits?.maxStreamsPerSession,
    maxStreams: settings.limits?.maxStreams,
    random: deps.random,
    drift,
    events: telemetry.wrapStreamEvents({
      slowReader: (e) => logger.warn({ session_id: e.sessionId, stream_id: e.streamId }, "slow reader disconnected"),
      renewalFailed: (e) => logger.warn({ session_id: e.sessionId, stream_id: e.streamId, retry_in_ms: e.retryInMs, err: e.error }, "renewal failed; retrying"),
      auditFailed: (e) => logger.warn({ session_id: e.sessionId, stream_id: e.streamId, err: e.error }, "audit append failed"),
      driftError: (err) => logger.error({ err }, "revoking a grant the policy no longer allows failed"),
    }),
  });
  const introspection = createIntrospection({
    clock,
    sessions: deps.sessions,
    revocations: deps.revocations,
    policy,
    verifier,
    keyRetiredAt: (kid) => (publicKeys.retiredAt ? publicKeys.retiredAt(kid) : keyRing.retiredAt(kid)),
    maxTokenTtlMs: settings.maxTokenTtlMs,
    resourceServerAudiences: settings.resourceServerAudiences ?? new Map(),
  });
  const vending = createVendingService({
    clock,
    sessions: deps.sessions,
    revocations: deps.revocations,
    policy,
    issuer,
    introspection,
    audit,
    logger,
    limits: { maxTokenTtlMs: settings.maxTokenTtlMs, sessionMaxDurationMs: settings.sessionMaxDurationMs, tokenTtlMs: settings.tokenTtlMs, maxSessionsPerOrchestrator: settings.maxSessionsPerOrchestrator },
    streams: { assertOpen: () => hub.assertOpen(), open: (opening, ctx) => hub.open(opening, ctx, () => resetStream(ctx)) },
    publisher: telemetry.wrapPublisher(publishOrFail(deps.revocations)),
  });
  const authenticator = await createAuthenticator({
    clock,
    sessions: deps.sessions,
    revocations: deps.revocations,
    orchestratorHashes: deps.orchestratorHashes,
    resourceServerHashes: settings.resourceServerHashes,
    oidc: settings.oidc,
  });
  const decisions = createDecisionLog({
    audit,
    clock,
    onError: (err, type) => logger.error({ err, type }, "audit append failed for a refused call"),
    onRecord: (e) =>
      logger.warn(
        { audit_event: e.type, reason: e.reason, caller: e.caller, session_id: e.session_id, agent_id: e.agent_id, ...e.details },
        e.type.startsWith("auth.failed") ? "authentication failed" : "call refused",
      ),
  });
  const health = createHealthService();
  let unsubscribePolicy = () => {};
  if (engine) {
    health.setStatus(POLICY_HEALTH_SERVICE, ServingStatus.SERVING);
    unsubscribePolicy = engine.subscribe((e) => {
      health.setStatus(POLICY_HEALTH_SERVICE, e.ok ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
      const origin = engine.state.origin;
      if (e.ok) logger.info({ policy_version: e.policyVersion, previous_policy_version: e.previousPolicyVersion, generation: e.version, origin }, "policy reloaded");
      else logger.error({ policy_version: e.policyVersion, origin, error: e.error?.message }, "policy reload failed; the previous policies stay in force");
      void audit
        .append({
          type: "policy.reloaded",
          caller: { kind: "system", id: "policy" },
          decision: e.ok ? "allow" : "deny",
          reason: e.ok ? undefined : e.error?.message,
          policy_version: e.policyVersion,
          details: { generation: e.version, origin, ...(e.previousPolicyVersion ? { previous_policy_version: e.previousPolicyVersion } : {}) },
        })
        .catch((err) => logger.error({ err }, "audit append failed for policy.reloaded"));
      if (!e.ok || e.policyVersion === e.previousPolicyVersion) return;
      hub.reevaluatePolicy().then(
        (report) => report && logDrift(logger, report),
        (err) => logger.error({ err }, "re-evaluating live grants after a policy change failed"),
      );
    });
  }
  reportAuditHealth = (healthy) => health.setStatus(AUDIT_HEALTH_SERVICE, healthy ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  const sharedStreams =
    deps.replicaQueries && shareStreams({ queries: deps.replicaQueries, replica: settings.replicaId ?? "capvend", streamsOf: (id) => hub.streamsOf(id), clock, logger });
  const transport = createTransportServer({
    routes: routes(
      vending,
      health,
      createAdminService({
        clock,
        replica: settings.replicaId ?? "capvend",
        policy,
        sessions: deps.sessions,
        audit,
        streamsOf: (id) => hub.streamsOf(id),
        remoteStreams: sharedStreams?.remoteStreams,
        engine,
        policyStatuses: deps.policyStatuses,
        rotateKey: deps.rotateKey ?? (() => rotateWithPublishDelay(keyRing, { clock, publishDelayMs: settings.keyPublishDelayMs ?? DEFAULT_KEY_PUBLISH_DELAY_MS })),
      }),
    ),
    httpRoutes: [
      ...wellKnownRoutes({ issuer: settings.issuer, jwks: () => publicKeys.jwks(), jwksMaxAgeSeconds: jwksMaxAgeSeconds(settings.keyPublishDelayMs ?? DEFAULT_KEY_PUBLISH_DELAY_MS) }),
      introspectRoute({ authenticator, introspect: vending.introspect }),
      ...healthRoutes({ health, policy: engine ? () => engine.state : undefined }),
      ...(deps.metrics ? [metricsRoute(deps.metrics)] : []),
    ],
    // Tracing outermost: a call refused by authentication still has its span.
    // Audit before auth: it reads the principal auth sets, and auth records its own refusals.
    interceptors: [telemetry.interceptor, errorInterceptor(logger), auditInterceptor(decisions), authInterceptor(authenticator, decisions)],
    tls: deps.tls,
    readMaxBytes: settings.maxMessageBytes,
    firstBytesTimeoutMs: settings.limits?.handshakeTimeoutMs,
    http1HeadersTimeoutMs: settings.limits?.headersTimeoutMs,
    limits: {
      ...(settings.limits && {
        maxConnections: settings.limits.maxConnections,
        maxConnectionsPerAddress: settings.limits.maxConnectionsPerAddress,
        idleTimeoutMs: settings.limits.idleTimeoutMs,
        firstRequestTimeoutMs: settings.limits.firstRequestTimeoutMs,
        maxConcurrentStreams: settings.limits.maxConcurrentStreams,
        maxUnauthenticatedStreams: settings.limits.maxUnauthenticatedStreams,
        maxResetsPerSecond: settings.limits.maxResetsPerSecond,
      }),
      streamStallTimeoutMs: settings.streamStallTimeoutMs,
    },
    contextValues: (req) => createContextValues().set(nodeRequestKey, req),
    clock,
    onError: (err, context) => logger.error({ err, context }, "transport error"),
  });

  let closing: Promise<void> | undefined;
  return {
    hub,
    replica: settings.replicaId ?? "capvend",
    health,
    transport,
    async listen(host, port) {
      const address = await transport.listen(host, port);
      health.setStatus("", ServingStatus.SERVING);
      health.setStatus(VendingService.typeName, ServingStatus.SERVING);
      reportAuditHealth(audit.state.healthy);
      return address;
    },
    setHealth(service, serving) {
      health.setStatus(service, serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    },
    close(graceMs = settings.shutdownGraceMs) {
      closing ??= (async () => {
        unsubscribePolicy();
        sharedStreams?.stop();
        health.shutdown();
        hub.drain("server shutting down");
        await transport.close(graceMs);
        hub.close();
        await decisions.close();
      })();
      return closing;
    },
  };
}

function isPolicyEngine(p: PolicyDecider | PolicyEngine): p is PolicyEngine {
  return typeof (p as Partial<PolicyEngine>).subscribe === "function" && typeof (p as Partial<PolicyEngine>).state === "object";
}

function logDrift(logger: Logger, r: DriftReport): void {
  const fields = {
    policy_version: r.policyVersion,
    streams: r.streams,
    grants: r.grants,
    revoked_grants: r.revokedGrants,
    revoked_tokens: r.revokedTokens,
    failed: r.failed,
    duration_ms: Math.round(r.durationMs * 10) / 10,
  };
  if (r.failed > 0) logger.error(fields, "live grants re-evaluated under the new policy; some revocations could not be stored");
  else logger.info(fields, "live grants re-evaluated under the new policy");
}

function isVersioned(decider: PolicyDecider): decider is PolicyDecider & VersionedDecider {
  const state = (decider as Partial<VersionedDecider>).state;
  return typeof state?.version === "number";
}

/**
 * Names of every span attribute, span and instrument capvend emits, in one place so the docs,
 * the tests and the code cannot drift apart.
 *
 * The `rpc.*`, `session.id` and `enduser.id` names are incubating in semantic-conventions
 * 1.45; they are copied here rather than imported from its `/incubating` entry point, which
 * may change in a minor release (the package's own advice).
 */
import { ATTR_ERROR_TYPE, ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";

export { ATTR_ERROR_TYPE, ATTR_SERVICE_NAME };

/** The replica id (incubating in semantic-conventions 1.45). */
export const ATTR_SERVICE_INSTANCE_ID = "service.instance.id";

/** "grpc" or "connect_rpc", from the request's content type. */
export const ATTR_RPC_SYSTEM = "rpc.system";
export const ATTR_RPC_SERVICE = "rpc.service";
export const ATTR_RPC_METHOD = "rpc.method";
/** Numeric gRPC status code (0 OK); Connect codes share the numbering. */
export const ATTR_RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code";
/** The Connect protocol's error code as a string ("permission_denied"), on failed Connect calls. */
export const ATTR_RPC_CONNECT_RPC_ERROR_CODE = "rpc.connect_rpc.error_code";
export const RPC_SYSTEM_GRPC = "grpc";
export const RPC_SYSTEM_CONNECT_RPC = "connect_rpc";

export const ATTR_SESSION_ID = "session.id";
/** The user the agent acts for. */
export const ATTR_ENDUSER_ID = "enduser.id";

export const ATTR_AGENT_ID = "capvend.agent.id";
/** "orchestrator", "session" or "resource_server": who authenticated the call. */
export const ATTR_CALLER_KIND = "capvend.caller.kind";
/** Orchestrator or resource-server id (a session caller is `session.id`). */
export const ATTR_CALLER_ID = "capvend.caller.id";
/** The stable reason of a failed call (ErrorInfo.reason, a capvend.v1.ErrorReason name), e.g. "SCOPE_DENIED". */
export const ATTR_ERROR_REASON = "capvend.error.reason";
export const ATTR_RESOURCE = "capvend.resource";
export const ATTR_TOKEN_SCOPES = "capvend.token.scopes";
/** The token's `jti`: the only way a token is ever named. */
export const ATTR_TOKEN_ID = "capvend.token.id";
/** Token expiry, ISO 8601. */
export const ATTR_TOKEN_EXPIRES_AT = "capvend.token.expires_at";
/** "issued" or "renewed". */
export const ATTR_ISSUE_KIND = "capvend.issue.kind";
/** "issued", "denied" or "error". */
export const ATTR_ISSUE_OUTCOME = "capvend.issue.outcome";
export const ATTR_POLICY_DECISION = "capvend.policy.decision";
export const ATTR_POLICY_IDS = "capvend.policy.ids";
export const ATTR_POLICY_PRINCIPAL = "capvend.policy.principal";
export const ATTR_POLICY_ACTION = "capvend.policy.action";
/** The Cedar resource entity when it is not a `Resource` (e.g. `Agent::"sales-bot"`). */
export const ATTR_POLICY_ENTITY = "capvend.policy.entity";
export const ATTR_STREAM_ID = "capvend.stream.id";
/** Introspect's answer: whether the token is active. */
export const ATTR_INTROSPECT_ACTIVE = "capvend.introspect.active";
export const ATTR_AUDIT_EVENT = "capvend.audit.event";
/** "ok" or "failed". */
export const ATTR_AUDIT_OUTCOME = "capvend.audit.outcome";
export const ATTR_REVOCATION_ID = "capvend.revocation.id";
export const ATTR_REVOCATION_KIND = "capvend.revocation.kind";
export const ATTR_REVOCATION_VALUE = "capvend.revocation.value";
export const ATTR_REVOCATION_REASON = "capvend.revocation.reason";

/** Span names of the work inside an RPC (the RPC spans are named `<service>/<Method>`). */
export const SPAN_ISSUE = "capvend.issue";
export const SPAN_RENEW = "capvend.renew";
export const SPAN_POLICY = "capvend.policy.evaluate";
export const SPAN_MINT = "capvend.token.mint";
export const SPAN_AUDIT = "capvend.audit.append";
export const SPAN_REVOCATION_PUBLISH = "capvend.revocation.publish";

/** Instrument names. Durations are in seconds, as the semantic conventions ask. */
export const METRIC_TOKENS_ISSUED = "capvend.tokens.issued";
export const METRIC_TOKENS_RENEWED = "capvend.tokens.renewed";
export const METRIC_TOKENS_DENIED = "capvend.tokens.denied";
export const METRIC_TOKENS_REVOKED = "capvend.tokens.revoked";
export const METRIC_STREAMS_ACTIVE = "capvend.streams.active";
export const METRIC_ISSUANCE_DURATION = "capvend.issuance.duration";
export const METRIC_REVOCATION_DELIVERY = "capvend.revocation.delivery.duration";
export const METRIC_AUDIT_DURATION = "capvend.audit.append.duration";
export const METRIC_AUDIT_FAILURES = "capvend.audit.failures";

/** The instrumentation scope of every tracer and meter capvend creates. */
export const INSTRUMENTATION_SCOPE = "capvend";

/** grpc.health.v1 service name that reports the audit sink's health. */
export const AUDIT_HEALTH_SERVICE = "capvend.audit";

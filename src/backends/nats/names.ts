/**
 * The names capvend gives its JetStream streams, subjects and KV buckets. Subjects and the
 * revocation stream are a public interface (resource servers may subscribe): change them
 * only with a migration note in docs/operations.md.
 */

/** JetStream stream holding every revocation, in feed order (its sequence is the feed position). */
export const REVOCATION_STREAM = "CAPVEND_REVOCATIONS";

/** Revocations are published on `capvend.revocations.<kind>` (kind: token_id, session_id, agent_id, user_id, resource). */
export const REVOCATION_SUBJECT_PREFIX = "capvend.revocations";

/** JetStream stream holding audit events from every replica. */
export const AUDIT_STREAM = "CAPVEND_AUDIT";

/** Audit events are published on `capvend.audit.<event type>`, e.g. `capvend.audit.token.issued`. */
export const AUDIT_SUBJECT_PREFIX = "capvend.audit";

/** KV bucket of session records (key: session id; value: the record, credential as sha256 only). */
export const SESSION_BUCKET = "capvend_sessions";

/** KV bucket of every replica's public signing keys (key: kid; value: the public JWK and who published it). */
export const KEY_BUCKET = "capvend_keys";

/** Health service names reported through grpc.health.v1 while NATS is configured. */
export const REVOCATION_HEALTH_SERVICE = "capvend.revocation";
export const SESSIONS_HEALTH_SERVICE = "capvend.sessions";

/** KV bucket of the policy set every replica runs (key `set`: the files and their version), pushed by `capvend policy push`. */
export const POLICY_BUCKET = "capvend_policy";

/** KV bucket where each replica reports the policy version it runs (key: the replica id). */
export const POLICY_STATUS_BUCKET = "capvend_policy_status";

/**
 * Replicas ask each other about state only a replica's memory holds (its open streams) with
 * core NATS request/reply on `capvend.replicas.<topic>`; every replica answers.
 */
export const REPLICA_QUERY_SUBJECT_PREFIX = "capvend.replicas";

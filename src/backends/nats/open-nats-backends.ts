import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Backends, BackendOptions } from "../types.js";
import type { NatsSettings } from "../../config/config.js";
import { natsConnectionOptions } from "./connection-options.js";
import { checkpointSubject, encodeCheckpoint } from "../../audit/nats-anchor.js";
import { describeNatsError } from "./deadline.js";
import { ensureBucket, ensureKvWithLeader, ensureStream } from "./jetstream-setup.js";
import { createJetStreamAuditSink, type JetStreamAuditSink } from "./jetstream-audit-sink.js";
import { keyBucketTtlMs, openKeyDirectory, type KeyDirectory } from "./key-directory.js";
import { openKvSessionStore, type KvSessionStore, type KvSessionStoreStats } from "./kv-session-store.js";
import { NatsLink } from "./link-state.js";
import { KvPolicySource, openPolicyBucket, openPolicyStatusBucket, readPolicyStatuses, reportPolicyStatus } from "./kv-policy.js";
import { AUDIT_STREAM, AUDIT_SUBJECT_PREFIX, KEY_BUCKET, POLICY_BUCKET, POLICY_STATUS_BUCKET, REVOCATION_STREAM, REVOCATION_SUBJECT_PREFIX, SESSION_BUCKET } from "./names.js";
import { NatsHealth } from "./nats-health.js";
import { createReplicaQueries } from "./replica-queries.js";
import { openNatsRevocationList, type NatsRevocationList, type NatsRevocationListStats } from "./nats-revocation-list.js";
import { retryStartup, startupRetry } from "./startup-retry.js";

/**
 * Slack added to the revocation stream's max age and the session bucket's TTL beyond what
 * their contents must outlive, for clock skew between replicas: 10 min.
 */
export const RETENTION_MARGIN_MS = 10 * 60 * 1000;
/** Default max age of the audit stream: 30 days (operators may change it on the stream). */
export const DEFAULT_AUDIT_STREAM_MAX_AGE_MS = 30 * 24 * 60 * 60 * 1000;
/** JetStream replicas when CAPVEND_NATS_REPLICAS is unset and the server is part of a cluster. */
export const CLUSTER_DEFAULT_REPLICAS = 3;

/**
 * How long the revocation stream keeps a message: as long as it can still match something.
 * Token and resource rules must outlive every token (max token TTL); session, agent and user
 * rules must outlive every session, so the stream keeps the longer of the two, plus margin.
 */
export function revocationStreamMaxAgeMs(limits: { maxTokenTtlMs: number; sessionMaxDurationMs: number }): number {
  return Math.max(limits.maxTokenTtlMs, limits.sessionMaxDurationMs) + RETENTION_MARGIN_MS;
}

/** How long the session bucket keeps a record after its last write: the longest session, plus margin. */
export function sessionBucketTtlMs(limits: { sessionMaxDurationMs: number }): number {
  return limits.sessionMaxDurationMs + RETENTION_MARGIN_MS;
}

/** The NATS backends, with what operators and tests may inspect. */
export interface NatsBackends extends Backends {
  readonly connection: NatsConnection;
  readonly revocations: NatsRevocationList;
  readonly sessions: KvSessionStore;
  readonly publicKeys: KeyDirectory;
  readonly auditSink: JetStreamAuditSink;
  /** Current health by service name. */
  health(): Record<string, boolean>;
  stats(): { connected: boolean; revocations: NatsRevocationListStats; sessions: KvSessionStoreStats; remoteKeys: number; auditSpooled: number };
}

/**
 * Connects to NATS and opens every shared part: the streams and buckets (created when
 * absent), the revocation list (caught up with the feed), the session store, the key
 * directory (this replica's public keys published and acknowledged) and the JetStream
 * audit sink. Resolves only when the replica may serve; rejects, after closing what it
 * opened, when NATS cannot be reached or set up.
 *
 * Every start-up JetStream call shares one budget, CAPVEND_NATS_STARTUP_TIMEOUT from the
 * call: while JetStream is not ready (a cluster still electing its meta or stream leaders,
 * a node restarting) each retries with backoff and logs why at warn; a permanent error
 * (permission denied, a conflicting stream) fails at once, and so does anything still not
 * ready when the budget is spent.
 */
export async function openNatsBackends(opts: BackendOptions, settings: NatsSettings): Promise<NatsBackends> {
  const { config, clock, logger, keyRing } = opts;
  const log = logger.child({ component: "nats" });
  let nc: NatsConnection;
  try {
    nc = await connect(await natsConnectionOptions(settings, `capvend ${config.replicaId}`));
  } catch (err) {
    throw new Error(`could not connect to NATS (${settings.servers.length} server(s) in NATS_URL): ${describeNatsError(err)}`, { cause: err });
  }
  const link = new NatsLink(nc, log);
  const closers: (() => Promise<void> | void)[] = [];
  try {
    const replicas = settings.replicas ?? (nc.info?.cluster ? CLUSTER_DEFAULT_REPLICAS : 1);
    const timeoutMs = settings.timeoutMs;
    const startup = startupRetry({ clock, logger: log, timeoutMs: settings.startupTimeoutMs });
    const js = jetstream(nc, { timeout: timeoutMs });
    const jsm = await retryStartup("JetStream account info", startup, () => jetstreamManager(nc, { timeout: timeoutMs }));
    const limits = { maxTokenTtlMs: config.maxTokenTtlMs, sessionMaxDurationMs: config.sessionMaxDurationMs };

    await ensureStream(jsm, { name: REVOCATION_STREAM, subjects: [`${REVOCATION_SUBJECT_PREFIX}.>`], description: "capvend revocations, in feed order (public interface)", maxAgeMs: revocationStreamMaxAgeMs(limits), replicas }, startup);
    await ensureStream(jsm, { name: AUDIT_STREAM, subjects: [`${AUDIT_SUBJECT_PREFIX}.>`], description: "capvend audit events from every replica", maxAgeMs: DEFAULT_AUDIT_STREAM_MAX_AGE_MS, replicas }, startup);
    const sessionBucket = await ensureBucket(js, jsm, { bucket: SESSION_BUCKET, description: "capvend session records (credential hashes only)", ttlMs: sessionBucketTtlMs(limits), replicas, timeoutMs }, startup);
    const policyBucket = await ensureKvWithLeader(jsm, POLICY_BUCKET, startup, () => openPolicyBucket(js, { replicas, timeoutMs }));
    const policyStatusBucket = await ensureKvWithLeader(jsm, POLICY_STATUS_BUCKET, startup, () => openPolicyStatusBucket(js, { replicas, timeoutMs }));
    const statusRef = { kv: policyStatusBucket, jsm, bucket: POLICY_STATUS_BUCKET };
    const keyBucket = await ensureBucket(js, jsm, { bucket: KEY_BUCKET, description: "capvend public signing keys of every replica", ttlMs: keyBucketTtlMs(config.maxTokenTtlMs), replicas, timeoutMs }, startup);

    const revocations = await openNatsRevocationList({ js, jsm, link, clock, logger: log, replica: config.replicaId, timeoutMs, startup });
    closers.push(() => revocations.close());
    const sessions = openKvSessionStore({ kv: sessionBucket.kv, jsm, link, clock, logger: log, timeoutMs });
    closers.push(() => sessions.close());
    const publicKeys = await openKeyDirectory({ kv: keyBucket.kv, ttlMs: keyBucket.ttlMs, keyRing, link, clock, logger: log, replica: config.replicaId, timeoutMs, startup });
    closers.push(() => publicKeys.close());
    const auditSink = createJetStreamAuditSink({ js, link, clock, logger: log, replica: config.replicaId, timeoutMs: config.audit.timeoutMs });
    closers.push(() => auditSink.close());
    const health = new NatsHealth({ link, jsm, revocations, clock, logger: log, timeoutMs });
    closers.push(() => health.close());

    log.info(
      { servers: settings.servers.length, replicas, revocation_last_seq: revocations.lastSeq, remote_keys: publicKeys.remoteKids().length },
      "NATS backends open",
    );
    let closing: Promise<void> | undefined;
    return {
      connection: nc,
      revocations,
      sessions,
      publicKeys,
      announceKey: (jwk) => publicKeys.publish(jwk),
      auditSink,
      auditSinks: [auditSink],
      async publishAuditCheckpoint(checkpoint) {
        await js.publish(checkpointSubject(checkpoint.kid), encodeCheckpoint(checkpoint), { timeout: timeoutMs });
      },
      watchHealth: (listener) => health.watch(listener),
      policySource: (fallback) => KvPolicySource.open({ kv: policyBucket, fallback, clock, logger: log, timeoutMs, startup }),
      reportPolicy: (engine) =>
        reportPolicyStatus({
          kv: policyStatusBucket,
          replica: config.replicaId,
          clock,
          logger: log,
          timeoutMs,
          status: () => {
            const s = engine.state;
            return { policy_version: s.policyVersion, origin: s.origin, loaded_at_ms: s.loadedAt, ...(s.lastError !== undefined ? { last_error: s.lastError } : {}) };
          },
          subscribe: (listener) => engine.subscribe(listener),
        }),
      policyStatuses: () => readPolicyStatuses(statusRef, { clock, timeoutMs }),
      replicaQueries: createReplicaQueries({
        nc,
        replica: config.replicaId,
        // The same consumer-less read as PolicyStatus: it finishes while reports change.
        knownReplicas: async () => (await readPolicyStatuses(statusRef, { clock, timeoutMs })).map((s) => s.replica),
        clock,
        logger: log,
        timeoutMs,
      }),
      health: () => health.status(),
      stats: () => ({
        connected: link.connected,
        revocations: revocations.stats(),
        sessions: sessions.stats(),
        remoteKeys: publicKeys.remoteKids().length,
        auditSpooled: auditSink.spooled,
      }),
      close() {
        closing ??= closeAll(closers, nc, link);
        return closing;
      },
    };
  } catch (err) {
    await closeAll(closers, nc, link);
    throw err;
  }
}

/** Closes the parts newest first (the audit sink hands over its spool while NATS is still up), then the connection. */
async function closeAll(closers: (() => Promise<void> | void)[], nc: NatsConnection, link: NatsLink): Promise<void> {
  for (const close of [...closers].reverse()) {
    try {
      await close();
    } catch {
      // Closing is best effort: the next part still closes.
    }
  }
  link.close();
  // drain() waits for a reconnect that may never come during an outage: bound it.
  await Promise.race([nc.drain().catch(() => undefined), sleep(DRAIN_WAIT_MS)]);
  if (!nc.isClosed()) await nc.close().catch(() => undefined);
}

/** Longest wait for the connection to drain on close, ms. */
const DRAIN_WAIT_MS = 2000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

import type { JsonWebKey } from "node:crypto";
import type { Checkpoint } from "./audit/checkpoint.js";
import type { AuditSink } from "./audit/sink.js";
import type { Clock } from "./clock.js";
import type { Config } from "./config/config.js";
import type { Jwks, KeyRing } from "./keys/key-ring.js";
import type { Logger } from "./logging/logger.js";
import { MemoryRevocationList } from "./revocation/memory-revocation-list.js";
import type { RevocationList } from "./revocation/revocation.js";
import { MemorySessionStore } from "./sessions/memory-session-store.js";
import type { SessionStore } from "./sessions/session-store.js";
import { openNatsBackends } from "./nats/open-nats-backends.js";
import type { ReplicaPolicyStatus } from "./nats/kv-policy.js";
import type { ReplicaQueries } from "./nats/replica-queries.js";
import type { PolicyEngine } from "./policy/engine.js";
import type { PolicySource } from "./policy/policy-source.js";
import { FileRevocationList } from "./revocation/file-revocation-list.js";
import { FileSessionStore } from "./sessions/file-session-store.js";

/** The shared state of a replica: in process by default, on NATS JetStream with NATS_URL. */
export interface Backends {
  sessions: SessionStore;
  revocations: RevocationList;
  /**
   * The JWKS to serve and verify with: this replica's keys, or the union of every
   * replica's; and when each key stopped signing.
   */
  publicKeys: { jwks(): Jwks; retiredAt(kid: string): number | undefined };
  /**
   * Makes a new public key known to every replica before it signs anything (NATS: put in
   * the key bucket); absent when there is no one else to tell.
   */
  announceKey?(jwk: JsonWebKey): Promise<void>;
  /** Audit sinks beside the local file (a JetStream stream with NATS). */
  auditSinks: AuditSink[];
  /**
   * Publishes a signed audit checkpoint outside this replica's disk (NATS: the JetStream
   * audit stream, subject `capvend.audit.checkpoint.<kid>`); absent without NATS.
   */
  publishAuditCheckpoint?(checkpoint: Checkpoint): Promise<void>;
  /**
   * Health of the shared parts, by health service name ("capvend.revocation",
   * "capvend.sessions"): reports each service's current status at once, then every change;
   * the server maps it onto grpc.health.v1. Returns an unsubscribe function. Absent in
   * memory mode (nothing shared can fail).
   */
  watchHealth?(listener: (service: string, serving: boolean) => void): () => void;
  /**
   * Where the policy set comes from when replicas share one (NATS: the policy bucket, which
   * falls back to `fallback`, the policy directory, until a set is pushed). Absent in memory
   * mode: the directory is the source.
   */
  policySource?(fallback: PolicySource): Promise<PolicySource>;
  /** Reports the engine's policy version where every replica can read it; returns a stop function. */
  reportPolicy?(engine: PolicyEngine): () => void;
  /**
   * Questions to every other replica about state only its memory holds, such as a session's
   * open streams (NATS request/reply); absent with one replica.
   */
  replicaQueries?: ReplicaQueries;
  /** Every replica's last policy report (NATS); absent in memory mode. */
  policyStatuses?(): Promise<ReplicaPolicyStatus[]>;
  /** Closes connections and timers. Idempotent. */
  close(): Promise<void>;
}

export interface BackendOptions {
  config: Config;
  clock: Clock;
  logger: Logger;
  keyRing: KeyRing;
}

/** Opens the in-process backends: one replica, nothing shared. */
export function openMemoryBackends(opts: BackendOptions): Backends {
  const sessions = new MemorySessionStore(opts.clock);
  const revocations = new MemoryRevocationList(opts.clock);
  return {
    sessions,
    revocations,
    publicKeys: opts.keyRing,
    auditSinks: [],
    async close() {
      await revocations.close();
      await sessions.close();
    },
  };
}

/**
 * Opens the durable embedded backends: one replica, sessions and revocations journaled in
 * `<dataDir>/state/` (see src/journal/), as durable as the audit log (CAPVEND_AUDIT_DURABILITY).
 */
export async function openFileBackends(opts: BackendOptions): Promise<Backends> {
  const { config, clock } = opts;
  const settings = { dataDir: config.dataDir, clock, durability: config.audit.durability, timeoutMs: config.audit.timeoutMs };
  const sessions = await FileSessionStore.open(settings);
  let revocations: FileRevocationList;
  try {
    revocations = await FileRevocationList.open(settings);
  } catch (err) {
    await sessions.close();
    throw err;
  }
  return {
    sessions,
    revocations,
    publicKeys: opts.keyRing,
    auditSinks: [],
    async close() {
      await revocations.close();
      await sessions.close();
    },
  };
}

/**
 * Opens the backends the configuration asks for: with NATS_URL, the JetStream ones (see
 * src/nats/ and docs/operations.md), resolved only once the revocation feed is caught up
 * and this replica's public keys are published; otherwise the durable embedded ones in the
 * data directory, or the in-process ones with CAPVEND_STATE_STORE=memory.
 */
export async function openBackends(opts: BackendOptions): Promise<Backends> {
  if (opts.config.nats) return openNatsBackends(opts, opts.config.nats);
  if (opts.config.natsUrl) throw new Error("NATS_URL is set but the NATS settings were not parsed (load the config with loadConfig)");
  if (opts.config.stateStore === "memory") return openMemoryBackends(opts);
  return openFileBackends(opts);
}

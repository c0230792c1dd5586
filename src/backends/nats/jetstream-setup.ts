import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager, type StreamConfig, type StreamInfo } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { nanos } from "@nats-io/transport-node";
import { NoLeaderYet, retryStartup, type StartupRetry } from "./startup-retry.js";

/** Window in which JetStream drops a re-published message with the same `Nats-Msg-Id`: 2 min. */
export const DUPLICATE_WINDOW_MS = 2 * 60 * 1000;
/** Largest revocation or audit message accepted by the streams: 64 KiB (real ones are < 1 KiB). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** Largest KV value (a session record or a public key): 64 KiB. */
export const MAX_KV_VALUE_BYTES = 64 * 1024;

/** A capvend stream: created when absent; an existing one keeps its settings except a too-short max age. */
export interface StreamSpec {
  name: string;
  subjects: string[];
  description: string;
  /** Messages older than this are discarded, in ms. */
  maxAgeMs: number;
  replicas: number;
}

/** A capvend KV bucket (history 1, file storage). */
export interface BucketSpec {
  bucket: string;
  description: string;
  /** Entries older than their last write by this much are discarded, in ms. */
  ttlMs: number;
  replicas: number;
  /** Default timeout of the bucket's operations, in ms. */
  timeoutMs: number;
}

/**
 * Creates the stream, or checks the existing one. An operator may have tuned it (more
 * replicas, a longer max age), so only a max age shorter than capvend needs is raised:
 * shorter would drop revocations that can still match live tokens.
 */
export async function ensureStream(jsm: JetStreamManager, spec: StreamSpec, startup: StartupRetry): Promise<StreamInfo> {
  const { logger } = startup;
  const config: Partial<StreamConfig> & { name: string } = {
    name: spec.name,
    subjects: spec.subjects,
    description: spec.description,
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(spec.maxAgeMs),
    max_msg_size: MAX_MESSAGE_BYTES,
    // JetStream refuses a duplicate window longer than the max age.
    duplicate_window: nanos(Math.min(DUPLICATE_WINDOW_MS, spec.maxAgeMs)),
    num_replicas: spec.replicas,
    // What was acknowledged must stay: no one deletes single messages or purges by mistake.
    deny_delete: true,
    deny_purge: true,
  };
  return retryStartup(`stream ${spec.name}`, startup, async () => {
    let info: StreamInfo;
    try {
      info = await jsm.streams.info(spec.name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      logger.info({ stream: spec.name, max_age_ms: spec.maxAgeMs, replicas: spec.replicas }, "creating JetStream stream");
      return requireLeader(await jsm.streams.add(config));
    }
    if (info.config.max_age !== 0 && info.config.max_age < nanos(spec.maxAgeMs)) {
      logger.warn({ stream: spec.name, from_ms: Math.round(info.config.max_age / 1e6), to_ms: spec.maxAgeMs }, "raising the stream's max age to what this replica needs");
      info = await jsm.streams.update(spec.name, { ...info.config, max_age: nanos(spec.maxAgeMs) });
    }
    return requireLeader(info);
  });
}

/**
 * Opens the bucket, creating it when absent, and raises a too-short TTL like `ensureStream`.
 * Returns the bucket and its effective TTL in ms (0: none).
 */
export async function ensureBucket(js: JetStreamClient, jsm: JetStreamManager, spec: BucketSpec, startup: StartupRetry): Promise<{ kv: KV; ttlMs: number }> {
  const { logger } = startup;
  return retryStartup(`bucket ${spec.bucket}`, startup, async () => {
    const kv = await new Kvm(js).create(spec.bucket, {
      description: spec.description,
      history: 1,
      ttl: spec.ttlMs,
      replicas: spec.replicas,
      storage: StorageType.File,
      maxValueSize: MAX_KV_VALUE_BYTES,
      timeout: spec.timeoutMs,
    });
    const stream = `KV_${spec.bucket}`;
    let info = await jsm.streams.info(stream);
    if (info.config.max_age !== 0 && info.config.max_age < nanos(spec.ttlMs)) {
      logger.warn({ bucket: spec.bucket, from_ms: Math.round(info.config.max_age / 1e6), to_ms: spec.ttlMs }, "raising the bucket's TTL to what this replica needs");
      info = await jsm.streams.update(stream, { ...info.config, max_age: nanos(spec.ttlMs) });
    }
    requireLeader(info);
    return { kv, ttlMs: Math.round(info.config.max_age / 1e6) };
  });
}

/**
 * Opens a bucket with `open` (a `Kvm.create` with the bucket's own options) within the
 * start-up budget, and returns it only once its stream has a leader: a bucket just created
 * on a cluster answers reads and writes only after its group elected one.
 */
export async function ensureKvWithLeader(jsm: JetStreamManager, bucket: string, startup: StartupRetry, open: () => Promise<KV>): Promise<KV> {
  return retryStartup(`bucket ${bucket}`, startup, async () => {
    const kv = await open();
    requireLeader(await jsm.streams.info(`KV_${bucket}`));
    return kv;
  });
}

/** Throws NoLeaderYet (transient) while a clustered stream has no elected leader. */
export function requireLeader(info: StreamInfo): StreamInfo {
  if (info.cluster && !info.cluster.leader) throw new NoLeaderYet(`stream ${info.config.name} has no leader yet`);
  return info;
}

function isNotFound(err: unknown): boolean {
  return (err instanceof JetStreamApiError && err.code === 10059) || (err instanceof Error && err.message === "stream not found");
}

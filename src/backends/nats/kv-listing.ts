import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import type { Clock } from "../../clock.js";
import { withDeadline } from "./deadline.js";

/** A bucket to list: the bucket, its name, and a JetStream manager on the same connection. */
export interface BucketRef {
  kv: KV;
  jsm: JetStreamManager;
  /** The bucket's name (its stream is `KV_<bucket>`). */
  bucket: string;
}

/** Bounds of a listing. */
export interface ListingOptions {
  clock: Clock;
  /** Longest wait for the key listing, and for each entry read, ms (CAPVEND_NATS_TIMEOUT). */
  timeoutMs: number;
  /** Named in the error when NATS does not answer in time, e.g. "policy status". */
  what: string;
}

/**
 * The keys that have a message in the bucket's stream now (live values, and delete markers
 * not yet cleaned up), from the stream's per-subject state: one bounded request (nats.js
 * pages it beyond the server's page size), no consumer.
 *
 * Not `kv.keys()`: that walks an ordered consumer and ends only when a delivered message says
 * nothing more is pending, or at the consumer's idle heartbeat (30 s in nats.js 3.x). When
 * entries are deleted or expire between the consumer's start and their delivery, the pending
 * count it started from is too high, no message ever says zero, and the listing runs into
 * any caller's deadline.
 */
export async function bucketKeys(ref: BucketRef, opts: ListingOptions): Promise<string[]> {
  const prefix = `$KV.${ref.bucket}.`;
  const info = await withDeadline(ref.jsm.streams.info(`KV_${ref.bucket}`, { subjects_filter: `${prefix}>` }), opts.timeoutMs, opts.clock, `${opts.what} keys`);
  return Object.keys(info.state.subjects ?? {})
    .filter((s) => s.startsWith(prefix))
    .map((s) => s.slice(prefix.length));
}

/**
 * Reads one key's current entry (the last message of its subject), bounded by the timeout.
 * Returns undefined when the key holds no value: never written, deleted, purged, or expired.
 */
export async function liveEntry(ref: BucketRef, key: string, opts: ListingOptions): Promise<KvEntry | undefined> {
  const e = await withDeadline(ref.kv.get(key), opts.timeoutMs, opts.clock, `${opts.what} get`);
  return e && e.operation === "PUT" ? e : undefined;
}

/**
 * Every live entry of the bucket: `bucketKeys`, then each key read (in parallel: for small
 * buckets such as the replica directory). A key deleted or expired after it was listed is
 * absent; one written after the listing may be missing, as with any snapshot. Always
 * finishes: each request is bounded by `timeoutMs`.
 */
export async function liveEntries(ref: BucketRef, opts: ListingOptions): Promise<KvEntry[]> {
  const keys = await bucketKeys(ref, opts);
  const entries = await Promise.all(keys.map((k) => liveEntry(ref, k, opts)));
  return entries.filter((e): e is KvEntry => e !== undefined);
}

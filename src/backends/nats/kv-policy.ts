import type { ReplicaPolicyStatus } from "../types.js";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV, type KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import type { Clock, TimerHandle } from "../../clock.js";
import type { Logger } from "../../logging/logger.js";
import { isPolicySetFile, policyVersionOf, type PolicyFiles } from "../../policy/policy-set.js";
import type { PolicySource, SourceWatch } from "../../policy/policy-source.js";
import { describeNatsError, withDeadline } from "./deadline.js";
import { liveEntries, type BucketRef } from "./kv-listing.js";
import { POLICY_BUCKET, POLICY_STATUS_BUCKET } from "./names.js";
import { retryStartup, type StartupRetry } from "./startup-retry.js";
import { superviseSubscription } from "./resubscribe.js";

/** The key of the policy set in the policy bucket. */
export const POLICY_SET_KEY = "set";
/** Version of the entry schema below. */
export const POLICY_ENTRY_VERSION = 1;
/** Largest policy set the bucket takes, bytes: 1 MiB. */
export const MAX_POLICY_SET_BYTES = 1024 * 1024;
/** Pushed sets kept in the bucket's history (the current one and four before it). */
export const POLICY_HISTORY = 5;
/** How often a replica re-reports its policy status: 1 min. */
export const POLICY_STATUS_INTERVAL_MS = 60 * 1000;
/** A replica that stopped reporting drops out of the status bucket after: 3 min. */
export const POLICY_STATUS_TTL_MS = 3 * POLICY_STATUS_INTERVAL_MS;

/** The policy set as stored in the bucket. */
export interface PolicySetEntry {
  v: number;
  /** The set's content hash (policyVersionOf). */
  version: string;
  files: Record<string, string>;
  pushed_at_ms: number;
  /** Who pushed it (`capvend policy push` says user@host). */
  pushed_by: string;
}


/** Opens (creating when absent) the policy bucket: no TTL, a short history of pushed sets. */
export function openPolicyBucket(js: JetStreamClient, opts: { replicas: number; timeoutMs: number }): Promise<KV> {
  return new Kvm(js).create(POLICY_BUCKET, {
    description: "capvend policy set every replica runs (capvend policy push)",
    history: POLICY_HISTORY,
    replicas: opts.replicas,
    maxValueSize: MAX_POLICY_SET_BYTES,
    timeout: opts.timeoutMs,
  });
}

/** Opens (creating when absent) the bucket where replicas report their policy version. */
export function openPolicyStatusBucket(js: JetStreamClient, opts: { replicas: number; timeoutMs: number }): Promise<KV> {
  return new Kvm(js).create(POLICY_STATUS_BUCKET, {
    description: "capvend policy version each replica runs",
    history: 1,
    ttl: POLICY_STATUS_TTL_MS,
    replicas: opts.replicas,
    timeout: opts.timeoutMs,
  });
}

/**
 * Publishes a policy set to every replica. The caller has checked it (parsePolicySet): a
 * broken set is never published. Resolves with its version once JetStream acknowledged it.
 */
export async function pushPolicySet(kv: KV, set: PolicyFiles, opts: { pushedBy: string; clock: Clock; timeoutMs: number }): Promise<{ version: string; revision: number }> {
  const version = policyVersionOf(set);
  const entry: PolicySetEntry = { v: POLICY_ENTRY_VERSION, version, files: { ...set.files }, pushed_at_ms: opts.clock.now(), pushed_by: opts.pushedBy };
  const body = JSON.stringify(entry);
  if (Buffer.byteLength(body) > MAX_POLICY_SET_BYTES) throw new Error(`the policy set is ${Buffer.byteLength(body)} bytes; the bucket takes at most ${MAX_POLICY_SET_BYTES}`);
  const revision = await withDeadline(kv.put(POLICY_SET_KEY, body), opts.timeoutMs, opts.clock, "policy set put");
  return { version, revision };
}

/** Reads the policy set entry's files, or undefined when the entry is not a policy set. */
export function parsePolicySetEntry(text: string): (PolicyFiles & { version: string }) | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const e = raw as Partial<PolicySetEntry> | null;
  if (!e || typeof e !== "object" || e.v !== POLICY_ENTRY_VERSION || typeof e.files !== "object" || e.files === null) return undefined;
  const files: Record<string, string> = {};
  for (const [name, text] of Object.entries(e.files)) {
    if (!isPolicySetFile(name) || typeof text !== "string") return undefined;
    files[name] = text;
  }
  return { files, version: policyVersionOf({ files }) };
}

/**
 * Every replica's last report (replicas that stopped reporting age out): the replica
 * directory. Reads the bucket without a consumer (see `liveEntries`), so it finishes within
 * about two NATS timeouts even while reports are written, deleted or expire during the read.
 */
export async function readPolicyStatuses(ref: BucketRef, opts: { clock: Clock; timeoutMs: number }): Promise<ReplicaPolicyStatus[]> {
  const entries = await liveEntries(ref, { ...opts, what: "policy status" });
  const out: ReplicaPolicyStatus[] = [];
  for (const e of entries) {
    try {
      const s = JSON.parse(e.string()) as ReplicaPolicyStatus;
      if (s && typeof s === "object" && typeof s.replica === "string") out.push(s);
    } catch {
      // Not ours: skip.
    }
  }
  return out.sort((a, b) => a.replica.localeCompare(b.replica));
}

/** A KV key for a replica id (KV keys allow `[-/_=.a-zA-Z0-9]`). */
export function statusKeyOf(replica: string): string {
  return replica.replace(/[^-/_=.a-zA-Z0-9]/g, "_") || "_";
}

export interface KvPolicySourceOptions {
  kv: KV;
  /** Where the set comes from while the bucket holds none: the policy directory. */
  fallback: PolicySource;
  clock: Clock;
  logger: Logger;
  timeoutMs: number;
  /** The replica's start-up budget: the first read retries while JetStream is not ready. Unset: one attempt. */
  startup?: StartupRetry;
}

/**
 * The NATS policy bucket as a policy source: the pushed set once there is one, else the
 * policy directory (so a fresh cluster starts from the shipped or mounted policies, and
 * `capvend policy push` takes over from then on). Watching follows both; a push reaches
 * every replica within the KV watch's latency.
 */
export class KvPolicySource implements PolicySource {
  readonly #opts: KvPolicySourceOptions;
  #latest: (PolicyFiles & { version: string; revision: number }) | undefined;
  #closed = false;

  private constructor(opts: KvPolicySourceOptions) {
    this.#opts = opts;
  }

  /** Reads the pushed set (if any) so the first load already uses it. */
  static async open(opts: KvPolicySourceOptions): Promise<KvPolicySource> {
    const source = new KvPolicySource(opts);
    const read = () => withDeadline(opts.kv.get(POLICY_SET_KEY), opts.timeoutMs, opts.clock, "policy set get");
    const e = opts.startup ? await retryStartup(`first read of bucket ${POLICY_BUCKET}`, opts.startup, read) : await read();
    if (e && e.operation === "PUT") source.#take(e.string(), e.revision);
    return source;
  }

  get origin(): string {
    return this.#latest ? `nats:${POLICY_BUCKET}` : this.#opts.fallback.origin;
  }

  /** Revision of the pushed set in force at the source, 0 while the directory is used. */
  get revision(): number {
    return this.#latest?.revision ?? 0;
  }

  async read(): Promise<PolicyFiles> {
    return this.#latest ? { files: this.#latest.files } : this.#opts.fallback.read();
  }

  watch(onChange: () => void, onError: (error: Error) => void): SourceWatch {
    const abort = new AbortController();
    let iterator: QueuedIterator<KvWatchEntry> | undefined;
    const fallbackWatch = this.#opts.fallback.watch?.(() => {
      // The directory matters only until a set is pushed.
      if (!this.#latest) onChange();
    }, (e) => {
      if (!this.#latest) onError(e);
    });
    void superviseSubscription(
      async (progress) => {
        iterator = await this.#opts.kv.watch({ key: POLICY_SET_KEY, ...(this.revision > 0 ? { resumeFromRevision: this.revision + 1 } : {}) });
        if (abort.signal.aborted) {
          iterator.stop();
          return;
        }
        for await (const e of iterator) {
          progress();
          if (e.operation !== "PUT" || e.revision <= this.revision) continue;
          if (this.#take(e.string(), e.revision)) onChange();
        }
      },
      { name: `policy bucket ${POLICY_BUCKET}`, logger: this.#opts.logger, clock: this.#opts.clock, signal: abort.signal },
    );
    return {
      close: () => {
        if (abort.signal.aborted) return;
        abort.abort();
        iterator?.stop();
        fallbackWatch?.close();
        this.#closed = true;
      },
    };
  }

  #take(text: string, revision: number): boolean {
    const parsed = parsePolicySetEntry(text);
    if (!parsed) {
      this.#opts.logger.error({ bucket: POLICY_BUCKET, revision }, "ignoring a policy bucket entry that is not a policy set; the policies in force stay");
      return false;
    }
    this.#latest = { ...parsed, revision };
    return !this.#closed;
  }
}

/** First wait before re-trying a failed status report, ms; it doubles up to POLICY_STATUS_INTERVAL_MS. */
export const POLICY_STATUS_RETRY_FIRST_MS = 1000;

/**
 * Reports this replica's policy version to the status bucket after every reload and every
 * POLICY_STATUS_INTERVAL_MS, so `PolicyStatus` and `capvend policy push --wait` can see which
 * replicas run which version. A failed report is tried again after POLICY_STATUS_RETRY_FIRST_MS,
 * doubling up to the interval, so a replica that started while its cluster was still settling
 * joins the replica directory as soon as NATS takes the write. Returns a stop function.
 */
export function reportPolicyStatus(opts: {
  kv: KV;
  replica: string;
  clock: Clock;
  logger: Logger;
  timeoutMs: number;
  status: () => Omit<ReplicaPolicyStatus, "replica" | "reported_at_ms">;
  subscribe: (listener: () => void) => () => void;
}): () => void {
  let stopped = false;
  let timer: TimerHandle | undefined;
  let retry: TimerHandle | undefined;
  let failures = 0;
  const put = () => {
    if (stopped) return;
    if (retry) opts.clock.clearTimeout(retry);
    retry = undefined;
    const entry: ReplicaPolicyStatus = { replica: opts.replica, ...opts.status(), reported_at_ms: opts.clock.now() };
    withDeadline(opts.kv.put(statusKeyOf(opts.replica), JSON.stringify(entry)), opts.timeoutMs, opts.clock, "policy status put").then(
      () => {
        failures = 0;
      },
      (err: unknown) => {
        if (stopped) return;
        const wait = Math.min(POLICY_STATUS_RETRY_FIRST_MS * 2 ** Math.min(failures++, 10), POLICY_STATUS_INTERVAL_MS);
        opts.logger.warn({ error: describeNatsError(err), retry_in_ms: wait }, "could not report the policy version to NATS; retrying");
        if (retry) opts.clock.clearTimeout(retry);
        retry = opts.clock.setTimeout(put, wait);
      },
    );
  };
  const schedule = () => {
    timer = opts.clock.setTimeout(() => {
      put();
      if (!stopped) schedule();
    }, POLICY_STATUS_INTERVAL_MS);
  };
  const unsubscribe = opts.subscribe(put);
  put();
  schedule();
  return () => {
    stopped = true;
    unsubscribe();
    if (timer) opts.clock.clearTimeout(timer);
    if (retry) opts.clock.clearTimeout(retry);
    // The entry stays: it ages out, and a restart overwrites it.
  };
}

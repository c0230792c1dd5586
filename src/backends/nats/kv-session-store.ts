import { type GrantSpec, MAX_RETRY_CREDENTIALS, SESSION_SWEEP_INTERVAL_MS, SessionExistsError, type SessionListQuery, type SessionRecord, type SessionStore } from "../types.js";
import { JetStreamApiError, type JetStreamManager } from "@nats-io/jetstream";
import type { KV, KvEntry, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import type { Clock, TimerHandle } from "../../clock.js";
import type { Logger } from "../../logging/logger.js";
import { StartedByIndex } from "../session-index.js";
import { withDeadline } from "./deadline.js";
import { bucketKeys } from "./kv-listing.js";
import { fault } from "../../errors.js";
import type { NatsLink } from "./link-state.js";
import { SESSION_BUCKET } from "./names.js";
import { sleep, superviseSubscription } from "./resubscribe.js";

/** Attempts of the read-compare-write loop (`end`, `addCredential`) before it gives up as contended. */
export const END_CAS_ATTEMPTS = 5;

/** Longest wait in `close` for the watch loop to stop, ms. */
const CLOSE_WAIT_MS = 2000;

/** Options for `openKvSessionStore`. */
export interface KvSessionStoreOptions {
  /** The `capvend_sessions` bucket (or a test's own). */
  kv: KV;
  /** A JetStream manager on the same connection: `list` reads the bucket's keys from its stream. */
  jsm: JetStreamManager;
  link: NatsLink;
  clock: Clock;
  logger: Logger;
  /** Longest wait for one KV read or write, ms (CAPVEND_NATS_TIMEOUT). */
  timeoutMs: number;
  /** Bucket name (for log lines, and the stream `list` reads); default `SESSION_BUCKET`. */
  bucket?: string;
}

/** What the store reports about itself (for monitoring). */
export interface KvSessionStoreStats {
  /** Sessions held in the local cache. */
  cached: number;
  /** Highest bucket revision seen by the watch. */
  lastRevision: number;
  /** Entries skipped because they did not hold a valid session record. */
  rejected: number;
}

/** Opens the store and starts its watch; the cache fills in the background (a miss reads KV). */
export function openKvSessionStore(opts: KvSessionStoreOptions): KvSessionStore {
  return new KvSessionStore(opts);
}

/**
 * Session records in a JetStream KV bucket shared by every replica, so a runtime can move
 * to any replica with its credential (the bucket holds only the credential's sha256).
 *
 * A watch on the whole bucket keeps a local cache of every live session: `get` answers from
 * memory, and keeps answering for sessions this replica knows while NATS is away; a miss
 * reads the bucket. Writes go to the bucket first (and fail at once while NATS is away);
 * `end` is a compare-and-set on the entry's revision, so of concurrent ends the first wins
 * on every replica.
 */
export class KvSessionStore implements SessionStore {
  readonly #opts: KvSessionStoreOptions;
  readonly #bucket: string;
  readonly #cache = new Map<string, { record: SessionRecord; revision: number }>();
  readonly #byStarter = new StartedByIndex();
  #lastRevision = 0;
  #rejected = 0;
  #closed = false;
  readonly #abort = new AbortController();
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  readonly #running: Promise<void>;
  #sweep: TimerHandle | undefined;

  constructor(opts: KvSessionStoreOptions) {
    this.#opts = opts;
    this.#bucket = opts.bucket ?? SESSION_BUCKET;
    this.#running = superviseSubscription((progress) => this.#follow(progress), {
      name: `session bucket ${this.#bucket}`,
      logger: opts.logger,
      clock: opts.clock,
      signal: this.#abort.signal,
    });
    this.#scheduleSweep();
  }

  /** Sessions held in the local cache (as the memory and file stores' `size`). */
  get size(): number {
    return this.#cache.size;
  }

  stats(): KvSessionStoreStats {
    return { cached: this.#cache.size, lastRevision: this.#lastRevision, rejected: this.#rejected };
  }

  async create(record: SessionRecord): Promise<void> {
    this.#assertOpen();
    this.#opts.link.assertConnected("session not stored");
    let revision: number;
    try {
      revision = await this.#bounded(this.#opts.kv.create(record.id, encode(record)), "session create");
    } catch (err) {
      if (isWrongRevision(err)) throw new SessionExistsError(record.id);
      throw err;
    }
    this.#remember(record.id, structuredClone(record), revision);
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    this.#assertOpen();
    const cached = this.#cache.get(id);
    if (cached) return structuredClone(cached.record);
    if (!isValidKey(id)) return undefined;
    this.#opts.link.assertConnected("session lookup");
    const entry = await this.#read(id);
    return entry && structuredClone(entry.record);
  }

  /**
   * Reads every session in the bucket (an operator's listing: not for the request path).
   * The keys come from the bucket's stream state, not `kv.keys()`, which can wait 30 s for
   * its consumer's heartbeat when sessions are deleted or expire during the listing; a
   * session deleted or expired before its entry is read is left out.
   */
  async list(query: SessionListQuery): Promise<SessionRecord[]> {
    this.#assertOpen();
    this.#opts.link.assertConnected("session listing");
    const keys = await bucketKeys({ kv: this.#opts.kv, jsm: this.#opts.jsm, bucket: this.#bucket }, { clock: this.#opts.clock, timeoutMs: this.#opts.timeoutMs, what: "session" });
    const records: SessionRecord[] = [];
    for (const k of keys.filter((k) => query.afterId === undefined || k > query.afterId).sort()) {
      const e = await this.#read(k);
      if (e && query.match(e.record)) records.push(structuredClone(e.record));
      if (records.length >= query.limit) break;
    }
    return records;
  }

  async end(id: string, reason: string, atMs: number): Promise<SessionRecord | undefined> {
    // Of concurrent ends the first wins: an ended record is kept as it is.
    return this.#update(id, "session end", (r) => (r.endedAt !== undefined ? undefined : { ...r, endedAt: atMs, endReason: reason }));
  }

  async addCredential(id: string, credentialHash: string): Promise<SessionRecord | undefined> {
    return this.#update(id, "session credential", (r) => ({
      ...r,
      retryCredentialHashes: [...(r.retryCredentialHashes ?? []), credentialHash].slice(-MAX_RETRY_CREDENTIALS),
    }));
  }

  /**
   * Read-compare-write on the entry's revision: `change` gets the current record and returns
   * the new one, or undefined to keep it. Another replica's write in between makes it read
   * again. Resolves to the stored record, or undefined when the session is unknown.
   */
  async #update(id: string, what: string, change: (r: SessionRecord) => SessionRecord | undefined): Promise<SessionRecord | undefined> {
    this.#assertOpen();
    if (!isValidKey(id)) return undefined;
    this.#opts.link.assertConnected(`${what} not written`);
    for (let attempt = 0; attempt < END_CAS_ATTEMPTS; attempt++) {
      const current = await this.#read(id);
      if (!current) return undefined;
      const next = change(current.record);
      if (!next) return structuredClone(current.record);
      try {
        const revision = await this.#bounded(this.#opts.kv.update(id, encode(next), current.revision), what);
        this.#remember(id, next, revision);
        return structuredClone(next);
      } catch (err) {
        if (!isWrongRevision(err)) throw err;
      }
    }
    throw fault("nats_unavailable", `${what}: ${END_CAS_ATTEMPTS} concurrent writes in a row; retry`);
  }

  async delete(id: string): Promise<void> {
    this.#assertOpen();
    if (!isValidKey(id)) return;
    this.#opts.link.assertConnected("session not deleted");
    await this.#bounded(this.#opts.kv.delete(id), "session delete");
    this.#drop(id);
  }

  /**
   * Counts from this replica's cache, which the bucket watch keeps current: a session
   * created on another replica a moment ago may not be in it yet (see the quota in
   * docs/configuration.md).
   */
  async countStartedBy(startedBy: string, live: (r: SessionRecord) => boolean): Promise<number> {
    this.#assertOpen();
    return this.#byStarter.count(startedBy, (id) => this.#cache.get(id)?.record, live);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    this.#watch?.stop();
    if (this.#sweep) this.#opts.clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    await Promise.race([this.#running, sleep(this.#opts.clock, CLOSE_WAIT_MS, new AbortController().signal)]);
  }

  /** Reads the entry from the bucket (not the cache) and refreshes the cache with it. */
  async #read(id: string): Promise<{ record: SessionRecord; revision: number } | undefined> {
    const entry = await this.#bounded(this.#opts.kv.get(id), "session lookup");
    if (!entry || entry.operation !== "PUT") {
      if (entry) this.#forget(id, entry.revision);
      return undefined;
    }
    const record = this.#parse(entry);
    if (!record) return undefined;
    this.#remember(id, record, entry.revision);
    return { record, revision: entry.revision };
  }

  async #follow(progress: () => void): Promise<void> {
    const watch = await this.#opts.kv.watch(this.#lastRevision > 0 ? { resumeFromRevision: this.#lastRevision + 1 } : {});
    this.#watch = watch;
    if (this.#closed) {
      watch.stop();
      return;
    }
    for await (const e of watch) {
      progress();
      this.#lastRevision = Math.max(this.#lastRevision, e.revision);
      if (e.operation === "PUT") {
        const record = this.#parse(e);
        if (record && record.expiresAt > this.#opts.clock.now()) this.#remember(e.key, record, e.revision);
      } else {
        this.#forget(e.key, e.revision);
      }
    }
  }

  /** Keeps the newer of what is cached and what was read: the watch and reads race. */
  #remember(id: string, record: SessionRecord, revision: number): void {
    const cached = this.#cache.get(id);
    if (cached && cached.revision > revision) return;
    this.#cache.set(id, { record, revision });
    this.#byStarter.add(record.startedBy, id);
  }

  #forget(id: string, revision: number): void {
    const cached = this.#cache.get(id);
    if (cached && cached.revision < revision) this.#drop(id);
  }

  #drop(id: string): void {
    const cached = this.#cache.get(id);
    if (!cached) return;
    this.#cache.delete(id);
    this.#byStarter.remove(cached.record.startedBy, id);
  }

  #parse(entry: KvEntry): SessionRecord | undefined {
    let record: SessionRecord | undefined;
    try {
      record = parseSessionRecord(entry.json<unknown>(), entry.key);
    } catch {
      record = undefined;
    }
    if (!record) {
      this.#rejected++;
      this.#opts.logger.warn({ bucket: this.#bucket, revision: entry.revision }, "skipping a KV entry that is not a valid session record");
    }
    return record;
  }

  #bounded<T>(work: Promise<T>, what: string): Promise<T> {
    return withDeadline(work, this.#opts.timeoutMs, this.#opts.clock, what);
  }

  #assertOpen(): void {
    if (this.#closed) throw fault("backend_closed", "session store is closed");
  }

  #scheduleSweep(): void {
    this.#sweep = this.#opts.clock.setTimeout(() => {
      const now = this.#opts.clock.now();
      for (const [id, c] of this.#cache) if (c.record.expiresAt <= now) this.#drop(id);
      if (!this.#closed) this.#scheduleSweep();
    }, SESSION_SWEEP_INTERVAL_MS);
  }
}

function encode(record: SessionRecord): string {
  return JSON.stringify(record);
}

/** KV keys are subject tokens: session ids always qualify; anything else cannot be stored. */
function isValidKey(id: string): boolean {
  return /^[-/=\w]+(\.[-/=\w]+)*$/.test(id);
}

function isWrongRevision(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof JetStreamApiError && (e.code === 10071 || e.code === 10164)) return true;
  }
  return false;
}

/**
 * Checks a record read from the bucket (anyone with write access to it could put anything
 * there); returns undefined unless it is a complete session record for `key`.
 */
export function parseSessionRecord(raw: unknown, key: string): SessionRecord | undefined {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  const str = (v: unknown) => typeof v === "string";
  const time = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v);
  if (r.id !== key || !str(r.agentId) || !str(r.startedBy) || !time(r.createdAt) || !time(r.expiresAt)) return undefined;
  const hash = (v: unknown) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v);
  if (!hash(r.credentialHash)) return undefined;
  if (r.retryCredentialHashes !== undefined && !(Array.isArray(r.retryCredentialHashes) && r.retryCredentialHashes.length <= MAX_RETRY_CREDENTIALS && r.retryCredentialHashes.every(hash))) return undefined;
  if (r.requestFingerprint !== undefined && !hash(r.requestFingerprint)) return undefined;
  if (r.userId !== undefined && !str(r.userId)) return undefined;
  if (r.endedAt !== undefined && !time(r.endedAt)) return undefined;
  if (r.endReason !== undefined && !str(r.endReason)) return undefined;
  if (typeof r.labels !== "object" || r.labels === null || Array.isArray(r.labels) || !Object.values(r.labels).every(str)) return undefined;
  if (!Array.isArray(r.grants) || !r.grants.every(isGrant)) return undefined;
  return r as unknown as SessionRecord;
}

function isGrant(g: unknown): g is GrantSpec {
  if (typeof g !== "object" || g === null) return false;
  const x = g as Record<string, unknown>;
  return (
    typeof x.resource === "string" &&
    Array.isArray(x.scopes) &&
    x.scopes.every((s) => typeof s === "string") &&
    (x.ttlMs === undefined || x.ttlMs === null || (typeof x.ttlMs === "number" && x.ttlMs > 0))
  );
}

import type { JsonWebKey } from "node:crypto";
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import type { Clock, TimerHandle } from "../../clock.js";
import type { Jwks, KeyRing } from "../../keys/key-ring.js";
import { SIGNING_ALGS, type SigningAlg } from "../../keys/signing-key.js";
import { jwkThumbprint } from "../../keys/thumbprint.js";
import type { Logger } from "../../logging/logger.js";
import { describeNatsError, withDeadline } from "./deadline.js";
import type { NatsLink } from "./link-state.js";
import { KEY_BUCKET } from "./names.js";
import { sleep, superviseSubscription } from "./resubscribe.js";
import { retryStartup, startupRetry, type StartupRetry } from "./startup-retry.js";

/** How often a replica re-puts its live public keys, so they outlive the bucket's max age while it lives: 5 min. */
export const DEFAULT_KEY_REFRESH_INTERVAL_MS = 5 * 60 * 1000;
/** Version of the key entry schema below. */
export const KEY_ENTRY_VERSION = 1;
/** How long opening retries the first publish of this replica's keys without a start-up budget: 10 s. */
const OPEN_PUBLISH_DEADLINE_MS = 10_000;
/** Longest wait in `close` for the watch loop to stop, ms. */
const CLOSE_WAIT_MS = 2000;

/**
 * The key bucket's max age: a dead replica's last put disappears only after every token it
 * signed has expired (max token TTL), with two refresh intervals to spare so a live
 * replica's key never lapses between refreshes.
 */
export function keyBucketTtlMs(maxTokenTtlMs: number, refreshIntervalMs = DEFAULT_KEY_REFRESH_INTERVAL_MS): number {
  return maxTokenTtlMs + 2 * refreshIntervalMs;
}

/** One entry of the `capvend_keys` bucket (key: the kid). Only public key material. */
export interface KeyEntry {
  v: number;
  kid: string;
  alg: SigningAlg;
  /** The public JWK (kty, crv, x[, y], kid, alg, use). */
  jwk: JsonWebKey;
  /** The replica that signs with it. */
  replica: string;
  /** When this put was made, ms since the epoch. */
  published_at_ms: number;
  /** When the key stopped signing, ms since the epoch; absent while it signs. */
  retired_at_ms?: number;
}

/** Options for `openKeyDirectory`. */
export interface KeyDirectoryOptions {
  kv: KV;
  /** The bucket's effective max age in ms (entries expire locally after their last put plus this). */
  ttlMs: number;
  keyRing: KeyRing;
  link: NatsLink;
  clock: Clock;
  logger: Logger;
  replica: string;
  /** Longest wait for one KV operation, ms. */
  timeoutMs: number;
  /** Default `DEFAULT_KEY_REFRESH_INTERVAL_MS`. */
  refreshIntervalMs?: number;
  /** Bucket name for log lines; default `KEY_BUCKET`. */
  bucket?: string;
  /** The replica's start-up budget for the first publish; default 10 s from the call. */
  startup?: StartupRetry;
}

/**
 * Publishes this replica's public keys and returns once they are acknowledged (so no token
 * is signed with a key other replicas cannot find), then follows every replica's keys.
 * Also waits, within `2 × timeoutMs`, until the keys already in the bucket are loaded.
 */
export async function openKeyDirectory(opts: KeyDirectoryOptions): Promise<KeyDirectory> {
  const dir = new KeyDirectory(opts);
  try {
    // A bucket just created on a cluster may refuse writes for a moment: retry, bounded.
    const budget = opts.startup ?? startupRetry({ clock: opts.clock, logger: opts.logger, timeoutMs: OPEN_PUBLISH_DEADLINE_MS });
    await retryStartup(`first publish of this replica's public keys to ${opts.bucket ?? KEY_BUCKET}`, budget, () => dir.publishAll());
  } catch (err) {
    await dir.close();
    throw new Error(`could not publish this replica's public keys to ${opts.bucket ?? KEY_BUCKET}: ${describeNatsError(err)}`, { cause: err });
  }
  await dir.loaded(opts.timeoutMs * 2);
  return dir;
}

/**
 * Every replica's public keys, for the JWKS route and the verifier. Each replica signs with
 * its own key (private keys never leave their process) and puts its public JWKs into the
 * `capvend_keys` bucket: at start, on every key ring change, and every refresh interval.
 * A key the ring forgets is deleted; a dead replica's keys age out of the bucket once its
 * tokens are dead. `jwks()` is the union, local keys always included.
 */
export class KeyDirectory {
  readonly #opts: KeyDirectoryOptions;
  readonly #bucket: string;
  /** Keys seen in the bucket, by kid, with when they lapse here unless put again. */
  readonly #remote = new Map<string, { jwk: JsonWebKey; expiresAt: number; revision: number; retiredAt?: number }>();
  #version = 0;
  #cache: { local: Jwks; version: number; validUntil: number; value: Jwks; fingerprint: string } | undefined;
  #received = 0;
  #lastRevision = 0;
  #closed = false;
  readonly #abort = new AbortController();
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  readonly #running: Promise<void>;
  readonly #unsubscribe: () => void;
  #refresh: TimerHandle | undefined;
  #loadedWaiters: (() => void)[] = [];

  constructor(opts: KeyDirectoryOptions) {
    this.#opts = opts;
    this.#bucket = opts.bucket ?? KEY_BUCKET;
    this.#unsubscribe = opts.keyRing.onChange((e) => {
      const work = e.type === "removed" ? this.#remove(e.kid) : this.publishAll();
      work.catch((err) => opts.logger.warn({ kid_prefix: e.kid.slice(0, 8), change: e.type, error: describeNatsError(err) }, "public key directory update failed; the next refresh retries"));
    });
    this.#running = superviseSubscription((progress) => this.#follow(progress), {
      name: `key bucket ${this.#bucket}`,
      logger: opts.logger,
      clock: opts.clock,
      signal: this.#abort.signal,
    });
    this.#scheduleRefresh();
  }

  /** The union of this replica's keys and every live key in the bucket; one frozen object until the set changes. */
  jwks(): Jwks {
    const local = this.#opts.keyRing.jwks();
    const now = this.#opts.clock.now();
    const c = this.#cache;
    if (c && c.local === local && c.version === this.#version && now < c.validUntil) return c.value;
    const keys: JsonWebKey[] = [...local.keys];
    const kids = new Set(keys.map((k) => k.kid));
    let validUntil = Number.POSITIVE_INFINITY;
    for (const [kid, r] of this.#remote) {
      if (r.expiresAt <= now || kids.has(kid)) continue;
      keys.push(r.jwk);
      kids.add(kid);
      validUntil = Math.min(validUntil, r.expiresAt);
    }
    const fingerprint = keys.map((k) => k.kid).join(",");
    // A refresh re-put changes nothing a verifier sees: keep the identity callers cache on.
    const value = c && c.fingerprint === fingerprint ? c.value : (Object.freeze({ keys: Object.freeze(keys) as JsonWebKey[] }) as Jwks);
    this.#cache = { local, version: this.#version, validUntil, value, fingerprint };
    return value;
  }

  /** When a key (this replica's or another's) stopped signing, ms since the epoch; undefined while it signs or when unknown. */
  retiredAt(kid: string): number | undefined {
    return this.#opts.keyRing.retiredAt(kid) ?? this.#remote.get(kid)?.retiredAt;
  }

  /** Kids of keys published by other replicas and still live here. */
  remoteKids(): string[] {
    const now = this.#opts.clock.now();
    const local = new Set(this.#opts.keyRing.jwks().keys.map((k) => k.kid));
    return [...this.#remote].filter(([kid, r]) => r.expiresAt > now && !local.has(kid)).map(([kid]) => kid);
  }

  /** Puts every key of this replica's JWKS (the current key and retired ones still verifying); resolves once all are acknowledged. */
  async publishAll(): Promise<void> {
    this.#opts.link.assertConnected("public keys not published");
    await Promise.all(this.#opts.keyRing.jwks().keys.map((jwk) => this.publish(jwk)));
  }

  /**
   * Puts one public key; resolves once acknowledged. A rotation calls it for the new key
   * before the key signs anything, so no replica meets a token whose kid it cannot find.
   */
  async publish(jwk: JsonWebKey): Promise<void> {
    const { kv, clock, timeoutMs, replica, link } = this.#opts;
    link.assertConnected("public key not published");
    const entry: KeyEntry = { v: KEY_ENTRY_VERSION, kid: jwk.kid as string, alg: jwk.alg as SigningAlg, jwk, replica, published_at_ms: clock.now() };
    const retiredAt = this.#opts.keyRing.retiredAt(entry.kid);
    if (retiredAt !== undefined) entry.retired_at_ms = retiredAt;
    // No kid in messages: a thumbprint looks like a secret to the log redactor.
    await withDeadline(kv.put(entry.kid, JSON.stringify(entry)), timeoutMs, clock, "public key put");
  }

  /** Resolves once the entries the bucket held at open are loaded, or after `timeoutMs`. */
  async loaded(timeoutMs: number): Promise<void> {
    let expected: number;
    try {
      expected = (await withDeadline(this.#opts.kv.status(), timeoutMs, this.#opts.clock, "key bucket status")).values;
    } catch {
      return;
    }
    if (this.#received >= expected) return;
    const signal = AbortSignal.timeout(timeoutMs);
    await new Promise<void>((resolve) => {
      const check = () => {
        if (this.#received >= expected || signal.aborted) {
          signal.removeEventListener("abort", check);
          this.#loadedWaiters = this.#loadedWaiters.filter((w) => w !== check);
          resolve();
        }
      };
      this.#loadedWaiters.push(check);
      signal.addEventListener("abort", check);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    this.#abort.abort();
    this.#watch?.stop();
    if (this.#refresh) this.#opts.clock.clearTimeout(this.#refresh);
    this.#refresh = undefined;
    for (const w of this.#loadedWaiters) w();
    await Promise.race([this.#running, sleep(this.#opts.clock, CLOSE_WAIT_MS, new AbortController().signal)]);
  }

  async #remove(kid: string): Promise<void> {
    this.#opts.link.assertConnected("public key not removed");
    await withDeadline(this.#opts.kv.delete(kid), this.#opts.timeoutMs, this.#opts.clock, "public key delete");
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
      this.#received++;
      this.#apply(e);
      for (const w of [...this.#loadedWaiters]) w();
    }
  }

  #apply(e: KvWatchEntry): void {
    const known = this.#remote.get(e.key);
    if (known && known.revision > e.revision) return;
    if (e.operation !== "PUT") {
      if (this.#remote.delete(e.key)) this.#version++;
      return;
    }
    const jwk = parseKeyEntry(e.string(), e.key);
    if (!jwk) {
      this.#opts.logger.warn({ bucket: this.#bucket, key_prefix: e.key.slice(0, 8), revision: e.revision }, "ignoring a key bucket entry that is not a valid public key");
      return;
    }
    this.#remote.set(e.key, { jwk, expiresAt: e.created.getTime() + this.#opts.ttlMs, revision: e.revision, retiredAt: retiredAtOf(e.string()) });
    this.#version++;
  }

  #scheduleRefresh(): void {
    this.#refresh = this.#opts.clock.setTimeout(() => {
      if (this.#closed) return;
      this.publishAll().catch((err) => this.#opts.logger.warn({ error: describeNatsError(err) }, "public key refresh failed; retrying at the next interval"));
      this.#scheduleRefresh();
    }, this.#opts.refreshIntervalMs ?? DEFAULT_KEY_REFRESH_INTERVAL_MS);
  }
}

/** The entry's `retired_at_ms`, when it is a plausible time. */
function retiredAtOf(text: string): number | undefined {
  try {
    const v = (JSON.parse(text) as Partial<KeyEntry>).retired_at_ms;
    return typeof v === "number" && Number.isSafeInteger(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks an entry from the bucket and returns the public JWK to publish, rebuilt from its
 * public members only: anything malformed, any private member (`d`), or a kid that is not
 * the key's RFC 7638 thumbprint is refused.
 */
export function parseKeyEntry(text: string, key: string): JsonWebKey | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== "object" || raw === null) return undefined;
  const entry = raw as Partial<KeyEntry>;
  const jwk = entry.jwk as Record<string, unknown> | undefined;
  if (entry.kid !== key || typeof jwk !== "object" || jwk === null || "d" in jwk) return undefined;
  if (!SIGNING_ALGS.includes(entry.alg as SigningAlg)) return undefined;
  let clean: JsonWebKey;
  if (entry.alg === "EdDSA" && jwk.kty === "OKP" && jwk.crv === "Ed25519" && typeof jwk.x === "string") {
    clean = { kty: "OKP", crv: "Ed25519", x: jwk.x };
  } else if (entry.alg === "ES256" && jwk.kty === "EC" && jwk.crv === "P-256" && typeof jwk.x === "string" && typeof jwk.y === "string") {
    clean = { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y };
  } else {
    return undefined;
  }
  try {
    if (jwkThumbprint(clean) !== key) return undefined;
  } catch {
    return undefined;
  }
  return Object.freeze({ ...clean, kid: key, alg: entry.alg, use: "sig" });
}

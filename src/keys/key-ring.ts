import { generateKeyPair as generateKeyPairCb, type JsonWebKey, type KeyObject } from "node:crypto";
import { inspect, promisify } from "node:util";
import type { Clock } from "../clock.js";
import { loadKeyFiles } from "./key-files.js";
import { openKeyStore, type KeyMeta, type KeyStore } from "./key-store.js";
import { SIGNING_ALGS, toSigningKey, toVerifyingKey, type SigningAlg, type SigningKey } from "./signing-key.js";

const generateKeyPair = promisify(generateKeyPairCb);

/** What happened to a key: generated or loaded, stopped signing, or forgotten. */
export interface KeyChangeEvent {
  type: "added" | "retired" | "removed";
  kid: string;
  alg: SigningAlg;
}

/** A JSON Web Key Set. The key ring's is frozen: copy before changing it. */
export interface Jwks {
  keys: JsonWebKey[];
}

/**
 * The process's signing keys. One key signs; keys retired by rotation stay published until
 * every token they signed has expired (`retiredAt + maxTokenTtlMs`). A retired key's private
 * part is deleted from disk (and dropped from memory) when it stops signing: only its public
 * part stays, as `<kid>.pub.pem`, so a copy of the data directory taken later cannot sign
 * with it.
 */
export interface KeyRing {
  /** The key that signs new tokens. */
  current(): SigningKey;
  /**
   * Public keys of every key that still verifies a live token: the current key plus retired
   * keys until retiredAt + maxTokenTtl (judged by the clock, prune or not). The same frozen
   * object is returned until the set changes, so callers may cache on its identity.
   */
  jwks(): Jwks;
  /** Public key by kid (for local verification), undefined when unknown, past its window or pruned. */
  publicKey(kid: string): KeyObject | undefined;
  /**
   * When the key stopped signing, ms since the epoch; undefined while it signs or when the
   * ring does not hold it. A token it signed later was not signed by this ring.
   */
  retiredAt(kid: string): number | undefined;
  /**
   * Longest token lifetime the ring promises to keep verifying after a rotation, in ms.
   * Minters must not issue tokens that live longer.
   */
  readonly maxTokenTtlMs: number;
  /**
   * Generates a new current key (persisted before use); the old one is retired but stays in
   * the JWKS until every token it signed has expired. Rejects for a ring loaded from
   * `keyFiles` (rotate those by changing the files) and after `close()`.
   */
  rotate(opts?: RotateOptions): Promise<SigningKey>;
  /**
   * Forgets retired keys whose last token has expired and deletes their files (never an
   * operator's `keyFiles`). Called periodically by the owner; returns the removed kids.
   */
  prune(): Promise<string[]>;
  /**
   * Subscribes to key changes (the audit log and a NATS KV publisher listen). Listeners run
   * synchronously after the change is persisted; one that throws is reported as a process
   * warning and does not undo the change. Returns an unsubscribe function.
   */
  onChange(listener: (e: KeyChangeEvent) => void): () => void;
  /** Drops listeners and refuses further rotate/prune; signing and JWKS keep working. Idempotent. */
  close(): void;
}

/** Options of `KeyRing.rotate`. */
export interface RotateOptions {
  /**
   * Runs with the new key before it signs anything (e.g. publishes its public JWK to the
   * other replicas, then waits out the publish delay). While it runs the new key is already
   * in this ring's JWKS and `publicKey`. If it rejects, the rotation is undone and nothing
   * changed.
   */
  beforeActivate?: (key: SigningKey) => Promise<void>;
}

/** Options for `openKeyRing`. */
export interface KeyRingOptions {
  /** Service data directory; keys live in `<dataDir>/keys/` (0700, files 0600). */
  dataDir: string;
  /** Alg of generated keys. A persisted current key of another alg is rotated out at open. */
  alg: SigningAlg;
  clock: Clock;
  /** Longest token lifetime in ms; a retired key stays published this long. */
  maxTokenTtlMs: number;
  /**
   * PEM PKCS#8 private keys (Ed25519 or P-256) to use instead of generated ones. The first
   * signs and must be of `alg`; the others are published for verification only.
   */
  keyFiles?: string[];
}

/**
 * Opens the key ring: loads the persisted keys (or `keyFiles`), generating and persisting a
 * key on first start or when `alg` changed. Throws `KeyFileError` naming a bad file.
 */
export async function openKeyRing(opts: KeyRingOptions): Promise<KeyRing> {
  if (!SIGNING_ALGS.includes(opts.alg)) {
    throw new TypeError(`alg must be one of ${SIGNING_ALGS.join(", ")}, got ${JSON.stringify(opts.alg)}`);
  }
  if (!Number.isSafeInteger(opts.maxTokenTtlMs) || opts.maxTokenTtlMs <= 0) {
    throw new RangeError(`maxTokenTtlMs must be a positive integer of milliseconds, got ${opts.maxTokenTtlMs}`);
  }
  if (opts.keyFiles !== undefined) {
    const keys = await loadKeyFiles(opts.keyFiles, opts.alg, opts.clock.now());
    return new KeyRingImpl(opts, keys, undefined);
  }

  const store = await openKeyStore(opts.dataDir);
  const keys = await store.load();
  const ring = new KeyRingImpl(opts, keys, store);
  await ring.settle();
  return ring;
}

type Listener = (e: KeyChangeEvent) => void;

class KeyRingImpl implements KeyRing {
  readonly maxTokenTtlMs: number;
  readonly #alg: SigningAlg;
  readonly #clock: Clock;
  readonly #store: KeyStore | undefined;
  /** Oldest first; the current key is the last one without `retiredAt`. */
  #keys: SigningKey[];
  #current: SigningKey | undefined;
  /** A rotated-in key during its publish delay: in the JWKS, not yet signing. */
  #pending: SigningKey | undefined;
  #listeners = new Set<Listener>();
  #closed = false;
  // rotate and prune each rewrite the index from #keys; one at a time keeps them from
  // interleaving and losing each other's changes.
  #tail: Promise<unknown> = Promise.resolve();
  #jwksCache: { value: Jwks; version: number; validUntil: number } | undefined;
  #version = 0;

  constructor(opts: KeyRingOptions, keys: SigningKey[], store: KeyStore | undefined) {
    this.maxTokenTtlMs = opts.maxTokenTtlMs;
    this.#alg = opts.alg;
    this.#clock = opts.clock;
    this.#store = store;
    this.#keys = keys;
    this.#current = findCurrent(keys);
  }

  /** Brings a freshly loaded store to a usable state: one current key of the configured alg. */
  async settle(): Promise<void> {
    await this.#exclusive(async () => {
      const now = this.#clock.now();
      const active = this.#keys.filter((k) => k.retiredAt === undefined);
      if (active.length > 1) {
        // Cannot come from this code, but a hand-edited index could: keep the newest.
        const extra = new Set(active.filter((k) => k !== this.#current));
        await this.#store!.saveIndex(this.#keys.map((k) => metaOf(k, extra.has(k) ? now : k.retiredAt)));
        for (const k of extra) k.retiredAt = now;
      }
      if (this.#current === undefined || this.#current.alg !== this.#alg) await this.#rotateLocked();
      // A crash between a rotation's index write and the deletion leaves a private part behind.
      for (const k of this.#keys) if (k.retiredAt !== undefined && k.canSign) await this.#dropPrivateLocked(k);
      await this.#pruneLocked();
    });
  }

  current(): SigningKey {
    // Only reachable empty if settle() failed, and then openKeyRing threw.
    if (this.#current === undefined) throw new Error("key ring has no current key");
    return this.#current;
  }

  jwks(): Jwks {
    const now = this.#clock.now();
    const cached = this.#jwksCache;
    if (cached && cached.version === this.#version && now < cached.validUntil) return cached.value;
    let validUntil = Number.POSITIVE_INFINITY;
    const keys: JsonWebKey[] = [];
    // A key about to sign is published first (verifiers fetch it before they meet it).
    if (this.#pending) keys.push(this.#pending.publicJwk);
    // Newest first: the signing key leads, as verifiers that stop at the first match prefer.
    for (let i = this.#keys.length - 1; i >= 0; i--) {
      const k = this.#keys[i]!;
      if (!this.#published(k, now)) continue;
      if (k.retiredAt !== undefined) validUntil = Math.min(validUntil, k.retiredAt + this.maxTokenTtlMs);
      keys.push(k.publicJwk);
    }
    const value: Jwks = Object.freeze({ keys: Object.freeze(keys) as JsonWebKey[] });
    this.#jwksCache = { value, version: this.#version, validUntil };
    return value;
  }

  publicKey(kid: string): KeyObject | undefined {
    if (this.#pending?.kid === kid) return this.#pending.publicKey;
    const key = this.#keys.find((k) => k.kid === kid);
    return key && this.#published(key, this.#clock.now()) ? key.publicKey : undefined;
  }

  retiredAt(kid: string): number | undefined {
    return this.#keys.find((k) => k.kid === kid)?.retiredAt;
  }

  rotate(opts: RotateOptions = {}): Promise<SigningKey> {
    if (this.#store === undefined) {
      return Promise.reject(
        new Error("this key ring signs with keyFiles: rotate by listing a new key file first and restarting"),
      );
    }
    return this.#exclusive(() => this.#rotateLocked(opts.beforeActivate));
  }

  prune(): Promise<string[]> {
    return this.#exclusive(() => this.#pruneLocked());
  }

  onChange(listener: Listener): () => void {
    if (this.#closed) return () => {};
    // Wrapped so that subscribing the same function twice yields two independent subscriptions.
    const entry: Listener = (e) => listener(e);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  close(): void {
    this.#closed = true;
    this.#listeners.clear();
  }

  toJSON(): { alg: SigningAlg | undefined; current: string | undefined; kids: string[] } {
    return { alg: this.#current?.alg, current: this.#current?.kid, kids: this.#keys.map((k) => k.kid) };
  }

  toString(): string {
    return `KeyRing(${this.#current?.alg ?? "empty"} ${this.#current?.kid ?? "-"}, ${this.#keys.length} keys)`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  #published(k: SigningKey, now: number): boolean {
    return k.retiredAt === undefined || now < k.retiredAt + this.maxTokenTtlMs;
  }

  async #rotateLocked(beforeActivate?: (key: SigningKey) => Promise<void>): Promise<SigningKey> {
    const store = this.#store!;
    const { privateKey } =
      this.#alg === "EdDSA"
        ? await generateKeyPair("ed25519")
        : await generateKeyPair("ec", { namedCurve: "P-256" });
    const fresh = toSigningKey(privateKey, this.#clock.now());
    // Before the key is on disk or signing: a failure here leaves no trace. Meanwhile the
    // key is published in this ring's JWKS, so verifiers can fetch it before it signs.
    if (beforeActivate) {
      this.#pending = fresh;
      this.#version++;
    }
    try {
      return await this.#activateLocked(store, fresh, privateKey, beforeActivate);
    } finally {
      if (this.#pending === fresh) {
        // Failed: unpublish. (On success the swap below already took it out of pending.)
        this.#pending = undefined;
        this.#version++;
      }
    }
  }

  async #activateLocked(store: KeyStore, fresh: SigningKey, privateKey: KeyObject, beforeActivate?: (key: SigningKey) => Promise<void>): Promise<SigningKey> {
    if (beforeActivate) await beforeActivate(fresh);
    const now = this.#clock.now();
    const old = this.#current;
    await store.saveKey(fresh.kid, privateKey);
    // Memory changes only once the index is on disk, so a failed write leaves both as they were.
    const index = this.#keys.map((k) => metaOf(k, k === old ? now : k.retiredAt));
    index.push(metaOf(fresh, undefined));
    try {
      await store.saveIndex(index);
    } catch (err) {
      await store.removeKeys([fresh.kid]).catch(() => {});
      throw err;
    }
    if (old) old.retiredAt = now;
    this.#keys = [...this.#keys, fresh];
    this.#current = fresh;
    this.#pending = undefined;
    this.#version++;
    this.#emit({ type: "added", kid: fresh.kid, alg: fresh.alg });
    if (old) this.#emit({ type: "retired", kid: old.kid, alg: old.alg });
    if (old) await this.#dropPrivateLocked(old).catch((err) => process.emitWarning(`could not delete the private part of retired key ${old.kid}: ${String(err)}; the next start retries`, "KeyRingWarning"));
    return fresh;
  }

  /** Replaces a retired key by its public part, on disk (public file first) and in memory. */
  async #dropPrivateLocked(key: SigningKey): Promise<void> {
    if (!this.#store) return;
    await this.#store.retireKey(key.kid, key.publicKey);
    const verifying = toVerifyingKey(key.publicKey, key.createdAt, key.retiredAt);
    this.#keys = this.#keys.map((k) => (k === key ? verifying : k));
    this.#version++;
  }

  async #pruneLocked(): Promise<string[]> {
    const now = this.#clock.now();
    const gone = this.#keys.filter((k) => !this.#published(k, now));
    if (gone.length === 0) return [];
    const kept = this.#keys.filter((k) => this.#published(k, now));
    if (this.#store) {
      // Index first: a crash before the unlink leaves orphan files that the next open deletes.
      await this.#store.saveIndex(kept.map((k) => metaOf(k, k.retiredAt)));
      await this.#store.removeKeys(gone.map((k) => k.kid));
    }
    this.#keys = kept;
    this.#version++;
    for (const k of gone) this.#emit({ type: "removed", kid: k.kid, alg: k.alg });
    return gone.map((k) => k.kid);
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error("key ring is closed"));
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => {});
    return run;
  }

  #emit(e: KeyChangeEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(e);
      } catch (err) {
        process.emitWarning(`key ring listener failed on ${e.type} ${e.kid}: ${String(err)}`, "KeyRingListenerWarning");
      }
    }
  }
}

function metaOf(k: SigningKey, retiredAt: number | undefined): KeyMeta {
  const meta: KeyMeta = { kid: k.kid, alg: k.alg, createdAt: k.createdAt };
  if (retiredAt !== undefined) meta.retiredAt = retiredAt;
  return meta;
}

function findCurrent(keys: readonly SigningKey[]): SigningKey | undefined {
  for (let i = keys.length - 1; i >= 0; i--) if (keys[i]!.retiredAt === undefined) return keys[i];
  return undefined;
}

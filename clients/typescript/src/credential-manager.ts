import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { authorizedFetch, type AuthorizedFetchOptions } from "./authorized-fetch.js";
import { credentialInterceptor, type CredentialInterceptorOptions } from "./interceptor.js";
import { tokenProvider, type AccessToken } from "./token-provider.js";
import { toolWrapper } from "./tool-wrapper.js";
import { backoffDelay, backoffSettings, type BackoffOptions } from "./backoff.js";
import { systemClock, type Clock } from "./clock.js";
import { CapvendError, type CapvendErrorCode } from "./errors.js";
import { EventFeed } from "./event-feed.js";
import { VendingService, type WatchSessionResponse } from "./gen/capvend/v1/vending_pb.js";
import { TokenCache } from "./token-cache.js";
import { DEFAULT_OPEN_TIMEOUT_MS, HeartbeatInterval, Watchdog } from "./watchdog.js";
import { resumeTokenOf, watchRequest } from "./wire.js";

/** A token with less life left than this is not handed out: the call would arrive with a dead token. 1 s. */
export const DEFAULT_MIN_REMAINING_MS = 1000;
/** How long getToken waits for a token while the stream (re)connects: 30 s. */
export const DEFAULT_GET_TOKEN_TIMEOUT_MS = 30_000;
/**
 * How long after losing the stream held tokens are still handed out: 0, never. Without the
 * stream the manager cannot vouch that a token was not revoked meanwhile, so getToken waits
 * for the resumed stream (which replays what was missed, then pushes fresh tokens). A
 * runtime that prefers availability over that guarantee may allow a grace.
 */
export const DEFAULT_OFFLINE_GRACE_MS = 0;

/** Reasons after which reconnecting cannot help: the session is over or the credential is refused. */
const FATAL: ReadonlySet<CapvendErrorCode> = new Set<CapvendErrorCode>([
  "SESSION_ENDED",
  "SESSION_NOT_FOUND",
  "UNKNOWN_CREDENTIAL",
  "MISSING_CREDENTIAL",
  "WRONG_CALLER",
  "INVALID_ARGUMENT",
]);

/** A grant the runtime wants kept fresh. */
export interface ManagedGrant {
  /** The resource (token audience), e.g. "crm". */
  resource: string;
  /** Scopes the tokens carry; a subset of the session's grant. */
  scopes: string[];
  /** Token lifetime to ask for, seconds; the server default when absent. */
  ttlSeconds?: number;
}

/**
 * A transport for one endpoint. A factory may return `{ transport, close }` so the manager
 * can free the connection when it replaces a dead one and at close (for example an
 * `Http2SessionManager`'s `abort`).
 */
export type TransportFactory = (endpoint: string) => Transport | { transport: Transport; close(): void };

/** Settings of a CredentialManager. */
export interface CredentialManagerOptions {
  /** capvend base URLs, tried in order; the manager fails over to the next one. At least one. */
  endpoints: string[];
  /**
   * Makes the transport for an endpoint: `createGrpcTransport` or `createConnectTransport`
   * from @connectrpc/connect-node, `createGrpcWebTransport`/`createConnectTransport` from
   * @connectrpc/connect-web in a browser. Called again to replace a connection found dead.
   */
  transport: TransportFactory;
  /** The session credential from StartSession. Sent as a bearer, kept in this object only. */
  sessionCredential: string;
  /** Grants to keep fresh; at least one, one per resource. */
  grants: ManagedGrant[];
  /** Resume token saved by an earlier process of this runtime (see `resumeToken()`): the stream continues where it stopped. */
  resumeToken?: string;
  /** Reconnect backoff (full jitter); defaults 100 ms doubling to 10 s. */
  backoff?: BackoffOptions;
  /**
   * Silence after which the stream counts as dead and is replaced, ms. Default: 3 × the
   * server's heartbeat interval as observed on the stream (45 s until two heartbeats were seen).
   */
  heartbeatTimeoutMs?: number;
  /** How long a new stream may take to send its first message before it counts as dead, ms; default DEFAULT_OPEN_TIMEOUT_MS (10 s). */
  openTimeoutMs?: number;
  /** Least remaining life of a token getToken returns, ms; default DEFAULT_MIN_REMAINING_MS. */
  minRemainingMs?: number;
  /** How long held tokens are still handed out after the stream is lost, ms; default DEFAULT_OFFLINE_GRACE_MS. */
  offlineGraceMs?: number;
  /** How long getToken waits by default, ms; default DEFAULT_GET_TOKEN_TIMEOUT_MS. */
  getTokenTimeoutMs?: number;
  /** Time source; default the system clock. */
  clock?: Clock;
  /** Random numbers in [0, 1) for jitter; default Math.random. */
  random?: () => number;
}

/** Where the manager is in its life. */
export type CredentialManagerStatus = "idle" | "connecting" | "ready" | "reconnecting" | "ended" | "failed" | "closed";

/** What `state()` reports, for health checks. Never holds a token. */
export interface CredentialManagerState {
  status: CredentialManagerStatus;
  /** Whether a stream is open now. */
  connected: boolean;
  /** The endpoint of the current (or last) stream. */
  endpoint: string | undefined;
  /** Failed attempts since the last stream opened. */
  consecutiveFailures: number;
  /** Why the last attempt or stream ended. */
  lastError: { code: CapvendErrorCode; message: string } | undefined;
  /** Last message from the server, ms since the epoch. */
  lastMessageAt: number | undefined;
  /** The heartbeat interval learned from the stream, ms. */
  heartbeatIntervalMs: number | undefined;
  /** Whether a resume token is held. */
  resumable: boolean;
  /** Every grant: the token it holds (by id) or why it stopped. */
  grants: { resource: string; tokenId?: string; expiresAt?: number; revoked?: string }[];
}

/** Events, naming tokens by id only. Times are ms since the epoch. */
export type CredentialEvent =
  | { type: "connected"; endpoint: string; resumed: boolean }
  | { type: "renewed"; resource: string; tokenId: string; expiresAt: number; replacesTokenId: string | undefined }
  | { type: "revoked"; tokenIds: string[]; resources: string[]; reason: string }
  | { type: "ended"; code: CapvendErrorCode; reason: string }
  | { type: "disconnected"; endpoint: string; code: CapvendErrorCode; retryInMs: number }
  | { type: "reconnected"; endpoint: string; resumed: boolean; downMs: number };

interface Connection {
  readonly endpoint: string;
  readonly client: Client<typeof VendingService>;
  readonly close: () => void;
}

const CLOSED_WATCHDOG = "watchdog";

/**
 * The runtime side of an agent session. It holds one WatchSession stream, keeps the newest
 * token of each grant in memory, drops a token the moment a revocation names it, and keeps
 * the stream alive: a heartbeat watchdog replaces a silent connection, failures move to the
 * next endpoint after a full-jitter backoff, and a reconnect resumes with the resume token
 * so no revocation is missed. Only a fatal reason (the session ended, the credential was
 * refused) stops it. Agent code asks `getToken`, or better uses `authorizedFetch` and the
 * interceptor, so it never stores a token and the LLM never sees one.
 */
export class CredentialManager {
  readonly #endpoints: readonly string[];
  readonly #factory: TransportFactory;
  readonly #credential: string;
  readonly #grants: readonly ManagedGrant[];
  readonly #byResource = new Map<string, number>();
  readonly #backoff: Required<BackoffOptions>;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #fixedHeartbeatTimeout: number | undefined;
  readonly #minRemainingMs: number;
  readonly #offlineGraceMs: number;
  readonly #getTokenTimeoutMs: number;
  readonly #openTimeoutMs: number;
  readonly #cache = new TokenCache();
  readonly #feed = new EventFeed<CredentialEvent>();
  readonly #heartbeat = new HeartbeatInterval();
  readonly #connections = new Map<number, Connection>();
  readonly #waiters = new Set<() => void>();
  #status: CredentialManagerStatus = "idle";
  #terminal: CapvendError | undefined;
  #resumeToken: string | undefined;
  #endpointIndex = 0;
  #failures = 0;
  #lastError: CapvendError | undefined;
  #lastMessageAt: number | undefined;
  #connected = false;
  #disconnectedAt: number | undefined;
  #everConnected = false;
  /** Streams opened so far; the number of the current (or last) one. */
  #stream = 0;
  #attempt: AbortController | undefined;
  #sleep: { handle: unknown; resolve: () => void } | undefined;
  #loop: Promise<void> | undefined;

  constructor(opts: CredentialManagerOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) throw new TypeError("endpoints: name at least one capvend base URL");
    for (const [i, e] of opts.endpoints.entries()) if (typeof e !== "string" || e === "") throw new TypeError(`endpoints[${i}]: must be a non-empty base URL`);
    if (typeof opts.transport !== "function") throw new TypeError("transport: must be a function (endpoint) => Transport");
    if (typeof opts.sessionCredential !== "string" || opts.sessionCredential === "") throw new TypeError("sessionCredential: must be the non-empty credential from StartSession");
    if (!Array.isArray(opts.grants) || opts.grants.length === 0) throw new TypeError("grants: name at least one grant");
    opts.grants.forEach((g, i) => {
      if (typeof g.resource !== "string" || g.resource === "") throw new TypeError(`grants[${i}].resource: must be a non-empty string`);
      if (!Array.isArray(g.scopes) || g.scopes.length === 0) throw new TypeError(`grants[${i}].scopes: name at least one scope`);
      if (g.ttlSeconds !== undefined && !(Number.isInteger(g.ttlSeconds) && g.ttlSeconds > 0)) throw new TypeError(`grants[${i}].ttlSeconds: must be a positive whole number of seconds`);
      if (this.#byResource.has(g.resource)) throw new TypeError(`grants[${i}].resource: "${g.resource}" is already granted; one grant per resource`);
      this.#byResource.set(g.resource, i);
    });
    const nonNegative = (name: string, v: number | undefined, d: number): number => {
      if (v === undefined) return d;
      if (!Number.isFinite(v) || v < 0) throw new TypeError(`${name}: must be a non-negative number of milliseconds, got ${v}`);
      return v;
    };
    this.#endpoints = [...opts.endpoints];
    this.#factory = opts.transport;
    this.#credential = opts.sessionCredential;
    this.#grants = opts.grants.map((g) => ({ ...g, scopes: [...g.scopes] }));
    this.#backoff = backoffSettings(opts.backoff);
    this.#clock = opts.clock ?? systemClock;
    this.#random = opts.random ?? Math.random;
    this.#fixedHeartbeatTimeout = opts.heartbeatTimeoutMs === undefined ? undefined : nonNegative("heartbeatTimeoutMs", opts.heartbeatTimeoutMs, 0) || undefined;
    this.#minRemainingMs = nonNegative("minRemainingMs", opts.minRemainingMs, DEFAULT_MIN_REMAINING_MS);
    this.#offlineGraceMs = nonNegative("offlineGraceMs", opts.offlineGraceMs, DEFAULT_OFFLINE_GRACE_MS);
    this.#getTokenTimeoutMs = nonNegative("getTokenTimeoutMs", opts.getTokenTimeoutMs, DEFAULT_GET_TOKEN_TIMEOUT_MS);
    this.#openTimeoutMs = nonNegative("openTimeoutMs", opts.openTimeoutMs, DEFAULT_OPEN_TIMEOUT_MS);
    if (opts.resumeToken !== undefined && opts.resumeToken !== "") this.#resumeToken = opts.resumeToken;
  }

  /**
   * Opens the stream (once; later calls only wait) and resolves when every live grant holds
   * a token. Rejects with the fatal CapvendError if the session cannot be watched, or TIMEOUT.
   */
  async start(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    this.#ensureRunning();
    await this.#waitUntil(() => this.#grants.every((_, i) => this.#cache.stopped(i) !== undefined || this.#usable(i) !== undefined), opts, "every grant to hold a token");
  }

  /**
   * A valid token for `resource` (and `scopes`, which must be among the grant's; default
   * the grant's). Answers from memory while an unrevoked token with at least
   * `minRemainingMs` of life is held; otherwise waits for the stream (up to
   * `getTokenTimeoutMs`). Rejects with a CapvendError: RESOURCE_NOT_GRANTED or
   * SCOPE_NOT_GRANTED (not among this manager's grants), GRANT_REVOKED, SESSION_ENDED or
   * another fatal reason, CLOSED, TIMEOUT.
   */
  async getToken(resource: string, scopes?: readonly string[], opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<string> {
    const grant = this.#grantOf(resource, scopes);
    const held = this.#usable(grant);
    if (held !== undefined) return held;
    this.#ensureRunning();
    let token: string | undefined;
    await this.#waitUntil(() => (token = this.#usable(grant)) !== undefined || this.#cache.stopped(grant) !== undefined, opts, `a token for "${resource}"`);
    const stopped = this.#cache.stopped(grant);
    if (token === undefined && stopped) throw new CapvendError("GRANT_REVOKED", `the grant for "${resource}" was revoked: ${stopped.reason}`, { metadata: { resource } });
    return token!;
  }

  /**
   * A token for one retry after a resource server refused the held one: issued just now by
   * IssueToken for the grant's scopes and lifetime, handed to the caller and not kept (the
   * stream's tokens stay the ones getToken returns).
   */
  async freshToken(resource: string, scopes?: readonly string[], opts: { signal?: AbortSignal } = {}): Promise<string> {
    const grant = this.#grantOf(resource, scopes);
    if (this.#terminal) throw this.#terminal;
    const stopped = this.#cache.stopped(grant);
    if (stopped) throw new CapvendError("GRANT_REVOKED", `the grant for "${resource}" was revoked: ${stopped.reason}`, { metadata: { resource } });
    const g = this.#grants[grant]!;
    try {
      const res = await this.#connection(this.#endpointIndex).client.issueToken(
        { resource: g.resource, scopes: [...(scopes ?? g.scopes)], ttl: g.ttlSeconds === undefined ? undefined : { seconds: BigInt(g.ttlSeconds), nanos: 0 } },
        { headers: { authorization: `Bearer ${this.#credential}` }, signal: opts.signal },
      );
      if (!res.token) throw new CapvendError("INTERNAL", "IssueToken answered without a token");
      return res.token.accessToken;
    } catch (err) {
      throw CapvendError.from(err);
    }
  }

  /** A fetch that sends the current token for `resource`, keeps a Request's headers, and retries once on 401 (see authorizedFetch). */
  authorizedFetch(resource: string, opts: AuthorizedFetchOptions = {}): typeof fetch {
    this.#grantOf(resource, opts.scopes);
    return authorizedFetch(this, resource, opts);
  }

  /** A Connect interceptor attaching the token for `resource` to calls over any Transport (see credentialInterceptor). */
  interceptor(resource: string, opts: CredentialInterceptorOptions = {}): Interceptor {
    this.#grantOf(resource, opts.scopes);
    return credentialInterceptor(this, resource, opts);
  }

  /** A `() => Promise<{ token, expiresAt }>` for SDKs that take a token callback (see tokenProvider). */
  tokenProvider(resource: string, opts: { scopes?: readonly string[] } = {}): () => Promise<AccessToken> {
    this.#grantOf(resource, opts.scopes);
    return tokenProvider(this, resource, opts);
  }

  /** Wraps a tool: it gets an authorized fetch, and its result and errors are scrubbed of tokens (see toolWrapper). */
  toolWrapper<A extends unknown[], R>(resource: string, fn: (fetch: typeof globalThis.fetch, ...args: A) => Promise<R> | R, opts: AuthorizedFetchOptions = {}): (...args: A) => Promise<R> {
    this.#grantOf(resource, opts.scopes);
    return toolWrapper(this, resource, fn, opts);
  }

  /** The expiry (ms since the epoch) of the token getToken would return now, if any. */
  expiresAt(resource: string): number | undefined {
    const grant = this.#grantOf(resource, undefined);
    return this.#usable(grant) === undefined ? undefined : this.#cache.held(grant)!.expiresAt;
  }

  /**
   * Events from now on, as an async iterable: renewed, revoked, ended, connected,
   * disconnected, reconnected. Carries ids and expiries, never tokens. Ends at close() or
   * the session's end, or when `signal` aborts; a reader that falls 1024 events behind
   * loses the oldest.
   */
  events(opts: { signal?: AbortSignal } = {}): AsyncIterableIterator<CredentialEvent> {
    return this.#feed.subscribe(opts.signal);
  }

  /** The position to resume from, for a process that restarts (pass it as `resumeToken`). Opaque. */
  resumeToken(): string | undefined {
    return this.#resumeToken;
  }

  /** A snapshot for health checks. */
  state(): CredentialManagerState {
    return {
      status: this.#status,
      connected: this.#connected,
      endpoint: this.#endpoints[this.#endpointIndex % this.#endpoints.length],
      consecutiveFailures: this.#failures,
      lastError: this.#lastError && { code: this.#lastError.code, message: this.#lastError.message },
      lastMessageAt: this.#lastMessageAt,
      heartbeatIntervalMs: this.#heartbeat.intervalMs,
      resumable: this.#resumeToken !== undefined,
      grants: this.#grants.map((g, i) => {
        const t = this.#cache.held(i);
        const stopped = this.#cache.stopped(i);
        return { resource: g.resource, ...(t && { tokenId: t.tokenId, expiresAt: t.expiresAt }), ...(stopped && { revoked: stopped.reason }) };
      }),
    };
  }

  /** Token strings held now, for scrubbing output (never logged). */
  secrets(): string[] {
    return [...this.#cache.secrets(), this.#credential];
  }

  /** Stops the stream, forgets every token, ends event iterations, frees timers and connections. Idempotent. */
  async close(): Promise<void> {
    this.#finish(new CapvendError("CLOSED", "the credential manager was closed"), "closed");
    await this.#loop;
    for (const c of this.#connections.values()) c.close();
    this.#connections.clear();
  }

  #grantOf(resource: string, scopes: readonly string[] | undefined): number {
    const grant = this.#byResource.get(resource);
    if (grant === undefined) throw new CapvendError("RESOURCE_NOT_GRANTED", `"${resource}" is not among this manager's grants`, { metadata: { resource } });
    if (scopes !== undefined) {
      const granted = this.#grants[grant]!.scopes;
      const missing = scopes.find((s) => !granted.includes(s));
      if (missing !== undefined) throw new CapvendError("SCOPE_NOT_GRANTED", `scope "${missing}" is not in this manager's grant for "${resource}"`, { metadata: { resource, scope: missing } });
    }
    return grant;
  }

  /** The JWT getToken may return for `grant` now: held, unrevoked, with life left, and vouched for. */
  #usable(grant: number): string | undefined {
    if (this.#terminal) return undefined;
    const now = this.#clock.now();
    if (!this.#connected && (this.#disconnectedAt === undefined || now - this.#disconnectedAt >= this.#offlineGraceMs)) return undefined;
    const t = this.#cache.usable(grant, now, this.#minRemainingMs);
    // Only a token the current stream pushed (or, offline, the last stream): on a resumed
    // stream the replay is applied first and fresh tokens follow at once, so an older
    // token is never handed out in between.
    return t !== undefined && t.stream === this.#stream ? t.jwt : undefined;
  }

  #ensureRunning(): void {
    if (this.#terminal) throw this.#terminal;
    this.#loop ??= this.#run();
  }

  async #waitUntil(done: () => boolean, opts: { timeoutMs?: number; signal?: AbortSignal }, what: string): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? this.#getTokenTimeoutMs;
    const deadline = this.#clock.now() + timeoutMs;
    for (;;) {
      if (done()) return;
      if (this.#terminal) throw this.#terminal;
      if (opts.signal?.aborted) throw new CapvendError("TIMEOUT", `gave up waiting for ${what}: aborted`, { cause: opts.signal.reason });
      const left = deadline - this.#clock.now();
      if (left <= 0) {
        const last = this.#lastError ? ` (last failure: ${this.#lastError.code})` : "";
        throw new CapvendError("TIMEOUT", `no answer within ${timeoutMs} ms waiting for ${what}${last}`, { cause: this.#lastError });
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#clock.clearTimeout(timer);
          this.#waiters.delete(wake);
          opts.signal?.removeEventListener("abort", wake);
          resolve();
        };
        // Also wake when a held token may fall under the minimum remaining life.
        const timer = this.#clock.setTimeout(wake, Math.min(left, 1000));
        this.#waiters.add(wake);
        opts.signal?.addEventListener("abort", wake, { once: true });
      });
    }
  }

  #wakeAll(): void {
    for (const w of [...this.#waiters]) w();
  }

  #emit(e: CredentialEvent): void {
    this.#feed.publish(e);
  }

  #connection(index: number): Connection {
    const i = index % this.#endpoints.length;
    let c = this.#connections.get(i);
    if (!c) {
      const endpoint = this.#endpoints[i]!;
      const made = this.#factory(endpoint);
      const transport = "transport" in made && typeof (made as { close?: unknown }).close === "function" ? (made as { transport: Transport; close(): void }) : undefined;
      c = {
        endpoint,
        client: createClient(VendingService, transport ? transport.transport : (made as Transport)),
        close: () => {
          try {
            transport?.close();
          } catch {
            // a transport that fails to close is gone either way
          }
        },
      };
      this.#connections.set(i, c);
    }
    return c;
  }

  /** Drops the connection of an endpoint, so the next attempt builds a new one. */
  #replaceConnection(index: number): void {
    const i = index % this.#endpoints.length;
    this.#connections.get(i)?.close();
    this.#connections.delete(i);
  }

  async #run(): Promise<void> {
    while (!this.#terminal) {
      const live = this.#grants.map((_, i) => i).filter((i) => this.#cache.stopped(i) === undefined);
      if (live.length === 0) {
        // Every grant was revoked: nothing left to keep fresh.
        this.#status = "idle";
        this.#connected = false;
        this.#wakeAll();
        return;
      }
      const index = this.#endpointIndex;
      const conn = this.#connection(index);
      this.#status = this.#everConnected ? "reconnecting" : "connecting";
      const attempt = new AbortController();
      this.#attempt = attempt;
      const resumed = this.#resumeToken !== undefined;
      this.#heartbeat.resetStream();
      let opened = false;
      const deadline = () => {
        const silence = this.#heartbeat.timeoutMs(this.#fixedHeartbeatTimeout);
        return opened ? silence : Math.max(silence, this.#openTimeoutMs);
      };
      const watchdog = new Watchdog(this.#clock, deadline, () => attempt.abort(CLOSED_WATCHDOG));
      let failure: CapvendError;
      try {
        const stream = conn.client.watchSession(watchRequest(this.#grants, live, this.#resumeToken), {
          signal: attempt.signal,
          headers: { authorization: `Bearer ${this.#credential}` },
        });
        for await (const m of stream) {
          this.#lastMessageAt = this.#clock.now();
          if (!opened) {
            opened = true;
            this.#opened(conn.endpoint, resumed);
          }
          this.#apply(m, live);
          if (this.#terminal) break;
          // After applying: a heartbeat may just have taught the interval the deadline uses.
          watchdog.kick();
        }
        failure = new CapvendError("TRANSPORT", "the server closed the stream without ending the session");
      } catch (err) {
        failure = attempt.signal.reason === CLOSED_WATCHDOG ? new CapvendError("WATCHDOG", `no message for ${deadline()} ms: the connection is dead`) : CapvendError.from(err);
      } finally {
        watchdog.stop();
        this.#attempt = undefined;
      }
      if (this.#terminal) break;
      this.#lastError = failure;
      if (FATAL.has(failure.code)) {
        this.#finish(failure, failure.code === "SESSION_ENDED" ? "ended" : "failed");
        break;
      }
      if (this.#connected) {
        this.#connected = false;
        this.#disconnectedAt = this.#clock.now();
      }
      if (failure.code === "WATCHDOG" || failure.code === "TRANSPORT") this.#replaceConnection(index);
      if (failure.code === "RESUME_TOKEN_EXPIRED") {
        // Too old to replay from: start fresh. Held tokens may have been revoked meanwhile
        // and no replay will say so, so they go; revoked grants stay revoked (they are
        // not asked for again).
        this.#resumeToken = undefined;
        this.#cache.dropAll();
        this.#emit({ type: "disconnected", endpoint: conn.endpoint, code: failure.code, retryInMs: 0 });
        this.#wakeAll();
        continue;
      }
      // Move on: the next endpoint, after a full-jitter backoff.
      if (this.#endpoints.length > 1) this.#endpointIndex = (index + 1) % this.#endpoints.length;
      const delay = backoffDelay(this.#failures, this.#backoff, this.#random);
      this.#failures++;
      this.#emit({ type: "disconnected", endpoint: conn.endpoint, code: failure.code, retryInMs: delay });
      this.#wakeAll();
      await this.#pause(delay);
    }
    this.#connected = false;
  }

  #opened(endpoint: string, resumed: boolean): void {
    const downMs = this.#disconnectedAt === undefined ? 0 : this.#clock.now() - this.#disconnectedAt;
    this.#connected = true;
    this.#stream++;
    this.#disconnectedAt = undefined;
    this.#failures = 0;
    this.#emit(this.#everConnected ? { type: "reconnected", endpoint, resumed, downMs } : { type: "connected", endpoint, resumed });
    this.#everConnected = true;
  }

  #pause(ms: number): Promise<void> {
    if (ms <= 0 || this.#terminal) return Promise.resolve();
    return new Promise((resolve) => {
      const handle = this.#clock.setTimeout(() => {
        this.#sleep = undefined;
        resolve();
      }, ms);
      this.#sleep = { handle, resolve };
    });
  }

  #apply(m: WatchSessionResponse, requested: number[]): void {
    if (this.#terminal) return;
    const event = m.event;
    switch (event.case) {
      case "tokenIssued": {
        const grant = requested[event.value.grantIndex];
        const t = event.value.token;
        if (grant === undefined || !t) break;
        const expiresAt = t.expiresAt ? timestampDate(t.expiresAt).getTime() : 0;
        if (this.#cache.put(grant, { jwt: t.accessToken, tokenId: t.tokenId, expiresAt, scopes: t.scopes, stream: this.#stream })) {
          if (this.#status !== "ended") this.#status = "ready";
          this.#emit({ type: "renewed", resource: this.#grants[grant]!.resource, tokenId: t.tokenId, expiresAt, replacesTokenId: event.value.replacesTokenId || undefined });
        }
        break;
      }
      case "tokensRevoked": {
        // The cache forgets first, so no getToken can return a token after its revocation was heard.
        const tokenIds = new Set(event.value.tokenIds);
        const lost = new Set(this.#cache.revokeTokens(tokenIds));
        for (const i of event.value.grantIndexes) {
          const grant = requested[i];
          if (grant === undefined) continue;
          // A stopped grant's held token goes with it (a replayed revocation may not name it).
          const held = this.#cache.held(grant);
          if (held) tokenIds.add(held.tokenId);
          this.#cache.stop(grant, event.value.reason);
          lost.add(grant);
        }
        this.#emit({ type: "revoked", tokenIds: [...tokenIds], resources: [...lost].map((g) => this.#grants[g]!.resource), reason: event.value.reason });
        break;
      }
      case "sessionEnded":
        this.#finish(new CapvendError("SESSION_ENDED", `the session ended: ${event.value.reason}`), "ended", event.value.reason);
        break;
      case "heartbeat":
        if (event.value.time) this.#heartbeat.observe(timestampDate(event.value.time).getTime());
        break;
      case "reconnect":
      case undefined:
        break;
    }
    // Advance only after the message is applied: a resume never skips what was not.
    const resumeToken = resumeTokenOf(m);
    if (resumeToken !== undefined) this.#resumeToken = resumeToken;
    this.#wakeAll();
  }

  #finish(error: CapvendError, status: "ended" | "failed" | "closed", reason?: string): void {
    if (this.#terminal) return;
    this.#terminal = error;
    this.#status = status;
    this.#connected = false;
    this.#cache.dropAll();
    this.#attempt?.abort();
    if (this.#sleep) {
      this.#clock.clearTimeout(this.#sleep.handle);
      this.#sleep.resolve();
      this.#sleep = undefined;
    }
    if (status !== "closed") this.#emit({ type: "ended", code: error.code, reason: reason ?? error.message });
    this.#feed.close();
    this.#wakeAll();
  }
}

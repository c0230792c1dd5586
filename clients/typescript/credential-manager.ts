import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { VendingService, type WatchSessionResponse } from "../../src/gen/capvend/v1/vending_pb.js";

/** First reconnect delay; doubles up to RECONNECT_MAX_DELAY_MS, with full jitter. */
export const RECONNECT_INITIAL_DELAY_MS = 100;
export const RECONNECT_MAX_DELAY_MS = 5_000;
/** A token this close to expiry is not handed out: the request would arrive with a dead token. */
export const EXPIRY_SKEW_MS = 1_000;

/** A grant the runtime wants kept fresh. */
export interface ManagedGrant {
  resource: string;
  scopes: string[];
  /** Token lifetime to ask for, seconds; the server default when absent. */
  ttlSeconds?: number;
}

export interface CredentialManagerOptions {
  /** capvend replicas; reconnects go round the list. */
  baseUrls: string[];
  /** The session credential from StartSession. Kept in this object only. */
  sessionCredential: string;
  grants: ManagedGrant[];
  /** Transport per replica; gRPC over HTTP/2 by default. */
  transport?: (baseUrl: string) => Transport;
  /** What happened, for the runtime's own logs. Never carries a token or the credential. */
  onEvent?: (e: CredentialManagerEvent) => void;
}

export type CredentialManagerEvent =
  | { type: "connected"; baseUrl: string; resumeToken: string }
  | { type: "token"; resource: string; tokenId: string; expiresAt: number }
  | { type: "revoked"; tokenIds: string[]; resources: string[]; reason: string }
  | { type: "disconnected"; code: Code | undefined; retryInMs: number }
  | { type: "ended"; reason: string }
  | { type: "failed"; code: Code; message: string };

export type CredentialManagerState = "idle" | "connecting" | "ready" | "reconnecting" | "ended" | "failed" | "closed";

/** Why a token cannot be had: the grant was revoked, the session ended, or the manager failed or closed. */
export class CredentialUnavailableError extends Error {
  constructor(
    readonly resource: string,
    readonly why: "revoked" | "ended" | "failed" | "closed" | "timeout",
    detail: string,
  ) {
    super(`no token for "${resource}": ${detail}`);
    this.name = "CredentialUnavailableError";
  }
}

interface Held {
  jwt: string;
  tokenId: string;
  expiresAt: number;
}

/** Codes after which reconnecting cannot help. */
const TERMINAL = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument, Code.NotFound]);

/**
 * The runtime side of a session. It holds one WatchSession stream, keeps the newest token
 * of each grant, drops a token the moment the server revokes it, and reconnects (to the next
 * replica, with the resume token) when the stream drops or the server drains. Agent code asks
 * `token(resource)` or uses `fetch(resource)`; it never stores a token, and the LLM never
 * sees one.
 */
export class CredentialManager {
  readonly #opts: CredentialManagerOptions;
  readonly #clients: Client<typeof VendingService>[];
  readonly #held = new Map<string, Held>();
  readonly #stopped = new Map<string, string>();
  readonly #waiters = new Set<() => void>();
  #state: CredentialManagerState = "idle";
  #terminal: { why: "ended" | "failed" | "closed"; detail: string } | undefined;
  #resumeToken = "";
  #replica = 0;
  #abort = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(opts: CredentialManagerOptions) {
    if (opts.baseUrls.length === 0) throw new TypeError("baseUrls must name at least one replica");
    if (opts.grants.length === 0) throw new TypeError("grants must name at least one grant");
    this.#opts = opts;
    this.#clients = opts.baseUrls.map((baseUrl) => {
      const transport =
        opts.transport?.(baseUrl) ??
        createGrpcTransport({
          baseUrl,
          interceptors: [
            (next) => (req) => {
              req.header.set("authorization", `Bearer ${opts.sessionCredential}`);
              return next(req);
            },
          ],
        });
      return createClient(VendingService, transport);
    });
  }

  get state(): CredentialManagerState {
    return this.#state;
  }

  /** The resume token of the last event seen (opaque); empty before the first. */
  get resumeToken(): string {
    return this.#resumeToken;
  }

  /** Opens the stream (idempotent). */
  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run();
  }

  /**
   * A valid token for `resource`, waiting for one when the stream is (re)connecting.
   * Rejects with CredentialUnavailableError when the grant was revoked or the session ended.
   */
  async token(resource: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<string> {
    if (!this.#opts.grants.some((g) => g.resource === resource)) {
      throw new CredentialUnavailableError(resource, "failed", "not among this manager's grants");
    }
    this.start();
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    for (;;) {
      const held = this.#held.get(resource);
      if (held && held.expiresAt - EXPIRY_SKEW_MS > Date.now()) return held.jwt;
      const stopped = this.#stopped.get(resource);
      if (stopped !== undefined) throw new CredentialUnavailableError(resource, "revoked", stopped);
      if (this.#terminal) throw new CredentialUnavailableError(resource, this.#terminal.why, this.#terminal.detail);
      const left = deadline - Date.now();
      if (left <= 0 || opts.signal?.aborted) throw new CredentialUnavailableError(resource, "timeout", "no valid token arrived in time");
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          opts.signal?.removeEventListener("abort", wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, held ? Math.max(0, held.expiresAt - EXPIRY_SKEW_MS - Date.now()) + 1 : left));
        this.#waiters.add(wake);
        opts.signal?.addEventListener("abort", wake, { once: true });
      });
    }
  }

  /** A fetch that sends `Authorization: Bearer <current token for resource>`. */
  fetch(resource: string): typeof fetch {
    return async (input, init) => {
      const headers = new Headers(init?.headers);
      headers.set("authorization", `Bearer ${await this.token(resource)}`);
      return fetch(input, { ...init, headers });
    };
  }

  /** Stops the stream and forgets every token. Idempotent. */
  async close(): Promise<void> {
    this.#finish("closed", "closed by the runtime");
    this.#abort.abort();
    await this.#loop?.catch(() => undefined);
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#terminal) {
      const client = this.#clients[this.#replica % this.#clients.length]!;
      const baseUrl = this.#opts.baseUrls[this.#replica % this.#clients.length]!;
      this.#state = this.#resumeToken !== "" ? "reconnecting" : "connecting";
      let code: Code | undefined;
      try {
        const stream = client.watchSession(
          {
            grants: this.#opts.grants.map((g) => ({ resource: g.resource, scopes: g.scopes, ttl: g.ttlSeconds ? { seconds: BigInt(g.ttlSeconds) } : undefined })),
            resumeToken: this.#resumeToken,
          },
          { signal: this.#abort.signal },
        );
        let announced = false;
        for await (const m of stream) {
          if (!announced) {
            announced = true;
            failures = 0;
            this.#opts.onEvent?.({ type: "connected", baseUrl, resumeToken: this.#resumeToken });
          }
          this.#resumeToken = m.resumeToken;
          this.#apply(m.event);
          if (this.#terminal) return;
        }
        // The server ended the stream without saying the session ended: reconnect.
      } catch (err) {
        if (this.#terminal) return;
        const e = ConnectError.from(err);
        code = e.code;
        if (e.code === Code.FailedPrecondition) {
          // RESUME_TOKEN_EXPIRED: every token held has expired; start afresh.
          this.#resumeToken = "";
          this.#held.clear();
        } else if (TERMINAL.has(e.code)) {
          this.#finish("failed", `${Code[e.code]}: ${e.rawMessage}`);
          this.#opts.onEvent?.({ type: "failed", code: e.code, message: e.rawMessage });
          return;
        }
      }
      // Next replica, full-jitter exponential backoff.
      this.#replica++;
      const cap = Math.min(RECONNECT_MAX_DELAY_MS, RECONNECT_INITIAL_DELAY_MS * 2 ** failures++);
      const delay = Math.round(Math.random() * cap);
      this.#opts.onEvent?.({ type: "disconnected", code, retryInMs: delay });
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  #apply(event: WatchSessionResponse["event"]): void {
    switch (event.case) {
      case "tokenIssued": {
        const grant = this.#opts.grants[event.value.grantIndex];
        const t = event.value.token;
        if (!grant || !t) return;
        const expiresAt = Number(t.expiresAt?.seconds ?? 0n) * 1000;
        this.#held.set(grant.resource, { jwt: t.accessToken, tokenId: t.tokenId, expiresAt });
        this.#state = "ready";
        this.#opts.onEvent?.({ type: "token", resource: grant.resource, tokenId: t.tokenId, expiresAt });
        break;
      }
      case "tokensRevoked": {
        const ids = new Set(event.value.tokenIds);
        const resources: string[] = [];
        for (const [resource, held] of this.#held) {
          if (ids.has(held.tokenId)) {
            this.#held.delete(resource);
            resources.push(resource);
          }
        }
        for (const i of event.value.grantIndexes) {
          const grant = this.#opts.grants[i];
          if (!grant) continue;
          this.#held.delete(grant.resource);
          this.#stopped.set(grant.resource, `revoked: ${event.value.reason}`);
          if (!resources.includes(grant.resource)) resources.push(grant.resource);
        }
        this.#opts.onEvent?.({ type: "revoked", tokenIds: [...ids], resources, reason: event.value.reason });
        break;
      }
      case "sessionEnded":
        this.#finish("ended", `session ended: ${event.value.reason}`);
        this.#opts.onEvent?.({ type: "ended", reason: event.value.reason });
        break;
      case "reconnect":
      case "heartbeat":
      case undefined:
        break;
    }
    this.#wakeAll();
  }

  #finish(why: "ended" | "failed" | "closed", detail: string): void {
    if (this.#terminal) return;
    this.#terminal = { why, detail };
    this.#state = why;
    this.#held.clear();
    this.#wakeAll();
  }

  #wakeAll(): void {
    for (const w of [...this.#waiters]) w();
  }
}

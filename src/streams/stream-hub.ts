import type { HandlerContext } from "@connectrpc/connect";
import type { AuditEvent } from "../audit/event.js";
import type { AuditSink } from "../audit/sink.js";
import type { Clock } from "../clock.js";
import { CapvendError, capvendError, invalidArgument } from "../errors.js";
import type { WatchSessionRequest, WatchSessionResponse } from "../gen/capvend/v1/vending_pb.js";
import type { GrantSpec, Revocation, RevocationList, SessionRecord } from "../backends/types.js";
import type { Issuer, IssuedToken } from "../service/issuer.js";
import { validateGrants } from "../service/validate.js";
import { sessionTag, sessionTagOfJti } from "../tokens/jti.js";
import { Admission, DEFAULT_MAX_CONCURRENT_OPENS } from "./admission.js";
import { decodeResumeToken } from "./resume-token.js";
import { grantDenial, type DriftReport, type PolicyDrift } from "./policy-drift.js";
import { TimerQueue } from "./timer-queue.js";
import { WatchStream } from "./watch-stream.js";

/** How long a resuming stream waits for this replica to catch up with the revocation feed. */
export const RESUME_CATCH_UP_TIMEOUT_MS = 2000;

export interface StreamHubOptions {
  clock: Clock;
  issuer: Issuer;
  revocations: RevocationList;
  audit: Pick<AuditSink, "append">;
  maxTokenTtlMs: number;
  /** CAPVEND_RENEW_LEAD: renew when this much life is left (at most a third of the TTL). */
  renewLeadMs: number;
  /** CAPVEND_HEARTBEAT_INTERVAL. */
  heartbeatIntervalMs: number;
  /** A write the client does not take within this long disconnects it (RESOURCE_EXHAUSTED). */
  stallTimeoutMs: number;
  /** Jitter source in [0, 1); Math.random by default. */
  random?: () => number;
  /** Wraps each renewal (tracing hooks in here). */
  traceRenewal?: <T>(stream: WatchStream, grant: GrantSpec, fn: () => Promise<T>) => Promise<T>;
  onEvent?: (e: { type: "slow_reader" | "renewal_failed" | "audit_failed"; sessionId: string; streamId: number; error?: unknown; retryInMs?: number }) => void;
  /** A revocation or session end was written to a stream, `latencyMs` after Revoke/EndSession took it. */
  onRevocationDelivered?: (e: { sessionId: string; streamId: number; latencyMs: number }) => void;
  /** The number of open streams changed. */
  onStreamCount?: (streams: number) => void;
  /** Re-evaluates live grants after a policy change (see `reevaluatePolicy`); none means no re-evaluation. */
  drift?: PolicyDrift;
  /** A renewal found its grant denied and its tokens' revocation went wrong. */
  onDriftError?: (error: unknown) => void;
  /** Stream opens in progress at once; the rest queue (see admission.ts). Default {@link DEFAULT_MAX_CONCURRENT_OPENS}. */
  maxConcurrentOpens?: number;
  /** CAPVEND_MAX_STREAMS_PER_SESSION: streams one session may hold (open or opening); more get RESOURCE_EXHAUSTED. Default 8. */
  maxStreamsPerSession?: number;
  /** CAPVEND_MAX_STREAMS: streams this replica holds (open, opening or waiting); more get RESOURCE_EXHAUSTED. Default 20,000. */
  maxStreams?: number;
}

/** Default of `maxStreamsPerSession`. */
export const DEFAULT_MAX_STREAMS_PER_SESSION = 8;
/** Default of `maxStreams`. */
export const DEFAULT_MAX_STREAMS = 20_000;

/** What a WatchStream uses of its hub. */
export interface StreamHubInternals {
  readonly clock: Clock;
  readonly queue: TimerQueue;
  readonly issuer: Issuer;
  readonly revocations: RevocationList;
  readonly renewLeadMs: number;
  readonly heartbeatIntervalMs: number;
  readonly stallTimeoutMs: number;
  random(): number;
  traceRenewal(stream: WatchStream, grant: GrantSpec, fn: () => Promise<IssuedToken>): Promise<IssuedToken>;
  unregister(stream: WatchStream, reason: string): void;
  onSlowReader(stream: WatchStream): void;
  onRevocationDelivered(stream: WatchStream, latencyMs: number): void;
  logRenewalFailure(stream: WatchStream, grant: GrantSpec, err: unknown, retryInMs: number): void;
  onGrantDenied(stream: WatchStream, index: number, grant: GrantSpec, err: Error): void;
}

export interface StreamHubStats {
  streams: number;
  sessions: number;
  timers: number;
  timerArmed: boolean;
  /** Opens in progress (at most `maxConcurrentOpens`). */
  opening: number;
  /** Opens waiting in the admission queue. */
  waitingToOpen: number;
}

/**
 * Every WatchSession stream of this replica: it routes each revocation to the streams it
 * can concern (by session, agent, user, resource) and runs all their timers on one queue.
 * Streams never wait on each other: fan-out only queues events in each stream's outbox.
 */
export class StreamHub implements StreamHubInternals {
  readonly clock: Clock;
  readonly queue: TimerQueue;
  readonly issuer: Issuer;
  readonly revocations: RevocationList;
  readonly renewLeadMs: number;
  readonly heartbeatIntervalMs: number;
  readonly stallTimeoutMs: number;
  readonly #opts: StreamHubOptions;
  readonly #bySession = new Map<string, Set<WatchStream>>();
  /** Session tag (carried in every jti) → streams, to route revocations by token id. */
  readonly #byTag = new Map<string, Set<WatchStream>>();
  readonly #byAgent = new Map<string, Set<WatchStream>>();
  readonly #byUser = new Map<string, Set<WatchStream>>();
  readonly #byResource = new Map<string, Set<WatchStream>>();
  readonly #unsubscribe: () => void;
  readonly #admission: Admission;
  readonly #openingBySession = new Map<string, number>();
  readonly #maxStreamsPerSession: number;
  readonly #maxStreams: number;
  #nextId = 0;
  #driftRun: Promise<DriftReport> | undefined;
  #draining: string | undefined;
  #streams = 0;

  constructor(opts: StreamHubOptions) {
    this.#opts = opts;
    this.clock = opts.clock;
    this.queue = new TimerQueue(opts.clock);
    this.issuer = opts.issuer;
    this.revocations = opts.revocations;
    this.renewLeadMs = opts.renewLeadMs;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs;
    this.stallTimeoutMs = opts.stallTimeoutMs;
    this.#admission = new Admission(opts.maxConcurrentOpens ?? DEFAULT_MAX_CONCURRENT_OPENS);
    this.#maxStreamsPerSession = opts.maxStreamsPerSession ?? DEFAULT_MAX_STREAMS_PER_SESSION;
    this.#maxStreams = opts.maxStreams ?? DEFAULT_MAX_STREAMS;
    this.#unsubscribe = opts.revocations.subscribe((r) => this.#route(r));
  }

  random(): number {
    return (this.#opts.random ?? Math.random)();
  }

  traceRenewal(stream: WatchStream, grant: GrantSpec, fn: () => Promise<IssuedToken>): Promise<IssuedToken> {
    return this.#opts.traceRenewal ? this.#opts.traceRenewal(stream, grant, fn) : fn();
  }

  stats(): StreamHubStats {
    return { streams: this.#streams, sessions: this.#bySession.size, timers: this.queue.size, timerArmed: this.queue.armed, opening: this.#admission.active, waitingToOpen: this.#admission.waiting };
  }

  /**
   * Serves one WatchSession call for an authenticated session. `kill` resets the
   * underlying HTTP stream (used when the reader is stuck).
   */
  async *watch(session: SessionRecord, req: WatchSessionRequest, ctx: Pick<HandlerContext, "signal">, kill: () => void): AsyncGenerator<WatchSessionResponse> {
    if (this.#draining) throw capvendError("DRAINING", "the server is shutting down; reconnect to another replica with the resume_token");
    const grants = validateGrants("grants", req.grants, this.#opts.maxTokenTtlMs);
    const resumePosition = await this.#resumePosition(session, req.resumeToken);
    // Every grant is checked up front, exactly as IssueToken checks it: a refused grant
    // fails the call naming it, it is never silently dropped. A resuming stream is the
    // exception for grants a revocation withdrew: the lost stream had stopped them, so the
    // resumed one opens with them stopped and says so (WatchStream.open).
    grants.forEach((g, i) => {
      try {
        this.issuer.authorize(session, { resource: g.resource, scopes: g.scopes, ttlMs: g.ttlMs });
      } catch (err) {
        if (resumePosition !== undefined && err instanceof CapvendError && err.reason === "GRANT_REVOKED") return;
        if (err instanceof CapvendError) {
          const field = err.subject.field === undefined ? undefined : `grants[${i}].${err.subject.field}`;
          throw capvendError(err.reason, `grants[${i}]: ${err.rawMessage}`, { ...err.subject, field, grantIndex: String(i) }, err.cause);
        }
        throw err;
      }
    });

    // The caps count streams open and streams still opening, so a burst cannot slip past them.
    const held = (this.#bySession.get(session.id)?.size ?? 0) + (this.#openingBySession.get(session.id) ?? 0);
    if (held >= this.#maxStreamsPerSession) {
      throw capvendError("STREAM_LIMIT", `session ${session.id} already holds ${held} streams, its limit; close one before opening another`, { sessionId: session.id });
    }
    if (this.#streams + this.#admission.active + this.#admission.waiting >= this.#maxStreams) {
      throw capvendError("STREAM_LIMIT", `this server holds its limit of ${this.#maxStreams} streams; reconnect to another replica or retry later`);
    }
    this.#openingBySession.set(session.id, (this.#openingBySession.get(session.id) ?? 0) + 1);
    let counted = true;
    // Once registered, a stream counts among the session's streams, no longer as opening.
    const uncount = () => {
      if (!counted) return;
      counted = false;
      const n = (this.#openingBySession.get(session.id) ?? 1) - 1;
      if (n <= 0) this.#openingBySession.delete(session.id);
      else this.#openingBySession.set(session.id, n);
    };
    let release: (() => void) | undefined;
    let stream: WatchStream;
    try {
      // Opens wait their turn here; a caller that gives up while waiting leaves the queue.
      release = await this.#admission.acquire(ctx.signal);
      if (!release) return;
      // Nothing is minted for a caller that went away while waiting.
      if (ctx.signal.aborted) return;
      if (this.#draining) throw capvendError("DRAINING", "the server is shutting down; reconnect to another replica with the resume_token");
      stream = new WatchStream(this, ++this.#nextId, session, sessionTag(session.id), grants, ctx.signal, kill, resumePosition ?? 0);
      // Register before reading the replay so no revocation falls between the two.
      this.#register(stream);
      uncount();
      const replay = resumePosition !== undefined ? this.revocations.since(resumePosition).filter((r) => this.#concerns(stream, r)) : [];
      try {
        // The open is recorded before any token is minted: an open the audit log refuses, or
        // whose caller leaves meanwhile, mints nothing, so no token.issued record stands for a
        // token that was never sent.
        await this.#audit(stream, resumePosition !== undefined ? "stream.resumed" : "stream.opened", resumePosition !== undefined ? { resume_position: resumePosition, replayed: replay.length } : undefined);
        await stream.open(replay);
      } catch (err) {
        stream.close("open failed");
        throw err;
      }
    } finally {
      release?.();
      uncount();
    }
    yield* stream.messages();
  }

  /** Every open stream of this replica. */
  *streams(): IterableIterator<WatchStream> {
    for (const set of this.#bySession.values()) yield* set;
  }

  /** The open streams of one session. */
  streamsOf(sessionId: string): WatchStream[] {
    return [...(this.#bySession.get(sessionId) ?? [])];
  }

  /**
   * Re-evaluates every live grant on this replica's streams under the policy in force and
   * revokes what it no longer allows (see PolicyDrift). Off the request path: call it after
   * a swap without awaiting. A call during a pass joins it; a pass that ends under an older
   * policy version than the one now in force runs again. Resolves with the report of the
   * last pass.
   */
  reevaluatePolicy(): Promise<DriftReport | undefined> {
    const drift = this.#opts.drift;
    if (!drift) return Promise.resolve(undefined);
    // A pass under way re-runs by itself if the policy changed again meanwhile.
    if (this.#driftRun) return this.#driftRun;
    const run = (async () => {
      let report: DriftReport;
      do report = await drift.reevaluate(this.streams());
      while (drift.policyVersion() !== report.policyVersion);
      return report;
    })();
    this.#driftRun = run;
    void run.finally(() => {
      if (this.#driftRun === run) this.#driftRun = undefined;
    }).catch(() => undefined);
    return run;
  }

  onGrantDenied(stream: WatchStream, index: number, grant: GrantSpec, err: Error): void {
    const drift = this.#opts.drift;
    const denial = drift ? grantDenial(drift.policy, stream.session, grant, drift.ttlOf(grant)) : undefined;
    if (!drift || !denial) {
      stream.fail(err);
      return;
    }
    const tokens = stream.liveGrants(this.clock.now()).find((g) => g.index === index)?.tokens ?? [];
    drift.revokeGrant(stream, index, grant, tokens, denial).catch((e) => this.#opts.onDriftError?.(e));
  }

  /**
   * The feed position a resume token stands for, once this replica has applied the feed
   * up to it; undefined for a fresh start (no token). Refuses a token that is malformed,
   * of another session or altered (INVALID_ARGUMENT), older than the longest token TTL
   * (RESUME_TOKEN_EXPIRED: every token it covered has expired, so a fresh start loses
   * nothing), or ahead of what this replica could catch up with (RESUME_AHEAD).
   */
  async #resumePosition(session: SessionRecord, token: string): Promise<number | undefined> {
    if (token === "") return undefined;
    const decoded = decodeResumeToken(session, token);
    if (!decoded.ok) {
      throw invalidArgument(
        "resume_token",
        decoded.problem === "malformed"
          ? "is not a resume token this server issued (malformed or truncated); reconnect without it to start fresh"
          : "was not issued for this session, or was altered; pass the resume_token of an event of this session's stream",
      );
    }
    const { feedPosition, issuedAtMs } = decoded.point;
    if (this.clock.now() - issuedAtMs > this.#opts.maxTokenTtlMs) {
      throw capvendError(
        "RESUME_TOKEN_EXPIRED",
        `resume_token: older than ${Math.floor(this.#opts.maxTokenTtlMs / 1000)}s (the longest token lifetime), so every token it covered has expired; discard held tokens and reconnect without resume_token`,
        { field: "resume_token" },
      );
    }
    if (feedPosition > this.revocations.lastSeq && !(await this.revocations.catchUp(feedPosition, RESUME_CATCH_UP_TIMEOUT_MS))) {
      throw capvendError(
        "RESUME_AHEAD",
        `resume_token: ahead of this server's revocation feed (position ${feedPosition} > ${this.revocations.lastSeq}); retry, here or on another replica, with the same resume_token`,
        { field: "resume_token" },
      );
    }
    return feedPosition;
  }

  /** Tells every stream to reconnect elsewhere; new streams are refused from now on. */
  drain(reason = "server shutting down"): void {
    this.#draining = reason;
    for (const set of this.#bySession.values()) for (const s of set) s.drain(reason);
  }

  /** Closes every stream and stops listening. Idempotent. */
  close(): void {
    this.#unsubscribe();
    for (const set of [...this.#bySession.values()]) for (const s of [...set]) s.close("server closed");
    this.queue.close();
  }

  unregister(stream: WatchStream, reason: string): void {
    const s = stream.session;
    const removed = remove(this.#bySession, s.id, stream);
    remove(this.#byTag, stream.tag, stream);
    remove(this.#byAgent, s.agentId, stream);
    if (s.userId !== undefined) remove(this.#byUser, s.userId, stream);
    for (const r of stream.resources) remove(this.#byResource, r, stream);
    if (removed) {
      this.#streams--;
      this.#opts.onStreamCount?.(this.#streams);
      void this.#audit(stream, "stream.closed", { reason });
    }
  }

  onSlowReader(stream: WatchStream): void {
    this.#opts.onEvent?.({ type: "slow_reader", sessionId: stream.session.id, streamId: stream.id });
  }

  onRevocationDelivered(stream: WatchStream, latencyMs: number): void {
    this.#opts.onRevocationDelivered?.({ sessionId: stream.session.id, streamId: stream.id, latencyMs });
  }

  logRenewalFailure(stream: WatchStream, _grant: GrantSpec, error: unknown, retryInMs: number): void {
    this.#opts.onEvent?.({ type: "renewal_failed", sessionId: stream.session.id, streamId: stream.id, error, retryInMs });
  }

  #register(stream: WatchStream): void {
    const s = stream.session;
    add(this.#bySession, s.id, stream);
    add(this.#byTag, stream.tag, stream);
    add(this.#byAgent, s.agentId, stream);
    if (s.userId !== undefined) add(this.#byUser, s.userId, stream);
    for (const r of stream.resources) add(this.#byResource, r, stream);
    this.#streams++;
    this.#opts.onStreamCount?.(this.#streams);
  }

  /** Could this revocation touch the stream? (The stream decides whether it does.) */
  #concerns(stream: WatchStream, r: Revocation): boolean {
    const s = stream.session;
    switch (r.kind) {
      case "session_id":
        return r.value === s.id;
      case "agent_id":
        return r.value === s.agentId;
      case "user_id":
        return r.value === s.userId;
      case "resource":
        return stream.resources.has(r.value);
      case "token_id":
        return sessionTagOfJti(r.value) === stream.tag;
    }
  }

  #route(r: Revocation): void {
    let targets: Set<WatchStream> | undefined;
    switch (r.kind) {
      case "session_id":
        targets = this.#bySession.get(r.value);
        break;
      case "agent_id":
        targets = this.#byAgent.get(r.value);
        break;
      case "user_id":
        targets = this.#byUser.get(r.value);
        break;
      case "resource":
        targets = this.#byResource.get(r.value);
        break;
      case "token_id": {
        const tag = sessionTagOfJti(r.value);
        targets = tag === undefined ? undefined : this.#byTag.get(tag);
        break;
      }
    }
    if (!targets) return;
    for (const s of [...targets]) s.applyRevocation(r);
  }

  async #audit(stream: WatchStream, type: "stream.opened" | "stream.resumed" | "stream.closed", details?: AuditEvent["details"]): Promise<void> {
    const event: AuditEvent = { ...stream.auditBase(), type, details: { stream_id: stream.id, ...details } };
    if (type !== "stream.closed") {
      // Opening is a decision: fail closed like issuance.
      try {
        await this.#opts.audit.append(event);
      } catch (err) {
        throw capvendError("AUDIT_UNAVAILABLE", "the audit log is unavailable; retry later", {}, err);
      }
      return;
    }
    await this.#opts.audit.append(event).catch((error) => {
      this.#opts.onEvent?.({ type: "audit_failed", sessionId: stream.session.id, streamId: stream.id, error });
    });
  }
}

function add<K>(m: Map<K, Set<WatchStream>>, k: K, s: WatchStream): void {
  let set = m.get(k);
  if (!set) m.set(k, (set = new Set()));
  set.add(s);
}

function remove<K>(m: Map<K, Set<WatchStream>>, k: K, s: WatchStream): boolean {
  const set = m.get(k);
  if (!set || !set.delete(s)) return false;
  if (set.size === 0) m.delete(k);
  return true;
}

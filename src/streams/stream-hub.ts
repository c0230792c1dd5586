import type { HandlerContext } from "@connectrpc/connect";
import type { AuditEvent } from "../audit/event.js";
import type { AuditSink } from "../audit/sink.js";
import type { Clock } from "../clock.js";
import { capvendError } from "../errors.js";
import { afterSetup } from "../stream-relay.js";
import { appendOrFail } from "../audit/append-or-fail.js";
import type { WatchSessionResponse } from "../gen/capvend/v1/vending_pb.js";
import type { GrantSpec, Revocation, RevocationList, SessionRecord } from "../backends/types.js";
import { sessionTag, sessionTagOfJti } from "../tokens/jti.js";
import { Admission, DEFAULT_MAX_CONCURRENT_OPENS } from "./admission.js";
import { grantDenial, type DriftReport, type PolicyDrift } from "./policy-drift.js";
import type { StreamTokens } from "./stream-tokens.js";
import { TimerQueue } from "./timer-queue.js";
import { WatchStream, type StreamHost } from "./watch-stream.js";

/** What happens on streams that someone outside the hub may want to hear of (logs, metrics). */
export interface StreamHubEvents {
  /** A reader took no write within the stall timeout and was disconnected. */
  slowReader?(e: StreamEvent): void;
  /** A renewal failed for a passing reason (audit sink, store); it is retried in `retryInMs`. */
  renewalFailed?(e: StreamEvent & { error: unknown; retryInMs: number }): void;
  /** A stream's `stream.closed` audit record could not be appended. */
  auditFailed?(e: StreamEvent & { error: unknown }): void;
  /** A revocation or session end was written to a stream, `latencyMs` after Revoke/EndSession took it. */
  revocationDelivered?(e: StreamEvent & { latencyMs: number }): void;
  /** The number of open streams changed. */
  streamCount?(streams: number): void;
  /** A renewal found its grant denied and its tokens' revocation went wrong. */
  driftError?(error: unknown): void;
}

/** The stream an event is about. */
export interface StreamEvent {
  sessionId: string;
  streamId: number;
}

export interface StreamHubOptions {
  clock: Clock;
  /** Mints every stream's tokens (the service's issuer behind it). */
  tokens: StreamTokens;
  revocations: RevocationList;
  audit: Pick<AuditSink, "append">;
  /** CAPVEND_RENEW_LEAD: renew when this much life is left (at most a third of the TTL). */
  renewLeadMs: number;
  /** CAPVEND_HEARTBEAT_INTERVAL. */
  heartbeatIntervalMs: number;
  /** A write the client does not take within this long disconnects it (RESOURCE_EXHAUSTED). */
  stallTimeoutMs: number;
  /** Jitter source in [0, 1); Math.random by default. */
  random?: () => number;
  /** Who hears of slow readers, failed renewals, deliveries and the stream count; nobody by default. */
  events?: StreamHubEvents;
  /** Re-evaluates live grants after a policy change (see `reevaluatePolicy`); none means no re-evaluation. */
  drift?: PolicyDrift;
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

/**
 * A WatchSession call the service has validated and authorized: the session it
 * authenticated with, its grants (each one checked as IssueToken would check it), and the
 * revocation-feed position a resume token stood for (caught up with already), if any.
 */
export interface StreamOpening {
  session: SessionRecord;
  grants: GrantSpec[];
  resumePosition?: number;
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

/** What the rest of the server sees of the hub. */
export type StreamHubView = Pick<StreamHub, "open" | "assertOpen" | "stats" | "streamsOf" | "drain" | "reevaluatePolicy">;

/**
 * Every WatchSession stream of this replica: it routes each revocation to the streams it
 * can concern (by session, agent, user, resource) and runs all their timers on one queue.
 * Streams never wait on each other: fan-out only queues events in each stream's outbox.
 */
export class StreamHub {
  readonly #opts: StreamHubOptions;
  readonly #queue: TimerQueue;
  readonly #events: StreamHubEvents;
  readonly #host: StreamHost;
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
    this.#queue = new TimerQueue(opts.clock);
    this.#events = opts.events ?? {};
    const random = opts.random ?? Math.random;
    const events = this.#events;
    this.#host = {
      clock: opts.clock,
      queue: this.#queue,
      tokens: opts.tokens,
      revocations: opts.revocations,
      renewLeadMs: opts.renewLeadMs,
      heartbeatIntervalMs: opts.heartbeatIntervalMs,
      stallTimeoutMs: opts.stallTimeoutMs,
      random,
      closed: (stream, reason) => this.#unregister(stream, reason),
      slowReader: (stream) => events.slowReader?.({ sessionId: stream.session.id, streamId: stream.id }),
      revocationDelivered: (stream, latencyMs) => events.revocationDelivered?.({ sessionId: stream.session.id, streamId: stream.id, latencyMs }),
      renewalFailed: (stream, _grant, error, retryInMs) => events.renewalFailed?.({ sessionId: stream.session.id, streamId: stream.id, error, retryInMs }),
      grantDenied: (stream, index, grant, err) => this.#grantDenied(stream, index, grant, err),
    };
    this.#admission = new Admission(opts.maxConcurrentOpens ?? DEFAULT_MAX_CONCURRENT_OPENS);
    this.#maxStreamsPerSession = opts.maxStreamsPerSession ?? DEFAULT_MAX_STREAMS_PER_SESSION;
    this.#maxStreams = opts.maxStreams ?? DEFAULT_MAX_STREAMS;
    this.#unsubscribe = opts.revocations.subscribe((r) => this.#route(r));
  }

  stats(): StreamHubStats {
    return { streams: this.#streams, sessions: this.#bySession.size, timers: this.#queue.size, timerArmed: this.#queue.armed, opening: this.#admission.active, waitingToOpen: this.#admission.waiting };
  }

  /** Throws DRAINING once the hub is shutting down; the service asks before it validates a call. */
  assertOpen(): void {
    if (this.#draining) throw capvendError("DRAINING", "the server is shutting down; reconnect to another replica with the resume_token");
  }

  /**
   * Serves one WatchSession call the service has validated and authorized (see
   * StreamOpening). `kill` resets the underlying HTTP stream (used when the reader is stuck).
   * Refuses with STREAM_LIMIT past the per-session or per-replica cap, DRAINING while
   * shutting down, and AUDIT_UNAVAILABLE when the opening cannot be recorded.
   */
  open(opening: StreamOpening, ctx: Pick<HandlerContext, "signal">, kill: () => void): AsyncIterable<WatchSessionResponse> {
    // Everything up to the first token runs at the first read, as a generator's body would;
    // then the transport reads the stream's own messages with nothing in between.
    return afterSetup(() => this.#openStream(opening, ctx, kill));
  }

  async #openStream(opening: StreamOpening, ctx: Pick<HandlerContext, "signal">, kill: () => void): Promise<AsyncIterable<WatchSessionResponse> | undefined> {
    this.assertOpen();
    const { session, grants, resumePosition } = opening;
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
      if (!release) return undefined;
      // Nothing is minted for a caller that went away while waiting.
      if (ctx.signal.aborted) return undefined;
      this.assertOpen();
      stream = new WatchStream(this.#host, ++this.#nextId, session, sessionTag(session.id), grants, ctx.signal, kill, resumePosition ?? 0);
      // Register before reading the replay so no revocation falls between the two.
      this.#register(stream);
      uncount();
      const replay = resumePosition !== undefined ? this.#opts.revocations.since(resumePosition).filter((r) => this.#concerns(stream, r)) : [];
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
    return stream.messages();
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

  #grantDenied(stream: WatchStream, index: number, grant: GrantSpec, err: Error): void {
    const drift = this.#opts.drift;
    const denial = drift ? grantDenial(drift.policy, stream.session, grant, drift.ttlOf(grant)) : undefined;
    if (!drift || !denial) {
      stream.fail(err);
      return;
    }
    const tokens = stream.liveGrants(this.#opts.clock.now()).find((g) => g.index === index)?.tokens ?? [];
    drift.revokeGrant(stream, index, grant, tokens, denial).catch((e) => this.#events.driftError?.(e));
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
    this.#queue.close();
  }

  #unregister(stream: WatchStream, reason: string): void {
    const s = stream.session;
    const removed = remove(this.#bySession, s.id, stream);
    remove(this.#byTag, stream.tag, stream);
    remove(this.#byAgent, s.agentId, stream);
    if (s.userId !== undefined) remove(this.#byUser, s.userId, stream);
    for (const r of stream.resources) remove(this.#byResource, r, stream);
    if (removed) {
      this.#streams--;
      this.#events.streamCount?.(this.#streams);
      void this.#audit(stream, "stream.closed", { reason });
    }
  }

  #register(stream: WatchStream): void {
    const s = stream.session;
    add(this.#bySession, s.id, stream);
    add(this.#byTag, stream.tag, stream);
    add(this.#byAgent, s.agentId, stream);
    if (s.userId !== undefined) add(this.#byUser, s.userId, stream);
    for (const r of stream.resources) add(this.#byResource, r, stream);
    this.#streams++;
    this.#events.streamCount?.(this.#streams);
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
      await appendOrFail(this.#opts.audit, event, "no stream was opened");
      return;
    }
    await this.#opts.audit.append(event).catch((error) => {
      this.#events.auditFailed?.({ sessionId: stream.session.id, streamId: stream.id, error });
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

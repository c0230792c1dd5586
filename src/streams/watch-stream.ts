import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { AuditEvent } from "../audit/event.js";
import { capvendError, reasonOf } from "../errors.js";
import { WatchSessionResponseSchema, type WatchSessionResponse } from "../gen/capvend/v1/vending_pb.js";
import { revokesSession, revokesToken, withdrawsGrant } from "../backends/revocation-rules.js";
import type { GrantSpec, Revocation, RevocationList, SessionRecord } from "../backends/types.js";
import type { Clock } from "../clock.js";
import { issuedAtMsOfJti } from "../tokens/jti.js";
import { Outbox, type ControlEvent, type OutboxItem } from "./outbox.js";
import { coalesceRenewal, needsRenewal, renewAt } from "./renewal.js";
import { encodeResumeToken } from "./resume-token.js";
import type { StreamRef, StreamToken, StreamTokens } from "./stream-tokens.js";
import type { QueuedTimer, TimerQueue } from "./timer-queue.js";

/** Retry delays for a renewal that failed for a passing reason (audit sink or store away). */
export const RENEW_RETRY_MIN_MS = 250;
export const RENEW_RETRY_MAX_MS = 10_000;

interface TokenRef {
  jti: string;
  issuedAtSec: number;
  issuedAtMs: number;
  expiresAtMs: number;
}

interface GrantState {
  readonly index: number;
  readonly grant: GrantSpec;
  current?: TokenRef;
  previous?: TokenRef;
  renewal?: QueuedTimer;
  /** No more tokens: revoked, or the stream is over. */
  stopped: boolean;
  /**
   * The policy no longer allows the grant and its revocation is on its way: no renewal,
   * and a token minted meanwhile is dropped, but the grant is announced as stopped only
   * when the revocation arrives (so the runtime hears it with the revocation's reason).
   */
  revoking: boolean;
  failures: number;
}

export type StreamState = "opening" | "open" | "closing" | "closed";

/**
 * What a WatchStream uses of its hub: the shared timer queue, the token source, the
 * revocation lookups and settings, and the calls back that keep the hub's books. The hub
 * hands each stream this object; none of it is part of the hub's public surface.
 */
export interface StreamHost {
  readonly clock: Clock;
  readonly queue: TimerQueue;
  readonly tokens: StreamTokens;
  readonly revocations: Pick<RevocationList, "grantRevocation" | "tokenRevocation" | "lastSeq">;
  readonly renewLeadMs: number;
  readonly heartbeatIntervalMs: number;
  readonly stallTimeoutMs: number;
  random(): number;
  /** The stream closed: drop its registrations. */
  closed(stream: WatchStream, reason: string): void;
  slowReader(stream: WatchStream): void;
  revocationDelivered(stream: WatchStream, latencyMs: number): void;
  renewalFailed(stream: WatchStream, grant: GrantSpec, err: unknown, retryInMs: number): void;
  grantDenied(stream: WatchStream, index: number, grant: GrantSpec, err: Error): void;
}

/**
 * One WatchSession call: its grants' tokens, their renewals, the events waiting to go out,
 * and the generator Connect drains. Routing (which revocations reach it) and timing (one
 * queue for all streams) belong to the hub.
 */
export class WatchStream implements StreamRef {
  readonly id: number;
  readonly session: SessionRecord;
  /** The session's tag, as carried in its tokens' ids. */
  readonly tag: string;
  readonly resources: ReadonlySet<string>;
  #state: StreamState = "opening";
  readonly #hub: StreamHost;
  readonly #grants: GrantState[];
  readonly #outbox = new Outbox<{ token: StreamToken; replaces?: string }>();
  readonly #signal: AbortSignal;
  readonly #kill: () => void;
  /** Feed position the last event was sent at; only grows (see resume-token.ts). */
  #position: number;
  #heartbeat: QueuedTimer | undefined;
  #expiry: QueuedTimer | undefined;
  #stall: QueuedTimer | undefined;
  #closeReason = "client went away";

  constructor(
    hub: StreamHost,
    id: number,
    session: SessionRecord,
    tag: string,
    grants: GrantSpec[],
    signal: AbortSignal,
    kill: () => void,
    resumePosition: number,
  ) {
    this.#hub = hub;
    // Positions continue from what the runtime saw, on whichever replica it lands.
    this.#position = resumePosition;
    this.id = id;
    this.session = session;
    this.tag = tag;
    this.#grants = grants.map((grant, index) => ({ index, grant, stopped: false, revoking: false, failures: 0 }));
    this.resources = new Set(grants.map((g) => g.resource));
    this.#signal = signal;
    this.#kill = kill;
    // Not only `finally`: a generator parked in a write the client never reads may never be
    // resumed (connect-node's pending write does not settle), but the call's signal aborts.
    signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  get state(): StreamState {
    return this.#state;
  }

  /** The grants the stream was opened with, in request order (index = grant_index). */
  get grants(): readonly GrantSpec[] {
    return this.#grants.map((g) => g.grant);
  }

  /** Events waiting to be sent (a slow reader's backlog). */
  get pending(): number {
    return this.#outbox.pending;
  }

  /**
   * Replays what a resuming runtime missed, then mints the first token of every grant.
   * Rejects (and sends nothing) when a first token cannot be issued. Mints nothing for a
   * stream that closed before (its caller left, or the session ended while the open was
   * being recorded): no token.issued record is begun for a stream that cannot send it.
   */
  async open(replay: Revocation[]): Promise<void> {
    for (const r of replay) this.applyRevocation(r);
    if (this.#state !== "opening") return; // the replay ended the session, or the caller left
    this.#stopWithdrawnGrants();
    const q = this.#hub.queue;
    const now = this.#hub.clock.now();
    this.#expiry = q.schedule(this.session.expiresAt, () => this.#end({ kind: "session_ended", reason: "expired" }));
    this.#scheduleHeartbeat();
    const live = this.#grants.filter((g) => !g.stopped);
    // Every grant's mint starts in this tick, after the check above: none for a closed stream.
    const minted = await Promise.all(live.map((g) => this.#mint(g, "token.issued")));
    if (this.#state !== "opening") return;
    live.forEach((g, i) => this.#accept(g, minted[i]!, now));
    this.#state = "open";
  }

  /**
   * Stops the grants a revocation withdrew before this stream's replay (a resuming runtime
   * was told on the stream it lost; it hears it again rather than wait for tokens).
   */
  #stopWithdrawnGrants(): void {
    const s = this.session;
    const subject = { sessionId: s.id, agentId: s.agentId, userId: s.userId, createdAt: s.createdAt };
    for (const g of this.#grants) {
      if (g.stopped) continue;
      const r = this.#hub.revocations.grantRevocation(subject, g.grant.resource);
      if (!r) continue;
      this.#stopGrant(g);
      this.#control({ kind: "revoked", tokenIds: [], grantIndexes: [g.index], reason: r.reason, seq: r.seq, revokedAt: r.revokedAt });
    }
  }

  /** Applies a revocation routed here by the hub (it may not concern this stream after all). */
  applyRevocation(r: Revocation): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    const s = this.session;
    if (revokesSession(r, { sessionId: s.id, agentId: s.agentId, userId: s.userId, createdAt: s.createdAt })) {
      this.#end({ kind: "session_ended", reason: r.reason, seq: r.seq, revokedAt: r.revokedAt });
      return;
    }
    const tokenIds: string[] = [];
    const grantIndexes: number[] = [];
    const subject = { sessionId: s.id, agentId: s.agentId, userId: s.userId, createdAt: s.createdAt };
    for (const g of this.#grants) {
      const pending = this.#outbox.pendingToken(g.index);
      const hits = (t: TokenRef | undefined) => t !== undefined && revokesToken(r, this.#subject(g, t));
      const pendingRef = pending && this.#ref(pending.token);
      const hitCurrent = hits(g.current) || hits(pendingRef);
      const hitPrevious = hits(g.previous);
      // A rule that withdraws the grant stops it too, whichever of its tokens it named (and
      // when replayed on resume before this stream minted anything, as on the stream the
      // runtime lost): IssueToken and new streams refuse it from now on as well.
      if (hitCurrent || withdrawsGrant(r, subject, g.grant.resource)) {
        for (const t of [g.previous, g.current, pendingRef]) if (t && hits(t)) tokenIds.push(t.jti);
        if (!g.stopped) grantIndexes.push(g.index);
        this.#stopGrant(g);
        if (pending) this.#outbox.dropToken(g.index);
      } else if (hitPrevious) {
        tokenIds.push(g.previous!.jti);
      }
    }
    if (r.kind === "token_id" && tokenIds.length === 0) {
      // A token of this session that this stream did not mint (revoked while the runtime
      // was away, or held from the stream it lost, or from IssueToken): tell it, so it
      // drops the token if it still holds it. The hub routes here only this session's ids.
      tokenIds.push(r.value);
    }
    if (tokenIds.length > 0 || grantIndexes.length > 0) {
      this.#control({ kind: "revoked", tokenIds: [...new Set(tokenIds)], grantIndexes, reason: r.reason, seq: r.seq, revokedAt: r.revokedAt });
    }
  }

  /**
   * The grants that still get tokens, with every token of theirs that may still be live
   * (current, the one it replaced while that has not expired, and one not yet sent), for
   * re-evaluation under a new policy set.
   */
  liveGrants(nowMs: number): { index: number; grant: GrantSpec; tokens: { jti: string; expiresAtMs: number }[] }[] {
    if (this.#state !== "open" && this.#state !== "opening") return [];
    const out: { index: number; grant: GrantSpec; tokens: { jti: string; expiresAtMs: number }[] }[] = [];
    for (const g of this.#grants) {
      if (g.stopped || g.revoking) continue;
      const pending = this.#outbox.pendingToken(g.index);
      const refs = [g.current, g.previous, pending && this.#ref(pending.token)];
      const tokens = new Map<string, number>();
      for (const t of refs) if (t && t.expiresAtMs > nowMs) tokens.set(t.jti, t.expiresAtMs);
      out.push({ index: g.index, grant: g.grant, tokens: [...tokens].map(([jti, expiresAtMs]) => ({ jti, expiresAtMs })) });
    }
    return out;
  }

  /**
   * The policy no longer allows grant `index`: its renewal stops now and a token minted
   * meanwhile is dropped; the revocation published for its tokens announces it.
   */
  beginRevocation(index: number): void {
    const g = this.#grants[index];
    if (!g || g.stopped) return;
    g.revoking = true;
    this.#hub.queue.cancel(g.renewal);
    g.renewal = undefined;
  }

  /**
   * Stops grant `index` and tells the runtime, without a shared revocation: the fallback
   * when the revocation could not be stored, so the runtime still drops the tokens.
   */
  revokeGrantLocally(index: number, tokenIds: string[], reason: string): void {
    const g = this.#grants[index];
    if (!g || g.stopped || this.#state === "closing" || this.#state === "closed") return;
    this.#stopGrant(g);
    if (this.#outbox.pendingToken(g.index)) this.#outbox.dropToken(g.index);
    this.#control({ kind: "revoked", tokenIds, grantIndexes: [g.index], reason });
  }

  /** Tells the runtime to reconnect elsewhere, then ends the call with UNAVAILABLE. */
  drain(reason: string): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#end({ kind: "reconnect", reason });
  }

  /** Ends the stream with an error (sent after whatever control events are queued). */
  fail(error: Error): void {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#end({ kind: "fail", error });
  }

  /**
   * The messages the transport writes. Ends when the session ends, fails, drains or the client
   * leaves. An iterator object rather than a generator (see stream-relay.ts): what a
   * message needs after it was written (its stall timer cancelled, a revocation's delivery
   * timed, the end of the stream) runs when the transport asks for the next one, as it would
   * after a generator's `yield`. `return()` and `throw()` close the stream.
   */
  messages(): AsyncIterable<WatchSessionResponse> {
    const iterator: AsyncIterator<WatchSessionResponse> = {
      next: () => this.#nextMessage(),
      return: (value?: unknown) => {
        this.close();
        return Promise.resolve({ done: true, value: value as WatchSessionResponse });
      },
      throw: (err?: unknown) => {
        this.close();
        return Promise.reject(err);
      },
    };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  /** The item the last message was made of, until the transport asks for the next one. */
  #sent: Exclude<OutboxItem<{ token: StreamToken; replaces?: string }>, { kind: "fail" }> | undefined;

  #nextMessage(): Promise<IteratorResult<WatchSessionResponse>> {
    const sent = this.#sent;
    this.#sent = undefined;
    if (sent) {
      // The transport took the last message: it was written, or is queued with room to spare.
      this.#hub.queue.cancel(this.#stall);
      this.#stall = undefined;
      if ((sent.kind === "revoked" || sent.kind === "session_ended") && sent.revokedAt !== undefined) {
        this.#hub.revocationDelivered(this, this.#hub.clock.now() - sent.revokedAt);
      }
      if (sent.kind === "session_ended") return this.#finish();
      if (sent.kind === "reconnect") {
        return this.#finish(capvendError("DRAINING", `the server is shutting down: ${sent.reason}; reconnect with the resume_token`));
      }
    }
    // A closed outbox answers undefined at once: no abort listener per message is needed, as
    // the call's signal closes the stream (#onAbort).
    return this.#outbox.next().then((item) => {
      if (!item) return this.#finish();
      if (item.kind === "fail") return this.#finish(item.error);
      let msg: WatchSessionResponse;
      try {
        msg = this.#toMessage(item);
      } catch (err) {
        return this.#finish(err);
      }
      this.#stall = this.#hub.queue.schedule(this.#hub.clock.now() + this.#hub.stallTimeoutMs, () => this.#stalled());
      this.#sent = item;
      return { done: false, value: msg };
    });
  }

  /** Closes the stream and ends its messages, with `error` when given. */
  #finish(error?: unknown): Promise<IteratorResult<WatchSessionResponse>> {
    this.close();
    return error === undefined ? Promise.resolve({ done: true, value: undefined }) : Promise.reject(error);
  }

  readonly #onAbort = () => this.close();

  /** Frees every timer and registration. Idempotent. */
  close(reason?: string): void {
    if (this.#state === "closed") return;
    if (reason) this.#closeReason = reason;
    this.#state = "closed";
    this.#signal.removeEventListener("abort", this.#onAbort);
    const q = this.#hub.queue;
    for (const g of this.#grants) this.#stopGrant(g);
    q.cancel(this.#heartbeat);
    q.cancel(this.#expiry);
    q.cancel(this.#stall);
    this.#heartbeat = this.#expiry = this.#stall = undefined;
    this.#outbox.close();
    this.#hub.closed(this, this.#closeReason);
  }

  #end(event: ControlEvent): void {
    this.#closeReason = event.kind === "fail" ? `failed: ${event.error.message}` : event.kind === "reconnect" ? "draining" : `session ended: ${event.reason}`;
    this.#state = "closing";
    for (const g of this.#grants) this.#stopGrant(g);
    this.#hub.queue.cancel(this.#heartbeat);
    this.#heartbeat = undefined;
    this.#control(event);
  }

  #control(event: ControlEvent): void {
    if (!this.#outbox.pushControl(event)) this.#stalled();
  }

  #stalled(): void {
    this.#hub.slowReader(this);
    this.#closeReason = "slow reader disconnected";
    // The handler is stuck in a write the client does not read: no status can reach it
    // through that stream, so the transport resets it (HTTP/2 ENHANCE_YOUR_CALM, which
    // gRPC and Connect clients report as RESOURCE_EXHAUSTED).
    this.#kill();
    this.close();
  }

  #scheduleHeartbeat(): void {
    const q = this.#hub.queue;
    this.#heartbeat = q.schedule(this.#hub.clock.now() + this.#hub.heartbeatIntervalMs, () => {
      this.#outbox.heartbeat();
      if (this.#state === "open" || this.#state === "opening") this.#scheduleHeartbeat();
    });
  }

  #stopGrant(g: GrantState): void {
    g.stopped = true;
    this.#hub.queue.cancel(g.renewal);
    g.renewal = undefined;
  }

  #mint(g: GrantState, event: "token.issued" | "token.renewed"): Promise<StreamToken> {
    return this.#hub.tokens.mint(this, g.grant, event);
  }

  /** Takes a freshly minted token into the grant, unless it was revoked while in flight. */
  #accept(g: GrantState, t: StreamToken, nowMs: number): void {
    const ref = this.#ref(t);
    if (g.stopped || g.revoking) return;
    const revoked = this.#hub.revocations.tokenRevocation(this.#subject(g, ref));
    if (revoked) {
      // Revoked while it was being minted: never sent, and the runtime hears the grant stopped.
      this.#stopGrant(g);
      this.#control({ kind: "revoked", tokenIds: [], grantIndexes: [g.index], reason: revoked.reason, seq: revoked.seq, revokedAt: revoked.revokedAt });
      return;
    }
    g.previous = g.current;
    g.current = ref;
    g.failures = 0;
    this.#outbox.pushToken(g.index, { token: t, replaces: g.previous?.jti });
    if (needsRenewal(ref.expiresAtMs, this.session.expiresAt, nowMs)) {
      const at = coalesceRenewal(renewAt(ref.issuedAtMs, ref.expiresAtMs, this.#hub.renewLeadMs, this.#hub.random()), ref.issuedAtMs);
      g.renewal = this.#hub.queue.schedule(at, () => void this.#renew(g));
    }
  }

  async #renew(g: GrantState): Promise<void> {
    g.renewal = undefined;
    if (g.stopped || g.revoking || this.#state !== "open") return;
    try {
      const t = await this.#mint(g, "token.renewed");
      if (this.#state !== "open") return;
      this.#accept(g, t, this.#hub.clock.now());
    } catch (err) {
      if (g.stopped || g.revoking || this.#state !== "open") return;
      if (reasonOf(err) === "SCOPE_DENIED") {
        // The policy changed under the grant: revoke its tokens (POLICY_CHANGED) and keep
        // the stream open for the grants that are still allowed.
        this.#hub.grantDenied(this, g.index, g.grant, err instanceof Error ? err : new Error(String(err)));
        return;
      }
      const code = err instanceof ConnectError ? err.code : Code.Internal;
      if (code === Code.Unavailable || code === Code.Internal) {
        // A passing failure (audit sink, store): retry with backoff while the token lives.
        const delay = Math.min(RENEW_RETRY_MAX_MS, RENEW_RETRY_MIN_MS * 2 ** g.failures++);
        this.#hub.renewalFailed(this, g.grant, err, delay);
        g.renewal = this.#hub.queue.schedule(this.#hub.clock.now() + delay, () => void this.#renew(g));
        return;
      }
      if (reasonOf(err) === "GRANT_REVOKED") {
        // Withdrawn by a revocation this stream has not been routed yet (it is in force for
        // lookups first): stop the grant alone, as the revocation itself would.
        this.#stopGrant(g);
        this.#control({ kind: "revoked", tokenIds: [], grantIndexes: [g.index], reason: "grant revoked" });
        return;
      }
      // Policy or grants now refuse the grant: the runtime must hear it, not find out at expiry.
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #ref(t: StreamToken): TokenRef {
    return { jti: t.jti, issuedAtSec: t.issuedAtSec, issuedAtMs: issuedAtMsOfJti(t.jti) ?? t.issuedAtMs, expiresAtMs: t.expiresAtMs };
  }

  #subject(g: GrantState, t: TokenRef) {
    const s = this.session;
    return { jti: t.jti, sessionId: s.id, agentId: s.agentId, userId: s.userId, resource: g.grant.resource, issuedAtSec: t.issuedAtSec, issuedAtMs: t.issuedAtMs };
  }

  #toMessage(item: Exclude<OutboxItem<{ token: StreamToken; replaces?: string }>, { kind: "fail" }>): WatchSessionResponse {
    const at = "seq" in item && item.seq !== undefined ? item.seq : this.#hub.revocations.lastSeq;
    if (at > this.#position) this.#position = at;
    const resumeToken = encodeResumeToken(this.session, { feedPosition: this.#position, issuedAtMs: this.#hub.clock.now() });
    switch (item.kind) {
      case "token":
        return create(WatchSessionResponseSchema, {
          resumeToken,
          event: {
            case: "tokenIssued",
            value: { grantIndex: item.grantIndex, token: item.token.token.message, replacesTokenId: item.token.replaces ?? "" },
          },
        });
      case "revoked":
        return create(WatchSessionResponseSchema, {
          resumeToken,
          event: { case: "tokensRevoked", value: { tokenIds: item.tokenIds, grantIndexes: item.grantIndexes, reason: item.reason } },
        });
      case "session_ended":
        return create(WatchSessionResponseSchema, { resumeToken, event: { case: "sessionEnded", value: { reason: item.reason } } });
      case "reconnect":
        return create(WatchSessionResponseSchema, { resumeToken, event: { case: "reconnect", value: { reason: item.reason } } });
      case "heartbeat":
        return create(WatchSessionResponseSchema, {
          resumeToken,
          event: { case: "heartbeat", value: { time: timestampFromMs(this.#hub.clock.now()) } },
        });
    }
  }

  /** For audit records of the stream's life. */
  auditBase(): Partial<AuditEvent> {
    return {
      caller: { kind: "session", id: this.session.id },
      agent_id: this.session.agentId,
      user_id: this.session.userId,
      session_id: this.session.id,
    };
  }
}

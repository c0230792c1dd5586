import type { ConsumerMessages, JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Clock, TimerHandle } from "../../clock.js";
import type { Logger } from "../../logging/logger.js";
import { type Revocation, REVOCATION_PRUNE_INTERVAL_MS, type RevocationList, type SessionSubject, type TokenSubject } from "../types.js";
import { RevocationIndex } from "../revocation-index.js";
import { revocationsAfter, revokesSession, revokesToken, withdrawsGrant } from "../revocation-rules.js";
import { withDeadline } from "./deadline.js";
import { fault } from "../../errors.js";
import type { NatsLink } from "./link-state.js";
import { REVOCATION_STREAM, REVOCATION_SUBJECT_PREFIX } from "./names.js";
import { sleep, superviseSubscription } from "./resubscribe.js";
import { retryStartup, type StartupRetry } from "./startup-retry.js";
import { decodeRevocation, encodeRevocation, revocationSubject } from "./revocation-message.js";

/** How long opening waits for this replica to apply the whole feed before giving up: 60 s. */
export const DEFAULT_START_CATCH_UP_TIMEOUT_MS = 60_000;
/** Messages asked for per pull of the revocation consumer. */
export const REVOCATION_PULL_BATCH = 256;
/**
 * Lifetime of one pull request, ms. It also sets the idle heartbeat (half of it), so a
 * consumer lost with a cluster node is noticed and re-created within about this long.
 */
export const REVOCATION_PULL_EXPIRES_MS = 5000;
/**
 * Silence (no message, no heartbeat) after which a connected replica re-creates its
 * consumer: three idle-heartbeat intervals, ms.
 */
export const REVOCATION_STALL_MS = 3 * (REVOCATION_PULL_EXPIRES_MS / 2);
/** How often the stall watchdog looks, ms. */
const REVOCATION_STALL_CHECK_MS = 1000;

/** Longest wait in `close` for the consumer loop to stop, ms. */
const CLOSE_WAIT_MS = 2000;

/** Options for `openNatsRevocationList`. */
export interface NatsRevocationListOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  link: NatsLink;
  clock: Clock;
  logger: Logger;
  /** Named in each message (informational). */
  replica: string;
  /** Longest wait for JetStream's publish acknowledgement, ms (CAPVEND_NATS_TIMEOUT). */
  timeoutMs: number;
  /** Longest wait, after the ack, for this replica to apply its own revocation in feed order; default `timeoutMs`. */
  applyTimeoutMs?: number;
  /** Default `DEFAULT_START_CATCH_UP_TIMEOUT_MS`. */
  startCatchUpTimeoutMs?: number;
  /** The replica's start-up budget: reading the stream at open retries while JetStream is not ready. Unset: one attempt. */
  startup?: StartupRetry;
  /** Default `REVOCATION_STREAM` (tests use their own). */
  stream?: string;
  /** Default `REVOCATION_SUBJECT_PREFIX`. */
  subjectPrefix?: string;
}

/** What the list reports about itself (for health and monitoring). */
export interface NatsRevocationListStats {
  /** Highest feed position applied. */
  lastSeq: number;
  /** Own revocations acknowledged by JetStream but not yet applied in feed order. */
  pending: number;
  /** Rules held. */
  size: number;
  /** Messages skipped because they were malformed. */
  rejected: number;
}

/**
 * Opens the revocation list on the JetStream feed and returns once it has applied every
 * revocation the stream held when it was opened (bounded by `startCatchUpTimeoutMs`; it
 * throws after that, so a replica never serves with a partial list).
 */
export async function openNatsRevocationList(opts: NatsRevocationListOptions): Promise<NatsRevocationList> {
  const stream = opts.stream ?? REVOCATION_STREAM;
  const read = () => withDeadline(opts.jsm.streams.info(stream), opts.timeoutMs * 2, opts.clock, `reading stream ${stream}`);
  const info = opts.startup ? await retryStartup(`first read of stream ${stream}`, opts.startup, read) : await read();
  const list = new NatsRevocationList(opts, Math.max(0, info.state.first_seq - 1));
  const target = info.state.last_seq;
  const timeoutMs = opts.startCatchUpTimeoutMs ?? DEFAULT_START_CATCH_UP_TIMEOUT_MS;
  if (!(await list.catchUp(target, timeoutMs))) {
    await list.close();
    throw new Error(`the revocation feed was not applied up to position ${target} within ${timeoutMs} ms (reached ${list.lastSeq})`);
  }
  opts.logger.info({ stream, last_seq: list.lastSeq, rules: list.size }, "revocation feed caught up");
  return list;
}

/**
 * The revocation list of a replica that shares the JetStream stream `CAPVEND_REVOCATIONS`.
 *
 * Every replica (this one included) applies the feed through one ordered consumer, strictly
 * in stream-sequence order: `Revocation.seq` is the JetStream sequence, so `lastSeq`,
 * `since` and stream revisions mean the same on every replica. `publish` resolves once
 * JetStream acknowledged the message (deduplicated by revocation id) and this replica has
 * applied it, so a caller reads its own write and streams here have been told. Should that
 * apply lag beyond its bound (a consumer being re-created), `publish` puts the rule in
 * force for lookups here and tells listeners itself, without `seq` (the position is not
 * reached here yet), before it resolves; the feed's delivery of it later tells nobody again.
 */
export class NatsRevocationList implements RevocationList {
  readonly #opts: NatsRevocationListOptions;
  readonly #stream: string;
  readonly #prefix: string;
  readonly #index = new RevocationIndex();
  /** Acknowledged own revocations not yet applied in order, by id: consulted by lookups only. */
  readonly #pending = new Map<string, Revocation>();
  /** Ids of own revocations `publish` told listeners of ahead of feed order: not told again. */
  readonly #toldEarly = new Set<string>();
  readonly #listeners = new Set<(r: Revocation) => void>();
  #waiters: { seq: number; resolve: (ok: boolean) => void; timer: TimerHandle }[] = [];
  /** Applied revocations in feed order, for resuming streams; pruned with the index. */
  #log: Revocation[] = [];
  #lastSeq: number;
  #rejected = 0;
  #closed = false;
  readonly #abort = new AbortController();
  #messages: ConsumerMessages | undefined;
  readonly #running: Promise<void>;
  #pruneTimer: TimerHandle | undefined;

  constructor(opts: NatsRevocationListOptions, startAfterSeq: number) {
    this.#opts = opts;
    this.#stream = opts.stream ?? REVOCATION_STREAM;
    this.#prefix = opts.subjectPrefix ?? REVOCATION_SUBJECT_PREFIX;
    // Positions before the stream's first message were discarded by max age: they held only
    // rules that can no longer match anything, so they count as applied.
    this.#lastSeq = startAfterSeq;
    this.#running = superviseSubscription((progress) => this.#consume(progress), {
      name: `revocation feed ${this.#stream}`,
      logger: opts.logger,
      clock: opts.clock,
      signal: this.#abort.signal,
    });
    this.#schedulePrune();
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  get size(): number {
    return this.#index.size;
  }

  stats(): NatsRevocationListStats {
    return { lastSeq: this.#lastSeq, pending: this.#pending.size, size: this.#index.size, rejected: this.#rejected };
  }

  async publish(revocation: Revocation): Promise<void> {
    if (this.#closed) throw fault("backend_closed", "revocation list is closed");
    const { js, link, clock, timeoutMs } = this.#opts;
    // Fail at once while NATS is away: a publish queued behind the reconnect could land
    // after the caller was told it failed.
    link.assertConnected("revocation not published");
    const ack = await withDeadline(
      js.publish(revocationSubject(revocation.kind, this.#prefix), encodeRevocation(revocation, this.#opts.replica), { msgID: revocation.id, timeout: timeoutMs }),
      timeoutMs + 250,
      clock,
      "revocation publish",
    );
    // An expired rule can match nothing alive: it is never held (see RevocationList).
    if (ack.seq > this.#lastSeq && revocation.expiresAt > clock.now()) this.#pending.set(revocation.id, { ...revocation, seq: ack.seq });
    const applyTimeoutMs = this.#opts.applyTimeoutMs ?? timeoutMs;
    if (!(await this.catchUp(ack.seq, applyTimeoutMs)) && !this.#closed && ack.seq > this.#lastSeq) {
      this.#opts.logger.warn(
        { revocation_id: revocation.id, seq: ack.seq, last_seq: this.#lastSeq, wait_ms: applyTimeoutMs },
        "revocation stored but not yet applied in feed order; in force for lookups here and told to streams now",
      );
      if (revocation.expiresAt > clock.now()) {
        this.#toldEarly.add(revocation.id);
        const early: Revocation = { ...revocation };
        delete early.seq;
        this.#tell(early);
      }
    }
  }

  tokenRevocation(token: TokenSubject): Revocation | undefined {
    const hit = this.#index.token(token);
    if (hit || this.#pending.size === 0) return hit;
    for (const r of this.#pending.values()) {
      if ((r.kind === "token_id" || r.kind === "resource") && revokesToken(r, token)) return r;
    }
    return undefined;
  }

  sessionRevocation(session: SessionSubject): Revocation | undefined {
    const hit = this.#index.session(session);
    if (hit || this.#pending.size === 0) return hit;
    for (const r of this.#pending.values()) if (revokesSession(r, session)) return r;
    return undefined;
  }

  grantRevocation(session: SessionSubject, resource: string): Revocation | undefined {
    const hit = this.#index.grant(session, resource);
    if (hit || this.#pending.size === 0) return hit;
    for (const r of this.#pending.values()) {
      if ((r.kind === "token_id" || r.kind === "resource") && withdrawsGrant(r, session, resource)) return r;
    }
    return undefined;
  }

  subscribe(listener: (revocation: Revocation) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Number of subscribers (tests check that closed streams leave none behind). */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  catchUp(seq: number, timeoutMs: number): Promise<boolean> {
    if (seq <= this.#lastSeq) return Promise.resolve(true);
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = {
        seq,
        resolve,
        timer: this.#opts.clock.setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          resolve(false);
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  since(seq: number): Revocation[] {
    return revocationsAfter(this.#log, seq);
  }

  async close(): Promise<void> {
    if (this.#closed) return this.#running;
    this.#closed = true;
    this.#abort.abort();
    this.#messages?.stop();
    if (this.#pruneTimer) this.#opts.clock.clearTimeout(this.#pruneTimer);
    this.#pruneTimer = undefined;
    for (const w of this.#waiters) {
      this.#opts.clock.clearTimeout(w.timer);
      w.resolve(false);
    }
    this.#waiters = [];
    this.#listeners.clear();
    // A consumer create in flight during an outage ends only at its own timeout: don't wait on it.
    await Promise.race([this.#running, sleep(this.#opts.clock, CLOSE_WAIT_MS, new AbortController().signal)]);
  }

  /**
   * One life of the ordered consumer: from just after the last applied position until it
   * ends. A watchdog ends it when, while connected, neither messages nor heartbeats arrive
   * for `REVOCATION_STALL_MS`: nats.js keeps asking a consumer that died with its cluster
   * node for its info and never re-creates it, so the supervisor must.
   */
  async #consume(progress: () => void): Promise<void> {
    const { js, clock, link, logger } = this.#opts;
    const consumer = await js.consumers.get(this.#stream, {
      opt_start_seq: this.#lastSeq + 1,
      filter_subjects: `${this.#prefix}.>`,
    });
    const messages = await consumer.consume({ max_messages: REVOCATION_PULL_BATCH, expires: REVOCATION_PULL_EXPIRES_MS });
    this.#messages = messages;
    if (this.#closed) {
      messages.stop();
      return;
    }
    let lastActivity = clock.now();
    const offLink = link.onChange((connected) => {
      // Time away does not count as a stall: the library gets its chance to resume first.
      if (connected) lastActivity = clock.now();
    });
    void (async () => {
      for await (const n of messages.status()) {
        if (n.type === "heartbeat" || n.type === "ordered_consumer_recreated") lastActivity = clock.now();
      }
    })().catch(() => undefined);
    let watchdog: TimerHandle | undefined;
    const check = () => {
      if (this.#closed) return;
      if (link.connected && clock.now() - lastActivity > REVOCATION_STALL_MS) {
        logger.warn({ stream: this.#stream, last_seq: this.#lastSeq, silent_ms: clock.now() - lastActivity }, "revocation consumer silent; re-creating it");
        messages.stop();
        return;
      }
      watchdog = clock.setTimeout(check, REVOCATION_STALL_CHECK_MS);
    };
    watchdog = clock.setTimeout(check, REVOCATION_STALL_CHECK_MS);
    try {
      for await (const m of messages) {
        lastActivity = clock.now();
        progress();
        this.#receive(m.seq, m.data, m.subject);
      }
    } finally {
      if (watchdog) clock.clearTimeout(watchdog);
      offLink();
    }
  }

  #receive(seq: number, data: Uint8Array, subject: string): void {
    // A re-created consumer may deliver again what was applied: order and apply-once hold here.
    if (seq <= this.#lastSeq || this.#closed) return;
    const decoded = decodeRevocation(data, subject);
    if ("error" in decoded) {
      this.#rejected++;
      this.#opts.logger.warn({ stream: this.#stream, seq, error: decoded.error }, "skipping a malformed message on the revocation feed");
      this.#advance(seq);
      return;
    }
    const r: Revocation = { ...decoded.revocation, seq };
    this.#pending.delete(r.id);
    const told = this.#toldEarly.delete(r.id);
    if (r.expiresAt > this.#opts.clock.now()) {
      this.#index.add(r);
      this.#log.push(r);
      this.#lastSeq = seq;
      if (!told) this.#tell(r);
    }
    // An expired rule (replayed at start) can match nothing alive: only its position counts.
    this.#advance(seq);
  }

  /** Tells every listener; a throwing listener never stops the rest. */
  #tell(r: Revocation): void {
    for (const l of [...this.#listeners]) {
      try {
        l(r);
      } catch {
        // A listener's failure is its own; the revocation is applied regardless.
      }
    }
  }

  #advance(seq: number): void {
    this.#lastSeq = Math.max(this.#lastSeq, seq);
    if (this.#waiters.length === 0) return;
    const ready = this.#waiters.filter((w) => w.seq <= this.#lastSeq);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.seq > this.#lastSeq);
    for (const w of ready) {
      this.#opts.clock.clearTimeout(w.timer);
      w.resolve(true);
    }
  }

  #schedulePrune(): void {
    this.#pruneTimer = this.#opts.clock.setTimeout(() => {
      const now = this.#opts.clock.now();
      this.#index.prune(now);
      this.#log = this.#log.filter((r) => r.expiresAt > now);
      for (const [id, r] of this.#pending) {
        if (r.expiresAt > now) continue;
        this.#pending.delete(id);
        this.#toldEarly.delete(id);
      }
      if (!this.#closed) this.#schedulePrune();
    }, REVOCATION_PRUNE_INTERVAL_MS);
  }
}

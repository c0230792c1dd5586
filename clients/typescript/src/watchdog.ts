import type { Clock } from "./clock.js";

/** Heartbeat deadline before the server's interval is known: 45 s (3 × the server's default 15 s). */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 45_000;
/** Heartbeats that may go missing before the stream counts as dead: the deadline is 3 × the interval. */
export const HEARTBEAT_MISSES = 3;
/**
 * Least time a new stream may take to send its first message, ms: 10 s. Opening may wait
 * on the server (a replica catching up with the revocation feed before it answers
 * RESUME_AHEAD, minting and auditing the first tokens), which is not silence.
 */
export const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
/** Smallest deadline derived from observed heartbeats: 500 ms. */
export const MIN_HEARTBEAT_TIMEOUT_MS = 500;

/**
 * The server's heartbeat interval, learned from the stream: the smallest gap between the
 * server times of two consecutive heartbeats (a heartbeat delayed or lost in between can only
 * make a gap larger, never smaller). Kept across reconnects.
 */
export class HeartbeatInterval {
  #lastServerTime: number | undefined;
  #intervalMs: number | undefined;

  /** The learned interval, ms, once two heartbeats were seen. */
  get intervalMs(): number | undefined {
    return this.#intervalMs;
  }

  /** A heartbeat sent at `serverTimeMs` (server clock). */
  observe(serverTimeMs: number): void {
    const last = this.#lastServerTime;
    this.#lastServerTime = serverTimeMs;
    if (last === undefined) return;
    const gap = serverTimeMs - last;
    if (gap > 0 && (this.#intervalMs === undefined || gap < this.#intervalMs)) this.#intervalMs = gap;
  }

  /** A new stream: its first heartbeat must not be compared with the previous stream's last. */
  resetStream(): void {
    this.#lastServerTime = undefined;
  }

  /** The deadline to apply: `fixed` when configured, else 3 × the learned interval, else the default. */
  timeoutMs(fixed: number | undefined): number {
    if (fixed !== undefined) return fixed;
    if (this.#intervalMs === undefined) return DEFAULT_HEARTBEAT_TIMEOUT_MS;
    return Math.max(MIN_HEARTBEAT_TIMEOUT_MS, HEARTBEAT_MISSES * this.#intervalMs);
  }
}

/** A timer that fires `onSilent` unless kicked within its deadline. `stop()` frees it; idempotent. */
export class Watchdog {
  readonly #clock: Clock;
  readonly #deadline: () => number;
  readonly #onSilent: () => void;
  #handle: unknown;
  #stopped = false;

  constructor(clock: Clock, deadline: () => number, onSilent: () => void) {
    this.#clock = clock;
    this.#deadline = deadline;
    this.#onSilent = onSilent;
    this.kick();
  }

  /** Something arrived: the deadline starts again. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#handle = this.#clock.setTimeout(() => {
      this.#handle = undefined;
      if (!this.#stopped) this.#onSilent();
    }, this.#deadline());
  }

  stop(): void {
    this.#stopped = true;
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
  }
}

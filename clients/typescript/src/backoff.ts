/** First reconnect delay's upper bound: 100 ms. Doubles per consecutive failure. */
export const DEFAULT_BACKOFF_INITIAL_MS = 100;
/** Largest reconnect delay's upper bound: 10 s. */
export const DEFAULT_BACKOFF_MAX_MS = 10_000;

/** Reconnect delay settings, milliseconds. */
export interface BackoffOptions {
  /** Upper bound of the first delay; default DEFAULT_BACKOFF_INITIAL_MS. */
  initialMs?: number;
  /** Cap on the upper bound; default DEFAULT_BACKOFF_MAX_MS. */
  maxMs?: number;
}

/**
 * Exponential backoff with full jitter: a delay drawn uniformly from
 * [0, min(maxMs, initialMs · 2^failures)], so a fleet that lost the same replica does not
 * come back in step. `failures` counts consecutive failed attempts (0 for the first retry);
 * `random` returns a number in [0, 1).
 */
export function backoffDelay(failures: number, opts: Required<BackoffOptions>, random: () => number): number {
  const ceiling = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(failures, 30));
  return Math.floor(random() * ceiling);
}

/** Validated backoff settings with defaults applied. Throws a TypeError naming the bad field. */
export function backoffSettings(opts: BackoffOptions = {}): Required<BackoffOptions> {
  const initialMs = opts.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS;
  const maxMs = opts.maxMs ?? DEFAULT_BACKOFF_MAX_MS;
  if (!Number.isFinite(initialMs) || initialMs < 0) throw new TypeError(`backoff.initialMs: must be a non-negative number of milliseconds, got ${initialMs}`);
  if (!Number.isFinite(maxMs) || maxMs < initialMs) throw new TypeError(`backoff.maxMs: must be at least backoff.initialMs (${initialMs}), got ${maxMs}`);
  return { initialMs, maxMs };
}

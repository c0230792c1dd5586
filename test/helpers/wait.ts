/**
 * Waiting in tests, one way everywhere: on a condition, a value, an item appearing in a list
 * (a log line, an audit record, a recorded event) or an emitted event.
 *
 * Every wait names what it waits for and has a deadline. The deadline only keeps a broken
 * test from hanging: it is never what a test asserts, so it is generous (the machine is
 * shared and can be slow). A test that needs to show something did NOT happen first waits
 * for a later positive signal, then asserts the absence.
 */
import type { EventEmitter } from "node:events";

/** How long a wait lasts before it fails the test, in ms. Under vitest's 30 s test timeout. */
export const DEFAULT_WAIT_MS = 20_000;

/** How often a condition is polled, in ms. */
const POLL_MS = 10;

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls `pred` until it holds. Throws `timed out after N ms waiting for <what>` (plus
 * `detail()`, if given, to show what there was instead) when `timeoutMs` passes.
 */
export async function waitFor(
  pred: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = DEFAULT_WAIT_MS,
  detail?: () => string,
): Promise<void> {
  await waitForValue(async () => ((await pred()) ? true : undefined), what, timeoutMs, detail);
}

/** Polls `get` until it returns something other than `undefined`, and returns that. */
export async function waitForValue<T>(
  get: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = DEFAULT_WAIT_MS,
  detail?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      const extra = detail ? `; ${detail()}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await pause(POLL_MS);
  }
}

/**
 * Waits until an item of `list` (from index `from` on) matches `pred`, and returns it. For
 * lists something else appends to: log lines, audit records, recorded events.
 */
export function waitForItem<T>(
  list: readonly T[] | (() => readonly T[]),
  pred: (item: T) => boolean,
  what: string,
  opts: { from?: number; timeoutMs?: number } = {},
): Promise<T> {
  const items = typeof list === "function" ? list : () => list;
  return waitForValue(
    () => items().slice(opts.from ?? 0).find(pred),
    what,
    opts.timeoutMs,
    () => `had ${items().length} item(s)`,
  );
}

/** Waits for a log line matching `match` (a substring or a pattern) and returns it. */
export function waitForLine(lines: readonly string[], match: string | RegExp, opts: { from?: number; timeoutMs?: number } = {}): Promise<string> {
  const test = typeof match === "string" ? (l: string) => l.includes(match) : (l: string) => match.test(l);
  return waitForItem(lines, test, `a log line matching ${String(match)}`, opts);
}

/**
 * Resolves with the arguments of the next `event` emitted by `emitter` for which `pred`
 * holds. Listen before causing the event: the listener is attached when this is called.
 */
export function nextEmitted<A extends unknown[] = unknown[]>(
  emitter: EventEmitter,
  event: string,
  opts: { pred?: (...args: A) => boolean; timeoutMs?: number } = {},
): Promise<A> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
  return new Promise<A>((resolve, reject) => {
    const listener = (...args: unknown[]) => {
      if (opts.pred && !opts.pred(...(args as A))) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args as A);
    };
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for a "${event}" event`));
    }, timeoutMs);
    emitter.on(event, listener);
  });
}

/**
 * Reads a WatchSession stream in the background for a test: keeps every message and how the
 * stream ended, and wakes waiters on each arrival. The one stream collector of the suite.
 */
import { ConnectError } from "@connectrpc/connect";
import type { Token, WatchSessionResponse } from "../../src/gen/capvend/v1/vending_pb.js";
import { DEFAULT_WAIT_MS } from "./wait.js";

export type EventCase = NonNullable<WatchSessionResponse["event"]["case"]>;
export type EventOf<K extends EventCase> = Extract<WatchSessionResponse["event"], { case: K }>["value"];

/** A stream being read: the messages so far, how it ended, and waits on them. */
export interface Collected {
  readonly messages: WatchSessionResponse[];
  /** Settles (never rejects) once the stream has ended, cleanly or not. */
  readonly done: Promise<void>;
  /** How the stream failed; `undefined` while open or after a clean end. */
  readonly error: ConnectError | undefined;
  readonly ended: boolean;
  /** Events of one kind so far, oldest first. */
  of<K extends EventCase>(kind: K): EventOf<K>[];
  /** Every token pushed so far, oldest first. */
  tokens(): Token[];
  /** The resume token of the last event received (what a runtime passes back); "" before any. */
  lastResumeToken(): string;
  /**
   * Waits until `pred` holds, re-checking on every arrival. Fails naming `what` and what did
   * arrive after `timeoutMs`, or as soon as the stream has ended without `pred` holding.
   */
  until(pred: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Waits for the first message (from the start) matching `pred`, and returns it. */
  first(pred: (m: WatchSessionResponse) => boolean, what: string, timeoutMs?: number): Promise<WatchSessionResponse>;
  /** Stops reading: aborts the call (only when the stream was opened through `collect(open)`). */
  stop(): void;
}

/**
 * Starts reading a stream: either one already opened, or `open(signal)` so that `stop()`
 * can abort it.
 */
export function collect(source: AsyncIterable<WatchSessionResponse> | ((signal: AbortSignal) => AsyncIterable<WatchSessionResponse>)): Collected {
  const ac = new AbortController();
  const messages: WatchSessionResponse[] = [];
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  let error: ConnectError | undefined;
  let ended = false;
  const stream = typeof source === "function" ? source(ac.signal) : source;
  const done = (async () => {
    try {
      for await (const m of stream) {
        messages.push(m);
        wake();
      }
    } catch (err) {
      error = ConnectError.from(err);
    } finally {
      ended = true;
      wake();
    }
  })();

  const describe = () => `got [${messages.map((m) => m.event.case).join(", ")}]${ended ? (error ? `, then ${error.message}` : ", then the end") : ""}`;

  async function until(pred: () => boolean, what: string, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    if (pred()) return;
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pred()) finish();
        else if (ended) finish(new Error(`the stream ended before ${what}: ${describe()}`));
      };
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${describe()}`)), timeoutMs);
      function finish(err?: Error) {
        clearTimeout(timer);
        waiters.delete(check);
        if (err) reject(err);
        else resolve();
      }
      waiters.add(check);
      check();
    });
  }

  return {
    messages,
    done,
    get error() {
      return error;
    },
    get ended() {
      return ended;
    },
    of<K extends EventCase>(kind: K) {
      return messages.filter((m) => m.event.case === kind).map((m) => m.event.value as EventOf<K>);
    },
    tokens() {
      return messages.flatMap((m) => (m.event.case === "tokenIssued" && m.event.value.token ? [m.event.value.token] : []));
    },
    lastResumeToken() {
      return messages.at(-1)?.resumeToken ?? "";
    },
    until,
    async first(pred, what, timeoutMs) {
      await until(() => messages.some(pred), what, timeoutMs);
      return messages.find(pred)!;
    },
    stop: () => ac.abort(),
  };
}

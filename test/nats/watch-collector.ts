/** Reads a WatchSession stream in the background for tests: every message, its end, and waits on them. */
import { ConnectError } from "@connectrpc/connect";
import type { WatchSessionResponse } from "../../src/gen/capvend/v1/vending_pb.js";

export type EventCase = NonNullable<WatchSessionResponse["event"]["case"]>;
export type EventOf<K extends EventCase> = Extract<WatchSessionResponse["event"], { case: K }>["value"];

/** A stream being read: messages so far, how it ended, and polling waits with deadlines. */
export interface Collected {
  readonly messages: WatchSessionResponse[];
  readonly error: ConnectError | undefined;
  readonly ended: boolean;
  /** Events of one kind so far. */
  of<K extends EventCase>(kind: K): EventOf<K>[];
  /** The resume token of the last event received (what a runtime passes back); "" before any. */
  lastResumeToken(): string;
  /** Waits until `pred` holds; throws naming `what` (and what arrived) after `timeoutMs`. */
  until(pred: () => boolean, timeoutMs: number, what: string): Promise<void>;
  /** Stops reading (aborts the call). */
  stop(): void;
}

/** Starts reading `open(signal)`'s stream. */
export function collect(open: (signal: AbortSignal) => AsyncIterable<WatchSessionResponse>): Collected {
  const ac = new AbortController();
  const messages: WatchSessionResponse[] = [];
  let error: ConnectError | undefined;
  let ended = false;
  void (async () => {
    try {
      for await (const m of open(ac.signal)) messages.push(m);
    } catch (err) {
      error = ConnectError.from(err);
    } finally {
      ended = true;
    }
  })();
  return {
    messages,
    get error() {
      return error;
    },
    get ended() {
      return ended;
    },
    of<K extends EventCase>(kind: K) {
      return messages.filter((m) => m.event.case === kind).map((m) => m.event.value as EventOf<K>);
    },
    lastResumeToken() {
      return messages.at(-1)?.resumeToken ?? "";
    },
    async until(pred, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      while (!pred()) {
        if (Date.now() > deadline) {
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got [${messages.map((m) => m.event.case).join(", ")}]${error ? ` and ${error.message}` : ""}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    stop: () => ac.abort(),
  };
}

/**
 * An in-memory audit sink for tests of the parts that write audit records: it keeps what it
 * was given (chained exactly like the file sink), refuses secrets the same way, and can be
 * told to fail or hang so a test can check that issuance fails closed and fast.
 */
import type { Clock } from "../clock.js";
import { systemClock } from "../clock.js";
import { GENESIS_PREV, sealRecord } from "./chain.js";
import { fault } from "../errors.js";
import type { AuditEvent, AuditRecord, JsonValue } from "./event.js";
import { prepareAuditEvent } from "./event.js";
import type { AuditSink, AuditSinkState } from "./sink.js";
import { DEFAULT_AUDIT_TIMEOUT_MS } from "./sink.js";
import type { Waiter } from "./waiter.js";
import { createWaiter } from "./waiter.js";

/**
 * How the memory sink answers: "ok" writes, "fail" rejects at once as a failed write would,
 * "hang" holds appends until their deadline (or until the mode goes back to "ok").
 */
export type MemoryAuditSinkMode = "ok" | "fail" | "hang";

/** Options for `createMemoryAuditSink`. */
export interface MemoryAuditSinkOptions {
  /** Default "memory". */
  replica?: string;
  /** Default `systemClock`. Drives `time` and the deadline; a `ManualClock` makes hangs testable. */
  clock?: Clock;
  /** Deadline for each append, ms. Default 2000. */
  timeoutMs?: number;
}

/** A memory sink with its records and controls. */
export interface MemoryAuditSink extends AuditSink {
  /** Records written so far, oldest first, with chain fields. */
  readonly records: readonly AuditRecord[];
  /** Exact lines a file sink would have written for `records`. */
  readonly lines: readonly string[];
  readonly mode: MemoryAuditSinkMode;
  /** Switches behaviour; going back to "ok" writes the held appends that have not timed out. */
  setMode(mode: MemoryAuditSinkMode, error?: string): void;
  /** Records matching every given field (shallow equality). */
  find(match: Partial<AuditEvent>): AuditRecord[];
}

/** Creates an in-memory sink; see `MemoryAuditSink`. */
export function createMemoryAuditSink(options: MemoryAuditSinkOptions = {}): MemoryAuditSink {
  const clock = options.clock ?? systemClock;
  const replica = options.replica ?? "memory";
  const timeoutMs = options.timeoutMs ?? DEFAULT_AUDIT_TIMEOUT_MS;
  const records: AuditRecord[] = [];
  const lines: string[] = [];
  let held: { body: { [key: string]: JsonValue }; waiter: Waiter }[] = [];
  let mode: MemoryAuditSinkMode = "ok";
  let failure = "injected failure";
  let prev = GENESIS_PREV;
  let healthy = true;
  let lastError: string | undefined;
  let pending = 0;
  let closed = false;
  let closing: Promise<void> | undefined;

  const write = (body: { [key: string]: JsonValue }) => {
    const sealed = sealRecord(prev, records.length + 1, body);
    prev = sealed.lineHash;
    lines.push(sealed.line);
    records.push(JSON.parse(sealed.line) as AuditRecord);
    healthy = true;
    lastError = undefined;
  };

  return {
    get records() {
      return records;
    },
    get lines() {
      return lines;
    },
    get mode() {
      return mode;
    },
    append(event) {
      if (closed) return Promise.reject(fault("audit_unavailable", "audit record not written: the audit sink is closed"));
      let body: { [key: string]: JsonValue };
      try {
        body = prepareAuditEvent(event, { replica, now: clock.now() });
      } catch (err) {
        return Promise.reject(err);
      }
      if (mode === "fail") {
        healthy = false;
        lastError = `audit write failed: ${failure}`;
        return Promise.reject(fault("audit_unavailable", `audit record not written: ${lastError}`));
      }
      if (mode === "ok") {
        write(body);
        return Promise.resolve();
      }
      const waiter = createWaiter(
        clock,
        timeoutMs,
        () => {
          healthy = false;
          lastError = `audit write did not complete within ${timeoutMs} ms`;
          return fault("audit_unavailable", `audit record not written: timed out after ${timeoutMs} ms`);
        },
        () => {
          pending--;
        },
      );
      pending++;
      held.push({ body, waiter });
      return waiter.promise;
    },
    setMode(next, error) {
      mode = next;
      if (error !== undefined) failure = error;
      if (next === "ok") {
        const release = held;
        held = [];
        for (const h of release) {
          if (h.waiter.settled) continue;
          write(h.body);
          h.waiter.resolve();
        }
      }
    },
    find(match) {
      const entries = Object.entries(match);
      return records.filter((r) => entries.every(([k, v]) => (r as unknown as Record<string, unknown>)[k] === v));
    },
    get state(): AuditSinkState {
      const s: AuditSinkState = { healthy, pending, lastSeq: records.length, lastHash: prev };
      if (lastError !== undefined) s.lastError = lastError;
      return s;
    },
    close() {
      closed = true;
      closing ??= Promise.resolve();
      return closing;
    },
  };
}

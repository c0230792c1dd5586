import { JetStreamApiError } from "@nats-io/jetstream";
import type { Clock } from "../../clock.js";
import type { Logger } from "../../logging/logger.js";
import { describeNatsError } from "./deadline.js";
import { sleep } from "./resubscribe.js";

/** First wait between two attempts of a start-up step, ms; it doubles per attempt. */
export const STARTUP_RETRY_FIRST_MS = 250;
/** Longest wait between two attempts of a start-up step, ms. */
export const STARTUP_RETRY_MAX_MS = 2000;

/**
 * JetStream API error codes that mean "not ready yet" while a cluster forms or elects
 * leaders: incomplete results (10004), no suitable peers yet (10005), temporarily
 * unavailable (10008), this node cannot handle it now (10009), insufficient resources while
 * peers report in (10023), peer remap failed (10075).
 */
export const TRANSIENT_JETSTREAM_CODES: ReadonlySet<number> = new Set([10004, 10005, 10008, 10009, 10023, 10075]);

/**
 * The start-up budget shared by every start-up step of one replica: each step retries on
 * transient JetStream errors until `deadlineAt`, then start-up fails.
 */
export interface StartupRetry {
  readonly clock: Clock;
  readonly logger: Logger;
  /** The budget in ms (CAPVEND_NATS_STARTUP_TIMEOUT), for messages. */
  readonly timeoutMs: number;
  /** When start-up gives up, ms since the epoch. */
  readonly deadlineAt: number;
}

/** Starts the start-up budget now: `timeoutMs` from `clock.now()`. */
export function startupRetry(opts: { clock: Clock; logger: Logger; timeoutMs: number }): StartupRetry {
  return { clock: opts.clock, logger: opts.logger, timeoutMs: opts.timeoutMs, deadlineAt: opts.clock.now() + opts.timeoutMs };
}

/** A start-up step that failed for good: a permanent error, or transient ones past the deadline. */
export class NatsStartupError extends Error {
  override readonly name = "NatsStartupError";
  /** True when the deadline ran out on transient errors; false for a permanent error. */
  readonly timedOut: boolean;
  constructor(message: string, timedOut: boolean, cause: unknown) {
    super(message, { cause });
    this.timedOut = timedOut;
  }
}

/** Thrown by a step that found a stream without an elected leader (it cannot serve reads yet). */
export class NoLeaderYet extends Error {
  override readonly name = "NoLeaderYet";
}

/**
 * Runs one start-up step (`what` names it in logs and errors), retrying with backoff
 * (STARTUP_RETRY_FIRST_MS doubling to STARTUP_RETRY_MAX_MS) while it fails with a transient
 * JetStream error, each retry logged at warn with the reason. A permanent error (permission
 * denied, bad credentials, a conflicting stream config) is thrown at once. The deadline is
 * checked between attempts, so an attempt in flight may end past it by at most its own
 * request timeout.
 */
export async function retryStartup<T>(what: string, budget: StartupRetry, step: () => Promise<T>): Promise<T> {
  const never = new AbortController().signal;
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      const reason = describeNatsError(err);
      if (!isTransientJetStreamError(err)) {
        throw new NatsStartupError(`NATS start-up: ${what} failed: ${reason}`, false, err);
      }
      const left = budget.deadlineAt - budget.clock.now();
      if (left <= 0) {
        throw new NatsStartupError(
          `NATS start-up: ${what}: JetStream was not ready within CAPVEND_NATS_STARTUP_TIMEOUT (${budget.timeoutMs} ms, ${attempt} attempts); last error: ${reason}`,
          true,
          err,
        );
      }
      const wait = Math.min(STARTUP_RETRY_FIRST_MS * 2 ** Math.min(attempt - 1, 10), STARTUP_RETRY_MAX_MS, left);
      budget.logger.warn({ step: what, attempt, retry_in_ms: wait, error: reason }, "JetStream not ready; retrying a start-up step");
      await sleep(budget.clock, wait, never);
    }
  }
}

/**
 * Whether an error means JetStream is not ready yet (worth retrying within the start-up
 * deadline) rather than something a retry cannot fix. Looks through `cause` chains: the
 * first error that says either way decides, and permission or authentication errors
 * anywhere in the chain make it permanent.
 */
export function isTransientJetStreamError(err: unknown): boolean {
  const chain: unknown[] = [];
  for (let e: unknown = err; e !== undefined && e !== null && chain.length < 10; e = e instanceof Error ? e.cause : undefined) chain.push(e);
  const named = (e: unknown, ...names: string[]) => e instanceof Error && names.includes(e.name);
  if (chain.some((e) => named(e, "PermissionViolationError", "AuthorizationError", "UserAuthenticationExpiredError", "ClosedConnectionError", "DrainingConnectionError"))) return false;
  for (const e of chain) {
    if (e instanceof NoLeaderYet) return true;
    if (e instanceof JetStreamApiError) return TRANSIENT_JETSTREAM_CODES.has(e.code);
    // nats.js: a request nobody answered in time, or no responder at all (JetStream not up
    // on this server yet; nats.js reports that as "jetstream is not enabled").
    if (named(e, "TimeoutError", "NoResponders", "NoRespondersError")) return true;
  }
  const text = chain.map((e) => (e instanceof Error ? `${e.name} ${e.message}` : String(e))).join(" | ");
  return /\btimeout\b|timed out|no answer from NATS|no responders|temporarily unavailable/i.test(text);
}

/**
 * The start-up retry on its own, with a manual clock: what counts as "JetStream not ready"
 * (retried with backoff, each retry logged at warn) and what fails at once, and the deadline.
 */
import { JetStreamApiError } from "@nats-io/jetstream";
// The error nats.js itself throws for "no responders" and for JetStream off in the account.
import { jserrors } from "@nats-io/jetstream/internal";
import { NoRespondersError, PermissionViolationError, RequestError, TimeoutError } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { fault } from "../../src/errors.js";
import {
  isTransientJetStreamError,
  NatsStartupError,
  NoLeaderYet,
  retryStartup,
  STARTUP_RETRY_FIRST_MS,
  STARTUP_RETRY_MAX_MS,
  startupRetry,
} from "../../src/backends/nats/startup-retry.js";
import { memoryLogger } from "./fixtures.js";

const apiError = (errCode: number, status: number, description: string) => new JetStreamApiError({ code: status, err_code: errCode, description });
const noResponders = () => new jserrors.JetStreamNotEnabled("jetstream is not enabled", { cause: new RequestError("no responders", { cause: new NoRespondersError("$JS.API.INFO") }) });

describe("isTransientJetStreamError", () => {
  it.each([
    ["a request timeout", new TimeoutError()],
    ["no responders (JetStream not up on the server yet)", noResponders()],
    ["JetStream temporarily unavailable (no meta leader)", apiError(10008, 503, "JetStream system temporarily unavailable")],
    ["no suitable peers yet", apiError(10005, 400, "no suitable peers for placement")],
    ["a stream without a leader", new NoLeaderYet("stream X has no leader yet")],
    ["capvend's own deadline", fault("nats_unavailable", "policy set get: no answer from NATS within 2000 ms")],
    ["a wrapped timeout", fault("nats_unavailable", "reading stream: TimeoutError: timeout", { cause: new TimeoutError() })],
  ])("retries %s", (_what, err) => {
    expect(isTransientJetStreamError(err)).toBe(true);
  });

  it.each([
    ["permission denied", new PermissionViolationError("Permissions Violation for Publish to \"$JS.API.INFO\"", "publish", "$JS.API.INFO")],
    ["permission denied, wrapped", fault("nats_unavailable", "x", { cause: new PermissionViolationError("Permissions Violation", "publish", "$JS.API.>") })],
    ["a stream that exists with another config", apiError(10058, 400, "stream name already in use with a different configuration")],
    ["replicas > 1 on a single server", apiError(10074, 500, "replicas > 1 not supported in non-clustered mode")],
    ["JetStream not enabled for the account", new jserrors.JetStreamNotEnabled("JetStream not enabled for account", { cause: apiError(10039, 503, "JetStream not enabled for account") })],
    ["an invalid stream config", apiError(10052, 500, "max age must be positive")],
    ["anything else", new Error("bad")],
  ])("does not retry %s", (_what, err) => {
    expect(isTransientJetStreamError(err)).toBe(false);
  });
});

/** Runs `promise` to its end, moving the manual clock whenever it waits. */
async function drive<T>(clock: ManualClock, promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  let settled: { value?: T; error?: unknown } | undefined;
  promise.then(
    (value) => (settled = { value }),
    (error: unknown) => (settled = { error }),
  );
  for (let turns = 0; !settled && turns < 10_000; turns++) {
    await new Promise((r) => setImmediate(r));
    if (!settled && clock.pendingTimers > 0) clock.advance(STARTUP_RETRY_MAX_MS);
  }
  if (!settled) throw new Error("the step neither resolved nor rejected");
  return settled;
}

describe("retryStartup", () => {
  it("retries transient errors with a growing backoff, logging each at warn, until the step succeeds", async () => {
    const clock = new ManualClock();
    const { logger, lines } = memoryLogger();
    const budget = startupRetry({ clock, logger, timeoutMs: 30_000 });
    let attempts = 0;
    const step = async () => {
      if (++attempts < 6) throw apiError(10008, 503, "JetStream system temporarily unavailable");
      return "ready";
    };
    expect(await drive(clock, retryStartup("bucket capvend_policy", budget, step))).toEqual({ value: "ready" });
    expect(attempts).toBe(6);
    const warns = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "JetStream not ready; retrying a start-up step");
    expect(warns.map((w) => w.retry_in_ms)).toEqual([STARTUP_RETRY_FIRST_MS, 2 * STARTUP_RETRY_FIRST_MS, 4 * STARTUP_RETRY_FIRST_MS, STARTUP_RETRY_MAX_MS, STARTUP_RETRY_MAX_MS]);
    expect(warns[0]).toMatchObject({ level: 40, step: "bucket capvend_policy", attempt: 1, error: "JetStreamApiError: JetStream system temporarily unavailable" });
  });

  it("fails at once on a permanent error, without retrying or waiting", async () => {
    const clock = new ManualClock();
    const { logger, lines } = memoryLogger();
    let attempts = 0;
    const step = async () => {
      attempts++;
      throw new PermissionViolationError('Permissions Violation for Publish to "$JS.API.INFO"', "publish", "$JS.API.INFO");
    };
    const { error } = await drive(clock, retryStartup("JetStream account info", startupRetry({ clock, logger, timeoutMs: 30_000 }), step));
    expect(error).toBeInstanceOf(NatsStartupError);
    expect((error as NatsStartupError).timedOut).toBe(false);
    expect((error as Error).message).toMatch(/^NATS start-up: JetStream account info failed: PermissionViolationError: Permissions Violation/);
    expect(attempts).toBe(1);
    expect(lines).toEqual([]);
  });

  it("gives up once the start-up budget is spent, naming the setting and the last error", async () => {
    const clock = new ManualClock();
    const { logger } = memoryLogger();
    const start = clock.now();
    let attempts = 0;
    const step = async () => {
      attempts++;
      throw new TimeoutError();
    };
    const { error } = await drive(clock, retryStartup("stream CAPVEND_REVOCATIONS", startupRetry({ clock, logger, timeoutMs: 10_000 }), step));
    expect(error).toBeInstanceOf(NatsStartupError);
    expect((error as NatsStartupError).timedOut).toBe(true);
    expect((error as Error).message).toBe(
      `NATS start-up: stream CAPVEND_REVOCATIONS: JetStream was not ready within CAPVEND_NATS_STARTUP_TIMEOUT (10000 ms, ${attempts} attempts); last error: TimeoutError: timeout`,
    );
    // The last wait is cut to the deadline: the final attempt runs at it, not past it.
    expect(clock.now() - start).toBe(10_000);
    expect(attempts).toBeGreaterThan(5);
  });
});

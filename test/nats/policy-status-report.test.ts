/**
 * A replica's policy status report retries a failed write soon (1 s, doubling up to the
 * 1 min interval) instead of leaving the replica out of the replica directory for a minute:
 * with a manual clock and a bucket whose first writes fail.
 */
import type { KV } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { POLICY_STATUS_INTERVAL_MS, POLICY_STATUS_RETRY_FIRST_MS, reportPolicyStatus } from "../../src/backends/nats/kv-policy.js";
import { memoryLogger } from "./fixtures.js";

const flush = () => new Promise((r) => setImmediate(r));

describe("reportPolicyStatus", () => {
  it("retries a failed report with a doubling wait, then falls back to the interval", async () => {
    const clock = new ManualClock();
    const { logger, lines } = memoryLogger();
    const puts: { key: string; at: number }[] = [];
    let failuresLeft = 3;
    const kv = {
      put: async (key: string) => {
        puts.push({ key, at: clock.now() });
        if (failuresLeft-- > 0) throw new Error("TimeoutError: timeout");
        return puts.length;
      },
    } as unknown as KV;
    const stop = reportPolicyStatus({
      kv,
      replica: "replica a",
      clock,
      logger,
      timeoutMs: 500,
      status: () => ({ policy_version: "v1", origin: "test", loaded_at_ms: 0 }),
      subscribe: () => () => undefined,
    });
    const start = clock.now();
    await flush();
    for (const wait of [POLICY_STATUS_RETRY_FIRST_MS, 2 * POLICY_STATUS_RETRY_FIRST_MS, 4 * POLICY_STATUS_RETRY_FIRST_MS]) {
      clock.advance(wait);
      await flush();
    }
    // Three failures, three retries; the fourth put succeeded and nothing more is due before the interval.
    expect(puts.map((p) => p.at - start)).toEqual([0, 1000, 3000, 7000]);
    expect(puts[0]!.key).toBe("replica_a");
    const warns = lines.map((l) => JSON.parse(l) as { msg: string; retry_in_ms: number });
    expect(warns.map((w) => w.retry_in_ms)).toEqual([1000, 2000, 4000]);
    clock.advance(POLICY_STATUS_INTERVAL_MS - 7000 - 1);
    await flush();
    expect(puts).toHaveLength(4);
    clock.advance(1);
    await flush();
    expect(puts).toHaveLength(5);
    stop();
    expect(clock.pendingTimers).toBe(0);
  });
});

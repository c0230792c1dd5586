import { describe, expect, it } from "vitest";
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import { createMemoryAuditSink } from "../../src/audit/memory-sink.js";
import { ManualClock } from "../../src/clock.js";
import { StreamHub, type StreamHubView } from "../../src/streams/stream-hub.js";
import type { StreamTokens } from "../../src/streams/stream-tokens.js";

const neverMints: StreamTokens = {
  mint: () => Promise.reject(new Error("not in this test")),
};

/**
 * The hub's public surface is what the service and the server use; what a WatchStream needs
 * of it (its timer queue, its token source, the calls that keep its books) stays private.
 */
describe("the stream hub's surface", () => {
  it("keeps the timer queue, the token source and stream bookkeeping private", async () => {
    const clock = new ManualClock();
    const revocations = new MemoryRevocationList(clock);
    const hub = new StreamHub({ clock, tokens: neverMints, revocations, audit: createMemoryAuditSink({ clock }), renewLeadMs: 1000, heartbeatIntervalMs: 1000, stallTimeoutMs: 1000 });
    for (const name of ["unregister", "queue", "issuer", "tokens", "traceRenewal", "onGrantDenied", "onSlowReader", "logRenewalFailure", "watch"]) {
      expect(name in hub, name).toBe(false);
    }
    // The compiler holds the same line (the typecheck fails if one of these turns public).
    // @ts-expect-error private to the hub
    void hub.unregister;
    // @ts-expect-error private to the hub
    void hub.queue;
    // @ts-expect-error the hub mints through StreamTokens, it has no issuer
    void hub.issuer;
    const view: StreamHubView = hub;
    expect(view.stats()).toMatchObject({ streams: 0, sessions: 0, timers: 0 });
    view.drain("test");
    expect(() => view.assertOpen()).toThrow(/shutting down/);
    hub.close();
    await revocations.close();
  });
});

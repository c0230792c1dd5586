/**
 * A session store that fails to record a session's end (see SessionStore in
 * src/backends/types.ts): EndSession still ends the session, through its stored revocation,
 * and the failure is logged rather than swallowed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import { MemorySessionStore } from "../../src/backends/memory/memory-session-store.js";
import { systemClock } from "../../src/clock.js";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

/** A store cut off from its storage for writes only, as the NATS store during an outage (reads come from its cache). */
class EndFails extends MemorySessionStore {
  override async end(): Promise<never> {
    throw new Error("session end: NATS is unreachable");
  }
}

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ sessions: new EndFails(systemClock), revocations: new MemoryRevocationList(systemClock) });
});
afterAll(async () => {
  await h?.close();
});

describe("a session store that does not record a session's end", () => {
  it("still ends the session through its revocation, and logs the store's failure without the credential", async () => {
    const s = await startSalesSession(h);
    await h.orchestrator.endSession({ sessionId: s.sessionId, reason: "done" });
    // The revocation is in force: the session's credential no longer works.
    await expect(s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).rejects.toThrow(/unauthenticated/);
    const lines = h.logLines.filter((l) => l.includes("did not record the end"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(s.sessionId);
    expect(lines[0]).toContain("NATS is unreachable");
    expect(lines[0]).not.toContain(s.sessionCredential);
  });
});

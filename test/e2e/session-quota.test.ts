/**
 * The per-orchestrator quota of live sessions (CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR) on one
 * replica: refused past the cap with RESOURCE_EXHAUSTED / SESSION_QUOTA, freed by EndSession
 * and by revocations, not spent by a request_id retry, and exact under concurrency.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reasonOf } from "../../src/errors.js";
import { startHarness, type Harness } from "../helpers/harness.js";

const CAP = 3;
let h: Harness;

beforeAll(async () => {
  h = await startHarness({ env: { CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR: String(CAP) } });
});

afterAll(async () => {
  await h?.close();
});

const start = (agentId = "sales-bot", requestId?: string) =>
  h.orchestrator.startSession({ agentId, userId: "alice", grants: [{ resource: "calendar", scopes: ["read"] }], requestId });

async function failure(call: Promise<unknown>): Promise<ConnectError | undefined> {
  return call.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
}

describe("sessions per orchestrator", () => {
  it("refuses the session past the cap, admits one again once a session ends, and counts revoked sessions out", async () => {
    const requestId = randomUUID();
    const first = await start("sales-bot", requestId);
    const held = [first, await start(), await start()];
    const over = await failure(start());
    expect(over?.code).toBe(Code.ResourceExhausted);
    expect(reasonOf(over)).toBe("SESSION_QUOTA");
    expect(over?.rawMessage).toContain("CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR (3)");

    // A retry of a request that already opened a session is not a new session.
    const retried = await start("sales-bot", requestId);
    expect(retried.sessionId).toBe(first.sessionId);

    await h.orchestrator.endSession({ sessionId: held[0]!.sessionId });
    const replacement = await start();
    expect(reasonOf(await failure(start()))).toBe("SESSION_QUOTA");

    // Revoking the agent ends its sessions: they no longer count.
    await h.orchestrator.revoke({ target: { case: "agentId", value: "sales-bot" }, reason: "sweep" });
    const fresh = await Promise.all([start(), start(), start()]);
    expect(fresh).toHaveLength(CAP);
    for (const s of [replacement, ...fresh, ...held.slice(1)]) await h.orchestrator.endSession({ sessionId: s.sessionId });
  });

  it("admits exactly the cap out of a concurrent burst", async () => {
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => start()));
    const ok = results.filter((r) => r.status === "fulfilled");
    expect(ok).toHaveLength(CAP);
    for (const r of results) if (r.status === "rejected") expect(reasonOf(r.reason)).toBe("SESSION_QUOTA");
    for (const r of ok) await h.orchestrator.endSession({ sessionId: (r as PromiseFulfilledResult<Awaited<ReturnType<typeof start>>>).value.sessionId });
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ORCHESTRATOR_TOKEN, startHarness, type Harness } from "../helpers/harness.js";
import { collect } from "../helpers/stream-collector.js";
import { waitFor } from "../helpers/wait.js";
import { clientWith, countOf, memoryTelemetry, sumOf, type MemoryTelemetry } from "./helpers.js";

let h: Harness;
let mt: MemoryTelemetry;

beforeAll(async () => {
  mt = memoryTelemetry();
  h = await startHarness({ telemetry: mt.telemetry });
});
afterAll(async () => {
  await h?.close();
  await mt?.telemetry.shutdown();
});

const metric = async (name: string) => (await mt.reader.metrics()).get(name);

describe("metrics", () => {
  it("count issued and denied tokens by resource, and time each issuance", async () => {
    const orchestrator = clientWith(h.url, ORCHESTRATOR_TOKEN);
    const s = await orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "salesforce", scopes: ["read"] }, { resource: "calendar", scopes: ["read"] }] });
    const runtime = clientWith(h.url, s.sessionCredential);
    // The report bot's warehouse tokens are capped at 900 s by policy: a one-hour one is denied.
    const r = await orchestrator.startSession({ agentId: "report-bot", grants: [{ resource: "warehouse", scopes: ["read"] }] });
    const reporter = clientWith(h.url, r.sessionCredential);
    const before = {
      issued: sumOf(await metric("capvend.tokens.issued"), { "capvend.resource": "salesforce" }),
      denied: sumOf(await metric("capvend.tokens.denied"), { "capvend.resource": "warehouse" }),
      timed: countOf(await metric("capvend.issuance.duration")),
    };
    await runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
    await runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
    await runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    await expect(reporter.issueToken({ resource: "warehouse", scopes: ["read"], ttl: { seconds: 3600n } })).rejects.toThrow(/no policy permits it/);

    expect(sumOf(await metric("capvend.tokens.issued"), { "capvend.resource": "salesforce" }) - before.issued).toBe(2);
    expect(sumOf(await metric("capvend.tokens.issued"), { "capvend.resource": "calendar" })).toBeGreaterThanOrEqual(1);
    expect(sumOf(await metric("capvend.tokens.denied"), { "capvend.resource": "warehouse" }) - before.denied).toBe(1);
    const durations = await metric("capvend.issuance.duration");
    expect(countOf(durations) - before.timed).toBe(4);
    expect(countOf(durations, { "capvend.issue.outcome": "denied" })).toBeGreaterThanOrEqual(1);
    expect(durations?.descriptor.unit).toBe("s");
    // Audit appends are timed too: StartSession's and one per issuance or denial at least.
    expect(countOf(await metric("capvend.audit.append.duration"), { "capvend.audit.outcome": "ok" })).toBeGreaterThanOrEqual(5);
  });

  it("the active-streams gauge follows streams opening and closing; renewals and revocation delivery are recorded", async () => {
    const orchestrator = clientWith(h.url, ORCHESTRATOR_TOKEN);
    const gauge = async () => {
      const points = (await metric("capvend.streams.active"))?.dataPoints ?? [];
      return points.length === 0 ? 0 : (points[0]!.value as number);
    };
    const s1 = await orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "calendar", scopes: ["read"] }] });
    const s2 = await orchestrator.startSession({ agentId: "sales-bot", userId: "bob", grants: [{ resource: "calendar", scopes: ["read"] }] });
    const ac = new AbortController();
    const w1 = collect(clientWith(h.url, s1.sessionCredential).watchSession({ grants: [{ resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } }] }, { signal: ac.signal }));
    const w2 = collect(clientWith(h.url, s2.sessionCredential).watchSession({ grants: [{ resource: "calendar", scopes: ["read"] }] }));
    await w1.until(() => w1.tokens().length >= 1, "w1's first token");
    await w2.until(() => w2.tokens().length >= 1, "w2's first token");
    expect(await gauge()).toBe(2);

    const renewedBefore = sumOf(await metric("capvend.tokens.renewed"), { "capvend.resource": "calendar" });
    await w1.until(() => w1.tokens().length >= 2, "a renewal on w1");
    await waitFor(async () => sumOf(await metric("capvend.tokens.renewed"), { "capvend.resource": "calendar" }) > renewedBefore, "the renewal counted");

    const deliveredBefore = countOf(await metric("capvend.revocation.delivery.duration"));
    const revokedBefore = sumOf(await metric("capvend.tokens.revoked"), { "capvend.revocation.kind": "session_id" });
    await orchestrator.endSession({ sessionId: s2.sessionId, reason: "done" });
    await w2.done;
    await waitFor(async () => (await gauge()) === 1, "the gauge to drop to 1");
    expect(countOf(await metric("capvend.revocation.delivery.duration")) - deliveredBefore).toBe(1);
    expect(sumOf(await metric("capvend.tokens.revoked"), { "capvend.revocation.kind": "session_id" }) - revokedBefore).toBe(1);

    await orchestrator.revoke({ target: { case: "resource", value: "calendar" }, reason: "incident" });
    expect(sumOf(await metric("capvend.tokens.revoked"), { "capvend.revocation.kind": "resource", "capvend.resource": "calendar" })).toBe(1);
    ac.abort();
    await w1.done;
    await waitFor(async () => (await gauge()) === 0, "the gauge to drop to 0");
  });
});

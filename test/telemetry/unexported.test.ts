import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryAuditSink, type MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { createTelemetry, type Telemetry } from "../../src/telemetry/telemetry.js";
import { ORCHESTRATOR_TOKEN, startHarness, startSalesSession, type Harness } from "../helpers/harness.js";
import { clientWith } from "./helpers.js";

/** With no exporter configured (the default), nothing is recorded, yet every id still flows. */

let h: Harness;
let telemetry: Telemetry;
let sink: MemoryAuditSink;

beforeAll(async () => {
  telemetry = createTelemetry();
  sink = createMemoryAuditSink({ timeoutMs: 200 });
  h = await startHarness({ telemetry, audit: sink });
});
afterAll(async () => {
  await h?.close();
  await telemetry?.shutdown();
});

describe("telemetry without an exporter", () => {
  it("records no span, but continues the caller's trace id into the audit record", async () => {
    expect(telemetry.tracer.startSpan("probe").isRecording()).toBe(false);
    const traceId = randomBytes(16).toString("hex");
    const orchestrator = clientWith(h.url, ORCHESTRATOR_TOKEN, { traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` });
    const s = await orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "calendar", scopes: ["read"] }] });
    expect(sink.find({ type: "session.started", session_id: s.sessionId })[0]?.trace_id).toBe(traceId);
  });

  it("gives a token's audit record and the log line of a failure a trace id: the caller's, or one of their own", async () => {
    const s = await startSalesSession(h);
    const zero = "0".repeat(32);
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    const issued = sink.find({ type: "token.issued", jti: token!.tokenId })[0];
    expect(issued?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(issued?.trace_id).not.toBe(zero);

    const rpcFailed = (from: number) => h.logLines.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "rpc failed");
    sink.setMode("fail");
    try {
      // A caller's trace id is continued into the failure's log line.
      const callerTrace = randomBytes(16).toString("hex");
      const traced = clientWith(h.url, s.sessionCredential, { traceparent: `00-${callerTrace}-${randomBytes(8).toString("hex")}-01` });
      let from = h.logLines.length;
      await expect(traced.issueToken({ resource: "calendar", scopes: ["read"] })).rejects.toThrow();
      expect(rpcFailed(from).map((l) => l.trace_id)).toEqual([callerTrace]);
      // Without one, the failure gets a fresh id, not the last call's.
      from = h.logLines.length;
      await expect(s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).rejects.toThrow();
      const [own] = rpcFailed(from);
      expect(own?.trace_id).toMatch(/^[0-9a-f]{32}$/);
      expect([zero, callerTrace]).not.toContain(own?.trace_id);
    } finally {
      sink.setMode("ok");
    }
  });
});

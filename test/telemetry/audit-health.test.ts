import { createClient, Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryAuditSink, type MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";
import { countOf, memoryTelemetry, rpc, sumOf, type MemoryTelemetry } from "./helpers.js";

let h: Harness;
let mt: MemoryTelemetry;
let sink: MemoryAuditSink;

beforeAll(async () => {
  mt = memoryTelemetry();
  sink = createMemoryAuditSink({ timeoutMs: 200 });
  h = await startHarness({ telemetry: mt.telemetry, audit: sink });
});
afterAll(async () => {
  await h?.close();
  await mt?.telemetry.shutdown();
});

describe("a failing audit sink, seen from outside", () => {
  it("flips grpc health capvend.audit to NOT_SERVING and back, counts the failure, and its log line leads to the trace", async () => {
    const health = createClient(Health, h.transport(undefined, "grpc"));
    const status = async () => (await health.check({ service: "capvend.audit" })).status;
    expect(await status()).toBe(ServingStatus.SERVING);

    const s = await startSalesSession(h);
    sink.setMode("fail", "disk full");
    let code: Code | undefined;
    try {
      await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    } catch (err) {
      code = ConnectError.from(err).code;
    }
    expect(code).toBe(Code.Unavailable);
    expect(await status()).toBe(ServingStatus.NOT_SERVING);

    const metrics = await mt.reader.metrics();
    expect(sumOf(metrics.get("capvend.audit.failures"), { "error.type": "audit_unavailable", "capvend.audit.event": "token.issued" })).toBe(1);
    expect(countOf(metrics.get("capvend.audit.append.duration"), { "capvend.audit.outcome": "failed" })).toBe(1);
    expect(countOf(metrics.get("capvend.issuance.duration"), { "capvend.issue.outcome": "error" })).toBe(1);

    // The application log says why, and names the trace of the call that failed.
    const spans = await mt.spans();
    const failed = rpc(spans, "IssueToken").find((x) => x.attributes["rpc.grpc.status_code"] === Code.Unavailable);
    expect(failed?.attributes["capvend.error.reason"]).toBe("AUDIT_UNAVAILABLE");
    const line = h.logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "rpc failed" && l.procedure === "capvend.v1.VendingService/IssueToken");
    expect(line?.trace_id).toBe(failed!.spanContext().traceId);
    expect(line?.span_id).toBe(failed!.spanContext().spanId);
    expect(h.logLines.some((l) => l.includes("audit sink unhealthy"))).toBe(true);

    sink.setMode("ok");
    await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    expect(await status()).toBe(ServingStatus.SERVING);
  });
});

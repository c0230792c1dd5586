import { randomBytes } from "node:crypto";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { ORCHESTRATOR_TOKEN, startHarness, type Harness } from "../helpers/harness.js";
import { collect } from "../helpers/stream-collector.js";
import { childrenOf, clientWith, memoryTelemetry, named, only, rpc, type MemoryTelemetry } from "./helpers.js";

/**
 * One agent session end to end, as an orchestrator and a runtime would drive it, and the
 * spans it leaves: every RPC continues the orchestrator's trace or starts its own, the work
 * inside nests under it, and renewals are roots linked back to their stream.
 */

let h: Harness;
let mt: MemoryTelemetry;
let spans: ReadableSpan[];
const traceId = randomBytes(16).toString("hex");
const callerSpanId = randomBytes(8).toString("hex");
const traceparent = `00-${traceId}-${callerSpanId}-01`;
let sessionId: string;
let issuedTokenId: string;
let streamTokenIds: string[];

beforeAll(async () => {
  mt = memoryTelemetry();
  h = await startHarness({ telemetry: mt.telemetry });
  const orchestrator = clientWith(h.url, ORCHESTRATOR_TOKEN, { traceparent });

  const started = await orchestrator.startSession({
    agentId: "sales-bot",
    userId: "alice",
    grants: [
      { resource: "salesforce", scopes: ["read", "write"] },
      { resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } },
    ],
  });
  sessionId = started.sessionId;
  // The runtime is another process: it has no trace of its own to continue.
  const runtime = clientWith(h.url, started.sessionCredential, { protocol: "grpc" });
  const issued = await runtime.issueToken({ resource: "salesforce", scopes: ["read", "write"] });
  issuedTokenId = issued.token!.tokenId;

  const watch = collect(runtime.watchSession({ grants: [{ resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } }] }));
  await watch.until(() => watch.tokens().length >= 2, "a renewal of the 3 s calendar token");
  streamTokenIds = watch.tokens().map((t) => t.tokenId);

  await orchestrator.revoke({ target: { case: "tokenId", value: issuedTokenId }, reason: "rotated out" });
  await orchestrator.endSession({ sessionId, reason: "task done" });
  await watch.done;
  expect(watch.messages.at(-1)?.event.case).toBe("sessionEnded");
  spans = await mt.spans();
}, 30_000);

afterAll(async () => {
  await h?.close();
  await mt?.telemetry.shutdown();
});

const ids = (s: ReadableSpan) => s.spanContext();

describe("the trace of one agent session", () => {
  it("continues the orchestrator's traceparent: same trace id, parent = the caller's span", () => {
    for (const method of ["StartSession", "Revoke", "EndSession"]) {
      const s = only(rpc(spans, method), method);
      expect(s.kind).toBe(SpanKind.SERVER);
      expect(ids(s).traceId).toBe(traceId);
      expect(s.parentSpanContext?.spanId).toBe(callerSpanId);
      expect(s.parentSpanContext?.isRemote).toBe(true);
    }
  });

  it("names StartSession's session, agent and user, its policy decision, and records rpc.* and the gRPC code", () => {
    const s = only(rpc(spans, "StartSession"), "StartSession");
    expect(s.attributes).toMatchObject({
      "rpc.system": "connect_rpc",
      "rpc.service": "capvend.v1.VendingService",
      "rpc.method": "StartSession",
      "rpc.grpc.status_code": 0,
      "session.id": sessionId,
      "enduser.id": "alice",
      "capvend.agent.id": "sales-bot",
      "capvend.caller.kind": "orchestrator",
      "capvend.caller.id": "dev",
      "capvend.policy.decision": "allow",
    });
    expect(s.attributes["capvend.policy.ids"]).toContain("orchestrator-dev");
    expect(s.status.code).toBe(SpanStatusCode.OK);
    const kids = childrenOf(spans, s).map((c) => c.name).sort();
    // The orchestrator's start_session, then each granted scope (can policy ever allow it?).
    expect(kids).toEqual(["capvend.audit.append", ...Array(4).fill("capvend.policy.evaluate")]);
    expect(named(childrenOf(spans, s), "capvend.policy.evaluate").map((p) => p.attributes["capvend.policy.action"]).sort()).toEqual(["read", "read", "start_session", "write"]);
    expect(String(s.attributes["capvend.policy.version"])).toMatch(/^[0-9a-f]{16}$/);
  });

  it("an IssueToken over gRPC starts its own trace; issuance nests under it with policy per scope, mint and audit", () => {
    const call = only(rpc(spans, "IssueToken"), "IssueToken");
    expect(call.attributes).toMatchObject({
      "rpc.system": "grpc",
      "rpc.grpc.status_code": 0,
      "session.id": sessionId,
      "enduser.id": "alice",
      "capvend.agent.id": "sales-bot",
      "capvend.resource": "salesforce",
      "capvend.token.scopes": ["read", "write"],
      "capvend.token.id": issuedTokenId,
    });
    expect(call.parentSpanContext).toBeUndefined();
    expect(ids(call).traceId).not.toBe(traceId);

    const issue = only(childrenOf(spans, call), "issue span under IssueToken");
    expect(issue.name).toBe("capvend.issue");
    expect(issue.attributes).toMatchObject({
      "session.id": sessionId,
      "enduser.id": "alice",
      "capvend.agent.id": "sales-bot",
      "capvend.resource": "salesforce",
      "capvend.token.scopes": ["read", "write"],
      "capvend.token.id": issuedTokenId,
      "capvend.issue.kind": "issued",
      "capvend.issue.outcome": "issued",
      "capvend.policy.decision": "allow",
      "capvend.policy.ids": ["sales-crm-for-user"],
    });
    expect(Date.parse(String(issue.attributes["capvend.token.expires_at"]))).toBeGreaterThan(Date.now());
    const steps = childrenOf(spans, issue);
    expect(steps.map((c) => c.name).sort()).toEqual(["capvend.audit.append", "capvend.policy.evaluate", "capvend.policy.evaluate", "capvend.token.mint"]);
    expect(named(steps, "capvend.policy.evaluate").map((p) => p.attributes["capvend.policy.action"]).sort()).toEqual(["read", "write"]);
    expect(only(named(steps, "capvend.token.mint"), "mint").attributes["capvend.token.id"]).toBe(issuedTokenId);
    expect(only(named(steps, "capvend.audit.append"), "audit").attributes).toMatchObject({ "capvend.audit.event": "token.issued", "capvend.token.id": issuedTokenId });
  });

  it("the audit record of a token carries the trace id of the call that issued it", () => {
    const call = only(rpc(spans, "IssueToken"), "IssueToken");
    const record = (h.audit as MemoryAuditSink).find({ type: "token.issued", jti: issuedTokenId });
    expect(record).toHaveLength(1);
    expect(record[0]!.trace_id).toBe(ids(call).traceId);
  });

  it("WatchSession is one span for the stream's life, its first token's issuance beneath it, ending OK at session end", () => {
    const watch = only(rpc(spans, "WatchSession"), "WatchSession");
    expect(watch.attributes).toMatchObject({ "rpc.system": "grpc", "session.id": sessionId, "capvend.agent.id": "sales-bot", "rpc.grpc.status_code": 0 });
    const issues = named(childrenOf(spans, watch), "capvend.issue");
    expect(issues).toHaveLength(1);
    expect(issues[0]!.attributes["capvend.token.id"]).toBe(streamTokenIds[0]);
    // The up-front check of the stream's grants is a policy decision too.
    expect(named(childrenOf(spans, watch), "capvend.policy.evaluate").length).toBeGreaterThan(0);
  });

  it("every renewal is a root span of its own trace, linked to the stream's span, with the issuance beneath it", () => {
    const watch = only(rpc(spans, "WatchSession"), "WatchSession");
    const renewals = named(spans, "capvend.renew");
    expect(renewals.length).toBeGreaterThanOrEqual(1);
    for (const r of renewals) {
      expect(r.parentSpanContext).toBeUndefined();
      expect(ids(r).traceId).not.toBe(ids(watch).traceId);
      expect(r.links).toHaveLength(1);
      expect(r.links[0]!.context.traceId).toBe(ids(watch).traceId);
      expect(r.links[0]!.context.spanId).toBe(ids(watch).spanId);
      expect(r.attributes).toMatchObject({ "session.id": sessionId, "enduser.id": "alice", "capvend.agent.id": "sales-bot", "capvend.resource": "calendar" });
      const issue = only(childrenOf(spans, r), "issue under a renewal");
      expect(issue.attributes).toMatchObject({ "capvend.issue.kind": "renewed", "capvend.issue.outcome": "issued" });
      expect(streamTokenIds).toContain(issue.attributes["capvend.token.id"]);
      expect(childrenOf(spans, issue).map((c) => c.name).sort()).toEqual(["capvend.audit.append", "capvend.policy.evaluate", "capvend.token.mint"]);
      // The renewal's audit record points at the renewal's own trace.
      const record = (h.audit as MemoryAuditSink).find({ type: "token.renewed", jti: String(issue.attributes["capvend.token.id"]) });
      expect(record[0]?.trace_id).toBe(ids(r).traceId);
    }
  });

  it("Revoke and EndSession publish their revocation in a child span", () => {
    const revoke = only(rpc(spans, "Revoke"), "Revoke");
    expect(revoke.attributes).toMatchObject({ "capvend.revocation.kind": "token_id", "capvend.token.id": issuedTokenId });
    expect(String(revoke.attributes["capvend.revocation.id"])).toMatch(/^rev_/);
    const publish = only(named(childrenOf(spans, revoke), "capvend.revocation.publish"), "publish under Revoke");
    expect(publish.attributes).toMatchObject({ "capvend.revocation.kind": "token_id", "capvend.revocation.value": issuedTokenId, "capvend.revocation.reason": "rotated out" });

    const end = only(rpc(spans, "EndSession"), "EndSession");
    expect(end.attributes["session.id"]).toBe(sessionId);
    const endPublish = only(named(childrenOf(spans, end), "capvend.revocation.publish"), "publish under EndSession");
    expect(endPublish.attributes).toMatchObject({ "capvend.revocation.kind": "session_id", "capvend.revocation.value": sessionId });
  });

  it("every span ended and belongs to a known parent (no orphans besides the roots)", () => {
    const byId = new Set(spans.map((s) => `${ids(s).traceId}/${ids(s).spanId}`));
    for (const s of spans) {
      expect(s.ended).toBe(true);
      if (!s.parentSpanContext || s.parentSpanContext.isRemote) continue;
      expect(byId.has(`${ids(s).traceId}/${s.parentSpanContext.spanId}`), `${s.name} has a parent that was not exported`).toBe(true);
    }
  });
});

import { afterEach, describe, expect, it } from "vitest";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { loadPolicyEngine, policyVersionOf, type PolicyEngine } from "../../src/policy/engine.js";
import { POLICY_CHANGED } from "../../src/streams/policy-drift.js";
import { POLICY_HEALTH_SERVICE } from "../../src/telemetry/attributes.js";
import { startHarness, type Harness } from "../helpers/harness.js";
import { collect, type Collected } from "../helpers/stream-collector.js";
import { cleanup, policyDir, writeFiles } from "../policy/helpers.js";
import { waitFor } from "../helpers/wait.js";

const ORCHESTRATION = '@id("orchestrator") permit (principal == Orchestrator::"dev", action, resource);\n';
const CRM_READ = '@id("crm-read") permit (principal == Agent::"bot", action == Action::"read", resource == Resource::"crm");\n';
const CRM_WRITE = '@id("crm-write") permit (principal == Agent::"bot", action == Action::"write", resource == Resource::"crm");\n';
const CAL_READ = '@id("cal-read") permit (principal == Agent::"bot", action == Action::"read", resource == Resource::"calendar");\n';

let h: Harness | undefined;
let engine: PolicyEngine | undefined;
let dir: string | undefined;
const streams: Collected[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.stop();
  await h?.close();
  engine?.close();
  if (dir) await cleanup(dir);
  h = engine = dir = undefined;
});

async function setup(files: Record<string, string>) {
  dir = await policyDir(files);
  engine = await loadPolicyEngine({ dir, watch: true, debounceMs: 20 });
  // Tokens live 10 minutes: a revocation seen within the test came from the policy change, not expiry.
  h = await startHarness({ policy: engine, settings: { tokenTtlMs: 600_000, renewLeadMs: 1000 } });
  const started = await h.orchestrator.startSession({
    agentId: "bot",
    userId: "alice",
    grants: [
      { resource: "crm", scopes: ["read", "write"] },
      { resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } },
    ],
  });
  const runtime = h.client(started.sessionCredential);
  const stream = collect((signal) =>
    runtime.watchSession({ grants: [{ resource: "crm", scopes: ["read", "write"] }, { resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } }] }, { signal }),
  );
  streams.push(stream);
  await stream.until(() => stream.of("tokenIssued").length >= 2, "the first two tokens");
  return { dir, engine, h, stream, sessionId: started.sessionId };
}

describe("a policy change on a held stream", () => {
  it("revokes the grant it no longer allows with POLICY_CHANGED and keeps renewing the other", async () => {
    const { dir, engine, h, stream, sessionId } = await setup({ "a.cedar": ORCHESTRATION + CRM_READ + CRM_WRITE + CAL_READ });
    const crmToken = stream.of("tokenIssued").find((t) => t.grantIndex === 0)!.token!.tokenId;

    const files = { "a.cedar": ORCHESTRATION + CRM_READ + CAL_READ };
    await writeFiles(dir, files);
    await stream.until(() => stream.of("tokensRevoked").length > 0, "the POLICY_CHANGED revocation");
    const revoked = stream.of("tokensRevoked")[0]!;
    expect(revoked.grantIndexes).toEqual([0]);
    expect(revoked.tokenIds).toEqual([crmToken]);
    expect(revoked.reason.startsWith(POLICY_CHANGED)).toBe(true);
    expect(revoked.reason).toContain('scope "write" on resource "crm"');
    expect(engine.state.policyVersion).toBe(policyVersionOf({ files }));

    // The calendar grant (3 s tokens) keeps renewing on the same stream; crm gets nothing more.
    const calendarBefore = stream.of("tokenIssued").filter((t) => t.grantIndex === 1).length;
    await stream.until(() => stream.of("tokenIssued").filter((t) => t.grantIndex === 1).length >= calendarBefore + 2, "two calendar renewals");
    expect(stream.of("tokenIssued").filter((t) => t.grantIndex === 0)).toHaveLength(1);
    expect(stream.ended).toBe(false);

    // The same path as Revoke: the revocation list and the audit log.
    expect(h.revocations.tokenRevocation({ jti: crmToken, sessionId, agentId: "bot", userId: "alice", resource: "crm", issuedAtSec: 0 })?.reason).toBe(revoked.reason);
    const audit = (h.audit as MemoryAuditSink).records;
    const record = audit.find((r) => r.type === "token.revoked" && r.jti === crmToken)!;
    expect(record).toMatchObject({ reason: POLICY_CHANGED, decision: "deny", session_id: sessionId, resource: "crm", policy_version: policyVersionOf({ files }) });
    // Nothing permits write any more: deny by default names no policy.
    expect(record.policy_ids).toEqual([]);
    expect(audit.find((r) => r.type === "policy.reloaded" && r.policy_version === policyVersionOf({ files }))).toBeDefined();
    // Every record carries the version in force.
    expect(audit.filter((r) => r.type === "token.issued").every((r) => typeof r.policy_version === "string")).toBe(true);
  });

  it("names the forbid that now denies the grant", async () => {
    const { dir, stream, h } = await setup({ "a.cedar": ORCHESTRATION + CRM_READ + CRM_WRITE + CAL_READ });
    await writeFiles(dir, { "b.cedar": '@id("no-crm-write-for-alice") forbid (principal, action == Action::"write", resource) when { context has user && context.user == User::"alice" };\n' });
    await stream.until(() => stream.of("tokensRevoked").length > 0, "the POLICY_CHANGED revocation");
    expect(stream.of("tokensRevoked")[0]!.reason).toContain("forbidden by policy no-crm-write-for-alice");
    const record = (h.audit as MemoryAuditSink).records.find((r) => r.type === "token.revoked")!;
    expect(record.policy_ids).toEqual(["no-crm-write-for-alice"]);
  });

  it("changes nothing live when the policy widens", async () => {
    const { dir, stream, engine, h } = await setup({ "a.cedar": ORCHESTRATION + CRM_READ + CRM_WRITE + CAL_READ });
    const before = engine.state.policyVersion;
    await writeFiles(dir, { "b.cedar": '@id("crm-delete") permit (principal == Agent::"bot", action == Action::"delete", resource == Resource::"crm");\n' });
    await waitFor(() => engine.state.policyVersion !== before, "the widened set");
    // Settle: a re-evaluation pass for the new version has run by the time the next renewal lands.
    const calendarBefore = stream.of("tokenIssued").filter((t) => t.grantIndex === 1).length;
    await stream.until(() => stream.of("tokenIssued").filter((t) => t.grantIndex === 1).length > calendarBefore, "a calendar renewal");
    expect(stream.of("tokensRevoked")).toEqual([]);
    expect((h.audit as MemoryAuditSink).records.filter((r) => r.type === "token.revoked")).toEqual([]);
  });

  it("changes nothing when the edit is broken, and reports it in the log, the audit log and health", async () => {
    const { dir, stream, engine, h } = await setup({ "a.cedar": ORCHESTRATION + CRM_READ + CRM_WRITE + CAL_READ });
    const before = engine.state.policyVersion;
    expect(h.server.health.getStatus(POLICY_HEALTH_SERVICE)).toBe(ServingStatus.SERVING);
    await writeFiles(dir, { "a.cedar": ORCHESTRATION + "permit (principal, action, resource" });
    await waitFor(() => engine.state.lastError !== undefined, "the failed reload");
    expect(engine.state.policyVersion).toBe(before);
    expect(h.server.health.getStatus(POLICY_HEALTH_SERVICE)).toBe(ServingStatus.NOT_SERVING);
    expect(h.logLines.some((l) => l.includes("policy reload failed"))).toBe(true);
    await waitFor(() => (h.audit as MemoryAuditSink).records.some((r) => r.type === "policy.reloaded" && r.decision === "deny"), "the audit record");
    const record = (h.audit as MemoryAuditSink).records.find((r) => r.type === "policy.reloaded" && r.decision === "deny")!;
    expect(record.reason).toContain("a.cedar");
    expect(record.policy_version).toBe(before);

    // Tokens keep flowing under the old set: the crm grant (write) is still allowed.
    const calendarBefore = stream.of("tokenIssued").filter((t) => t.grantIndex === 1).length;
    await stream.until(() => stream.of("tokenIssued").filter((t) => t.grantIndex === 1).length > calendarBefore, "a calendar renewal");
    expect(stream.of("tokensRevoked")).toEqual([]);

    // Fixed again: health recovers.
    await writeFiles(dir, { "a.cedar": ORCHESTRATION + CRM_READ + CRM_WRITE + CAL_READ });
    await waitFor(() => h.server.health.getStatus(POLICY_HEALTH_SERVICE) === ServingStatus.SERVING, "health to recover");
  });
});

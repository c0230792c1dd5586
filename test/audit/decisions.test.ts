/**
 * Every decision is on record: for each VendingService RPC, allowed and refused on each path,
 * exactly one audit record of the call, with the right type, decision, reason and policy ids.
 */
import { createHash, randomBytes } from "node:crypto";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../src/audit/event.js";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { sha256Hex } from "../../src/auth/credentials.js";
import { DEFAULT_POLICY_DIR } from "../../src/config/config.js";
import { GATEWAY_TOKEN, ORCHESTRATOR_TOKEN, startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

const OTHER_RS_TOKEN = "other-resource-server-token-0123456789";
// What an OIDC pairwise `sub` looks like: 43 characters of base64url.
const PAIRWISE = createHash("sha256").update("alice@rp.example").digest("base64url");

let h: Harness;
let audit: MemoryAuditSink;
let policyDir: string;

beforeAll(async () => {
  policyDir = await mkdtemp(join(tmpdir(), "capvend-policy-"));
  await cp(DEFAULT_POLICY_DIR, policyDir, { recursive: true });
  await writeFile(
    join(policyDir, "audit-test.cedar"),
    `@id("no-start-blocked-bot")
forbid (principal, action == Action::"start_session", resource == Agent::"blocked-bot");
@id("no-revoke-vip")
forbid (principal, action == Action::"revoke", resource == User::"vip");
@id("no-end-locked-bot")
forbid (principal, action == Action::"end_session", resource == Agent::"locked-bot");
@id("locked-bot-read")
permit (principal == Agent::"locked-bot", action == Action::"read", resource == Resource::"salesforce");
`,
  );
  h = await startHarness({ policyDir, settings: { resourceServerHashes: new Map([["other-rs", sha256Hex(OTHER_RS_TOKEN)]]) } });
  audit = h.audit as MemoryAuditSink;
});
afterAll(async () => {
  await h?.close();
  await rm(policyDir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

/** Runs `call` and returns the audit records it added (the memory sink resolves appends at once). */
async function recordsOf(call: () => Promise<unknown>): Promise<AuditRecord[]> {
  const before = audit.records.length;
  await call();
  return audit.records.slice(before);
}

const grants = [{ resource: "salesforce", scopes: ["read"] }];

describe("allowed calls: exactly one record each", () => {
  it("StartSession → session.started with the policy that allowed it", async () => {
    const recs = await recordsOf(() => h.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants }));
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ type: "session.started", decision: "allow", caller: { kind: "orchestrator", id: "dev" }, agent_id: "sales-bot", user_id: "alice", policy_ids: ["orchestrator-dev"] });
  });

  it("IssueToken → token.issued", async () => {
    const s = await startSalesSession(h);
    const recs = await recordsOf(() => s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] }));
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ type: "token.issued", decision: "allow", session_id: s.sessionId, resource: "salesforce", policy_ids: ["sales-crm-for-user"] });
  });

  it("WatchSession → stream.opened (and its tokens)", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const recs = await recordsOf(async () => {
      for await (const _m of s.runtime.watchSession({ grants: [{ resource: "calendar", scopes: ["read"] }] }, { signal: ac.signal })) break;
    });
    ac.abort();
    expect(recs.filter((r) => r.type === "stream.opened")).toHaveLength(1);
    expect(recs.find((r) => r.type === "stream.opened")).toMatchObject({ session_id: s.sessionId, agent_id: "sales-bot" });
    expect(recs.some((r) => r.decision === "deny")).toBe(false);
  });

  it("Revoke by an OIDC-pairwise-looking user_id → token.revoked, and it takes effect", async () => {
    const res = await h.orchestrator.startSession({ agentId: "sales-bot", userId: PAIRWISE, grants });
    const recs = await recordsOf(() => h.orchestrator.revoke({ target: { case: "userId", value: PAIRWISE }, reason: "offboarded" }));
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ type: "token.revoked", decision: "allow", user_id: PAIRWISE, target: { kind: "user_id", value: PAIRWISE }, policy_ids: ["orchestrator-dev-revoke"] });
    const f = await failure(h.client(res.sessionCredential).issueToken({ resource: "salesforce", scopes: ["read"] }));
    expect(f.code).toBe(Code.Unauthenticated);
  });

  it("EndSession → session.ended, and again (already ended) → one more, allowed", async () => {
    const s = await startSalesSession(h);
    const first = await recordsOf(() => h.orchestrator.endSession({ sessionId: s.sessionId, reason: "done" }));
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ type: "session.ended", decision: "allow", session_id: s.sessionId, policy_ids: ["orchestrator-dev"] });
    const again = await recordsOf(() => h.orchestrator.endSession({ sessionId: s.sessionId }));
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ type: "session.ended", decision: "allow", details: { already_ended: true } });
  });

  it("Introspect → token.introspected, active or not, with why", async () => {
    const s = await startSalesSession(h);
    const { token } = await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
    const gateway = h.client(GATEWAY_TOKEN);
    const active = await recordsOf(() => gateway.introspect({ token: token!.accessToken }));
    expect(active).toHaveLength(1);
    expect(active[0]).toMatchObject({ type: "token.introspected", decision: "allow", reason: "active", jti: token!.tokenId, caller: { kind: "resource_server", id: "demo-gateway" }, details: { active: true }, policy_ids: ["demo-gateway-introspect"] });
    const junk = await recordsOf(() => gateway.introspect({ token: "not-a-token" }));
    expect(junk).toHaveLength(1);
    expect(junk[0]).toMatchObject({ type: "token.introspected", reason: "invalid_token", details: { active: false } });
    // The token itself is never in the record.
    expect(JSON.stringify(active)).not.toContain(token!.accessToken);
  });
});

describe("refused calls: exactly one deny record each", () => {
  const refused = async (call: () => Promise<unknown>, code: Code) => {
    let f: ConnectError | undefined;
    const recs = await recordsOf(async () => {
      f = await failure(call());
    });
    expect(f?.code).toBe(code);
    expect(recs).toHaveLength(1);
    expect(recs[0]!.decision).toBe("deny");
    return recs[0]!;
  };

  it("StartSession denied by policy names the forbidding policy", async () => {
    const r = await refused(() => h.orchestrator.startSession({ agentId: "blocked-bot", grants }), Code.PermissionDenied);
    expect(r).toMatchObject({ type: "session.denied", reason: "ACTION_DENIED", agent_id: "blocked-bot", policy_ids: ["no-start-blocked-bot"], caller: { kind: "orchestrator", id: "dev" } });
  });

  it("StartSession with bad input, and from a wrong caller", async () => {
    expect(await refused(() => h.orchestrator.startSession({ agentId: "", grants }), Code.InvalidArgument)).toMatchObject({ type: "session.denied", reason: "INVALID_ARGUMENT" });
    expect(await refused(() => h.client(GATEWAY_TOKEN).startSession({ agentId: "sales-bot", grants }), Code.PermissionDenied)).toMatchObject({
      type: "session.denied",
      reason: "WRONG_CALLER",
      caller: { kind: "resource_server", id: "demo-gateway" },
    });
  });

  it("IssueToken outside the grants, denied by policy, and from a wrong caller", async () => {
    const s = await startSalesSession(h);
    expect(await refused(() => s.runtime.issueToken({ resource: "github", scopes: ["read"] }), Code.PermissionDenied)).toMatchObject({ type: "token.denied", reason: "RESOURCE_NOT_GRANTED", resource: "github", session_id: s.sessionId });
    expect(await refused(() => s.runtime.issueToken({ resource: "salesforce", scopes: ["admin"] }), Code.PermissionDenied)).toMatchObject({ type: "token.denied", reason: "SCOPE_NOT_GRANTED", scopes: ["admin"] });
    // A grant no policy can ever allow is refused at StartSession, once, naming the forbid.
    expect(await refused(() => h.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "salesforce", scopes: ["read", "delete"] }] }), Code.PermissionDenied)).toMatchObject({ type: "session.denied", policy_ids: ["no-salesforce-delete"] });
    // The report bot's warehouse tokens are capped at 900 s by policy: a one-hour one is denied at issuance.
    const d = await h.orchestrator.startSession({ agentId: "report-bot", grants: [{ resource: "warehouse", scopes: ["read"] }] });
    expect(await refused(() => h.client(d.sessionCredential).issueToken({ resource: "warehouse", scopes: ["read"], ttl: { seconds: 3600n } }), Code.PermissionDenied)).toMatchObject({ type: "token.denied", policy_ids: [] });
    expect(await refused(() => h.orchestrator.issueToken({ resource: "salesforce", scopes: ["read"] }), Code.PermissionDenied)).toMatchObject({ type: "token.denied", reason: "WRONG_CALLER" });
  });

  it("WatchSession for an ungranted resource", async () => {
    const s = await startSalesSession(h);
    const r = await refused(async () => {
      for await (const _m of s.runtime.watchSession({ grants: [{ resource: "github", scopes: ["read"] }] })) break;
    }, Code.PermissionDenied);
    expect(r).toMatchObject({ type: "stream.denied", reason: "RESOURCE_NOT_GRANTED", session_id: s.sessionId });
  });

  it("Revoke denied by policy, of an unknown session, and from a wrong caller", async () => {
    expect(await refused(() => h.orchestrator.revoke({ target: { case: "userId", value: "vip" } }), Code.PermissionDenied)).toMatchObject({ type: "revoke.denied", reason: "ACTION_DENIED", target: { kind: "user_id", value: "vip" }, policy_ids: ["no-revoke-vip"] });
    expect(await refused(() => h.orchestrator.revoke({ target: { case: "sessionId", value: "ses_AAAAAAAAAAAAAAAAAAAAAA" } }), Code.NotFound)).toMatchObject({ type: "revoke.denied", reason: "SESSION_NOT_FOUND" });
    const s = await startSalesSession(h);
    expect(await refused(() => s.runtime.revoke({ target: { case: "agentId", value: "sales-bot" } }), Code.PermissionDenied)).toMatchObject({ type: "revoke.denied", reason: "WRONG_CALLER", caller: { kind: "session", id: s.sessionId } });
  });

  it("EndSession denied by policy and of another session", async () => {
    const locked = await h.orchestrator.startSession({ agentId: "locked-bot", grants });
    expect(await refused(() => h.orchestrator.endSession({ sessionId: locked.sessionId }), Code.PermissionDenied)).toMatchObject({ type: "session.end_denied", reason: "ACTION_DENIED", agent_id: "locked-bot", policy_ids: ["no-end-locked-bot"] });
    const s = await startSalesSession(h);
    expect(await refused(() => s.runtime.endSession({ sessionId: locked.sessionId }), Code.PermissionDenied)).toMatchObject({ type: "session.end_denied", reason: "WRONG_CALLER", session_id: locked.sessionId });
  });

  it("Introspect by a resource server no policy permits, and by a session", async () => {
    const s = await startSalesSession(h);
    const { token } = await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
    const denied = await refused(() => h.client(OTHER_RS_TOKEN).introspect({ token: token!.accessToken }), Code.PermissionDenied);
    expect(denied).toMatchObject({ type: "introspect.denied", reason: "ACTION_DENIED", caller: { kind: "resource_server", id: "other-rs" } });
    // Refused before the token was read: the record names no token.
    expect(denied.jti).toBeUndefined();
    expect(await refused(() => s.runtime.introspect({ token: token!.accessToken }), Code.PermissionDenied)).toMatchObject({ type: "introspect.denied", reason: "WRONG_CALLER" });
  });

  it("failed authentication → auth.failed with the credential kind and a short hash prefix, never the credential", async () => {
    const bogus = `not-a-known-token-${randomBytes(8).toString("hex")}`;
    const r = await refused(() => h.client(bogus).startSession({ agentId: "sales-bot", grants }), Code.Unauthenticated);
    expect(r).toMatchObject({ type: "auth.failed", reason: "UNKNOWN_CREDENTIAL", caller: { kind: "unauthenticated" }, details: { method: "StartSession", credential_kind: "bearer" } });
    expect(r.details!.credential_sha256_prefix).toBe(createHash("sha256").update(bogus).digest("hex").slice(0, 8));
    expect(JSON.stringify(r)).not.toContain(bogus);
    const none = await refused(() => h.client(undefined).issueToken({ resource: "x", scopes: ["read"] }), Code.Unauthenticated);
    expect(none).toMatchObject({ type: "auth.failed", reason: "MISSING_CREDENTIAL", details: { credential_kind: "none" } });
    expect(JSON.stringify(audit.records)).not.toContain(ORCHESTRATOR_TOKEN);
  });
});

import { Code, ConnectError } from "@connectrpc/connect";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reasonOf } from "../../src/errors.js";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { GATEWAY_TOKEN, startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

async function codeOf(p: Promise<unknown>): Promise<{ code: Code; message: string; reason: string | null }> {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage, reason: reasonOf(e) ?? null };
  }
  throw new Error("expected the call to fail");
}

describe("a session and its tokens over a real HTTP/2 server", () => {
  it("issues a token that verifies against the served JWKS, with sub = user and act.sub = agent", async () => {
    const s = await startSalesSession(h);
    expect(s.sessionId).toMatch(/^ses_/);
    expect(s.expiresAt).toBeDefined();
    const { token } = await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
    expect(token?.resource).toBe("salesforce");
    expect(token?.scopes).toEqual(["read"]);

    const jwks = jose.createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jose.jwtVerify(token!.accessToken, jwks, {
      issuer: "https://capvend.local",
      audience: "salesforce",
      typ: "at+jwt",
    });
    expect(protectedHeader.alg).toBe("EdDSA");
    expect(protectedHeader.kid).toBe(h.keyRing.current().kid);
    expect(payload.sub).toBe("user:alice");
    expect(payload.act).toEqual({ sub: "agent:sales-bot" });
    expect(payload.client_id).toBe("sales-bot");
    expect(payload.sid).toBe(s.sessionId);
    expect(payload.scope).toBe("read");
    expect(payload.jti).toBe(token!.tokenId);
    // The issuer and the minter read the clock one after the other: a second boundary between them costs one second.
    expect(payload.exp! - payload.iat!).toBeGreaterThanOrEqual(15 * 60 - 1);
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(15 * 60);
    expect(Number(token!.expiresAt!.seconds)).toBe(payload.exp);
  });

  it("an agent acting on its own gets sub = agent", async () => {
    const res = await h.orchestrator.startSession({ agentId: "report-bot", grants: [{ resource: "warehouse", scopes: ["read"] }] });
    const runtime = h.client(res.sessionCredential);
    const { token } = await runtime.issueToken({ resource: "warehouse", scopes: ["read"], ttl: { seconds: 600n } });
    const claims = jose.decodeJwt(token!.accessToken);
    expect(claims.sub).toBe("agent:report-bot");
    expect(claims.act).toEqual({ sub: "agent:report-bot" });
    expect(claims.exp! - claims.iat!).toBeGreaterThanOrEqual(599);
    expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(600);
  });

  it("serves the authorization server metadata over HTTP/1.1 fetch", async () => {
    const res = await fetch(`${h.url}/.well-known/oauth-authorization-server`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, string>;
    expect(doc.issuer).toBe("https://capvend.local");
    expect(doc.jwks_uri).toBe("https://capvend.local/.well-known/jwks.json");
    expect(doc.introspection_endpoint).toBe("https://capvend.local/oauth2/introspect");
    expect(doc.introspection_endpoint_auth_methods_supported).toEqual(["client_secret_basic", "bearer"]);
  });

  it("revoke then introspect answers inactive; before that, active with the claims", async () => {
    const s = await startSalesSession(h);
    const { token } = await s.runtime.issueToken({ resource: "salesforce", scopes: ["read", "write"] });
    const gateway = h.client(GATEWAY_TOKEN);
    const before = await gateway.introspect({ token: token!.accessToken });
    expect(before.active).toBe(true);
    expect(before.scope).toBe("read write");
    expect(before.sub).toBe("user:alice");
    expect(before.actSub).toBe("agent:sales-bot");
    expect(before.sid).toBe(s.sessionId);
    expect(before.tokenType).toBe("Bearer");

    const rev = await h.orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId }, reason: "test" });
    expect(rev.revocationId).toMatch(/^rev_/);
    const after = await gateway.introspect({ token: token!.accessToken });
    expect(after.active).toBe(false);
    expect(after.jti).toBe("");

    // Another token of the same session is untouched by a token_id revocation.
    const other = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    expect((await gateway.introspect({ token: other.token!.accessToken })).active).toBe(true);
  });

  it("revoking by session, agent, user or resource makes matching tokens inactive", async () => {
    const gateway = h.client(GATEWAY_TOKEN);
    for (const target of [
      (sid: string) => ({ case: "sessionId" as const, value: sid }),
      () => ({ case: "userId" as const, value: "alice" }),
      () => ({ case: "resource" as const, value: "calendar" }),
      () => ({ case: "agentId" as const, value: "sales-bot" }),
    ]) {
      const s = await startSalesSession(h);
      const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
      expect((await gateway.introspect({ token: token!.accessToken })).active).toBe(true);
      await h.orchestrator.revoke({ target: target(s.sessionId), reason: "sweep" });
      expect((await gateway.introspect({ token: token!.accessToken })).active).toBe(false);
    }
    // A session started, or a token minted, after a revocation is not touched by it: both
    // are judged to the millisecond (the jti carries the mint time).
    const fresh = await startSalesSession(h);
    const { token } = await fresh.runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
    expect((await gateway.introspect({ token: token!.accessToken })).active).toBe(true);
  });

  it("EndSession ends the session: its credential stops working and its tokens go inactive", async () => {
    const s = await startSalesSession(h);
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    const ended = await h.orchestrator.endSession({ sessionId: s.sessionId, reason: "done" });
    expect(ended.endedAt).toBeDefined();
    expect((await h.client(GATEWAY_TOKEN).introspect({ token: token!.accessToken })).active).toBe(false);
    const e = await codeOf(s.runtime.issueToken({ resource: "calendar", scopes: ["read"] }));
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.reason).toBe("SESSION_ENDED");
    // Idempotent.
    const again = await h.orchestrator.endSession({ sessionId: s.sessionId });
    expect(again.endedAt?.seconds).toBe(ended.endedAt?.seconds);
  });

  it("a runtime may end its own session but not another", async () => {
    const a = await startSalesSession(h);
    const b = await startSalesSession(h);
    const e = await codeOf(a.runtime.endSession({ sessionId: b.sessionId }));
    expect(e.code).toBe(Code.PermissionDenied);
    await a.runtime.endSession({ sessionId: a.sessionId, reason: "runtime done" });
    expect((await codeOf(a.runtime.issueToken({ resource: "calendar", scopes: ["read"] }))).code).toBe(Code.Unauthenticated);
    // b is untouched.
    expect((await b.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token?.tokenId).toBeTruthy();
  });

  it("a session credential cannot start sessions, revoke, or introspect", async () => {
    const s = await startSalesSession(h);
    for (const call of [
      s.runtime.startSession({ agentId: "sales-bot", grants: [{ resource: "calendar", scopes: ["read"] }] }),
      s.runtime.revoke({ target: { case: "agentId", value: "sales-bot" } }),
      s.runtime.introspect({ token: "x.y.z" }),
    ]) {
      const e = await codeOf(call);
      expect(e.code).toBe(Code.PermissionDenied);
      expect(e.reason).toBe("WRONG_CALLER");
    }
  });

  it("an orchestrator credential cannot issue tokens", async () => {
    const e = await codeOf(h.orchestrator.issueToken({ resource: "calendar", scopes: ["read"] }));
    expect(e.code).toBe(Code.PermissionDenied);
  });

  it("StartSession refuses a grant no policy can ever allow: SCOPE_DENIED naming the grant, scope, resource and deciding policy, audited, nothing stored", async () => {
    const sessionsBefore = h.sessions.size;
    const e = await codeOf(
      h.orchestrator.startSession({
        agentId: "sales-bot",
        userId: "alice",
        grants: [{ resource: "calendar", scopes: ["read"] }, { resource: "salesforce", scopes: ["read", "delete"] }],
      }),
    );
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.reason).toBe("SCOPE_DENIED");
    expect(e.message).toContain("grants[1]");
    expect(e.message).toContain('scope "delete"');
    expect(e.message).toContain('resource "salesforce"');
    expect(e.message).toContain("no-salesforce-delete");
    expect(h.sessions.size).toBe(sessionsBefore);
    const denied = (h.audit as MemoryAuditSink).find({ type: "session.denied", agent_id: "sales-bot" });
    expect(denied.at(-1)!.policy_ids).toEqual(["no-salesforce-delete"]);
    expect(denied.at(-1)!.resource).toBe("salesforce");
  });

  it("a scope policy denies at the asked TTL is PERMISSION_DENIED at IssueToken, naming the scope and resource, and is audited", async () => {
    // The report bot may read the warehouse for at most 900 s: the session opens (shorter
    // tokens are allowed), a one-hour token is denied.
    const res = await h.orchestrator.startSession({ agentId: "report-bot", grants: [{ resource: "warehouse", scopes: ["read"] }] });
    const runtime = h.client(res.sessionCredential);
    const e = await codeOf(runtime.issueToken({ resource: "warehouse", scopes: ["read"], ttl: { seconds: 3600n } }));
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.reason).toBe("SCOPE_DENIED");
    expect(e.message).toContain('scope "read"');
    expect(e.message).toContain('resource "warehouse"');
    expect(e.message).toContain("no policy permits it");
    const denied = (h.audit as MemoryAuditSink).find({ type: "token.denied", session_id: res.sessionId });
    expect(denied).toHaveLength(1);
    expect(denied[0]!.policy_ids).toEqual([]);
    const ok = await runtime.issueToken({ resource: "warehouse", scopes: ["read"], ttl: { seconds: 600n } });
    expect(ok.token!.resource).toBe("warehouse");
  });

  it("a scope the session was not granted is refused even where policy allows it", async () => {
    const res = await h.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "salesforce", scopes: ["read"] }] });
    const runtime = h.client(res.sessionCredential);
    const e = await codeOf(runtime.issueToken({ resource: "salesforce", scopes: ["write"] }));
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.reason).toBe("SCOPE_NOT_GRANTED");
    expect(e.message).toContain('scope "write"');
    const r = await codeOf(runtime.issueToken({ resource: "calendar", scopes: ["read"] }));
    expect(r.reason).toBe("RESOURCE_NOT_GRANTED");
  });

  it("no policy permits: the agent outside the sales group gets no salesforce session", async () => {
    const e = await codeOf(h.orchestrator.startSession({ agentId: "report-bot", grants: [{ resource: "salesforce", scopes: ["read"] }] }));
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.reason).toBe("SCOPE_DENIED");
    expect(e.message).toContain("no policy permits it");
  });

  it("a token never outlives its session", async () => {
    const s = await startSalesSession(h, { maxDurationSeconds: 5 });
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    expect(Number(token!.expiresAt!.seconds)).toBeLessThanOrEqual(Number(s.expiresAt!.seconds));
  });

  it("every successful issuance has its audit record, and no record carries a token or credential", async () => {
    const s = await startSalesSession(h);
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    const audit = h.audit as MemoryAuditSink;
    const issued = audit.find({ type: "token.issued", jti: token!.tokenId });
    expect(issued).toHaveLength(1);
    expect(issued[0]!.exp).toBe(Number(token!.expiresAt!.seconds));
    expect(issued[0]!.caller).toEqual({ kind: "session", id: s.sessionId });
    const all = audit.lines.join("\n") + h.logLines.join("\n");
    expect(all).not.toContain(token!.accessToken);
    expect(all).not.toContain(s.sessionCredential.split(".")[1]);
  });

  it("answers gRPC health SERVING over gRPC", async () => {
    const { createClient } = await import("@connectrpc/connect");
    const { Health } = await import("../../src/gen/grpc/health/v1/health_pb.js");
    const health = createClient(Health, h.transport(undefined, "grpc"));
    expect((await health.check({ service: "" })).status).toBe(1);
    expect((await health.check({ service: "capvend.v1.VendingService" })).status).toBe(1);
  });
});

import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { reasonOf } from "../../src/errors.js";
import { AdminService } from "../../src/gen/capvend/admin/v1/admin_pb.js";
import { GATEWAY_TOKEN, ORCHESTRATOR_TOKEN, startHarness, startSalesSession, type Harness } from "../helpers/harness.js";
import { collect, type Collected } from "../helpers/stream-collector.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const OTHER_ORCHESTRATOR = "other-orchestrator-token-0123456789";

let h: Harness;
const streams: Collected[] = [];
beforeAll(async () => {
  // A second orchestrator the example policy gives no admin action.
  h = await startHarness({ settings: { keyPublishDelayMs: 0 }, orchestrators: { ops: OTHER_ORCHESTRATOR } });
});
afterAll(async () => {
  for (const s of streams) s.stop();
  await h?.close();
});

const admin = (bearer: string) => createClient(AdminService, h.transport(bearer));
async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

describe("AdminService callers", () => {
  it("is refused to session credentials and resource servers (WRONG_CALLER), and to an orchestrator policy does not permit (ACTION_DENIED)", async () => {
    const s = await startSalesSession(h);
    for (const bearer of [s.sessionCredential, GATEWAY_TOKEN]) {
      for (const call of [
        () => admin(bearer).listSessions({}),
        () => admin(bearer).getSession({ sessionId: s.sessionId }),
        () => admin(bearer).rotateKeys({}),
        () => admin(bearer).reloadPolicy({}),
        () => admin(bearer).policyStatus({}),
      ]) {
        const e = await failure(call());
        expect(e.code).toBe(Code.PermissionDenied);
        expect(reasonOf(e)).toBe("WRONG_CALLER");
      }
    }
    const denied = await failure(admin(OTHER_ORCHESTRATOR).listSessions({}));
    expect(reasonOf(denied)).toBe("ACTION_DENIED");
    expect(denied.rawMessage).toContain("admin.list_sessions");
    const none = await failure(admin("").listSessions({}));
    expect(none.code).toBe(Code.Unauthenticated);
  });
});

describe("ListSessions", () => {
  it("filters by agent, user and resource, and pages with opaque tokens bound to the filters (AIP-158)", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await h.orchestrator.startSession({ agentId: "sales-bot", userId: `pager-${i % 2}`, grants: [{ resource: "calendar", scopes: ["read"] }] });
      ids.push(r.sessionId);
    }
    const a = admin(ORCHESTRATOR_TOKEN);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await a.listSessions({ agentId: "sales-bot", resource: "calendar", pageSize: 2, pageToken: token });
      expect(page.sessions.length).toBeLessThanOrEqual(2);
      seen.push(...page.sessions.map((s) => s.sessionId));
      token = page.nextPageToken;
      pages++;
    } while (token !== "");
    for (const id of ids) expect(seen).toContain(id);
    expect(new Set(seen).size).toBe(seen.length);
    expect(pages).toBeGreaterThanOrEqual(3);

    const byUser = await a.listSessions({ userId: "pager-1" });
    expect(byUser.sessions.map((s) => s.sessionId).sort()).toEqual([ids[1], ids[3]].sort());
    expect(byUser.sessions[0]!.agentId).toBe("sales-bot");
    expect(byUser.sessions[0]!.grants[0]!.resource).toBe("calendar");
    expect((await a.listSessions({ resource: "no-such-resource" })).sessions).toEqual([]);

    // A token is bound to its filters; garbage is refused.
    const first = await a.listSessions({ userId: "pager-0", pageSize: 1 });
    expect(first.nextPageToken).not.toBe("");
    const other = await failure(a.listSessions({ userId: "pager-1", pageSize: 1, pageToken: first.nextPageToken }));
    expect(reasonOf(other)).toBe("INVALID_ARGUMENT");
    expect(other.rawMessage).toContain("page_token");
    expect(reasonOf(await failure(a.listSessions({ pageToken: "!!not-a-token" })))).toBe("INVALID_ARGUMENT");
    expect(reasonOf(await failure(a.listSessions({ pageSize: 501 })))).toBe("INVALID_ARGUMENT");

    // Ended sessions only with include_ended.
    await h.orchestrator.endSession({ sessionId: ids[0]!, reason: "done" });
    expect((await a.listSessions({ userId: "pager-0" })).sessions.map((s) => s.sessionId)).not.toContain(ids[0]);
    const withEnded = await a.listSessions({ userId: "pager-0", includeEnded: true });
    expect(withEnded.sessions.find((s) => s.sessionId === ids[0])?.endReason).toBe("done");
    expect((h.audit as MemoryAuditSink).find({ type: "admin.called" }).length).toBeGreaterThan(0);
  });
});

describe("GetSession", () => {
  it("shows the grants, and each stream with its replica and live token ids and expiries", async () => {
    const s = await startSalesSession(h);
    const w = collect((signal) => s.runtime.watchSession({ grants: [{ resource: "calendar", scopes: ["read"] }] }, { signal }));
    streams.push(w);
    await w.until(() => w.of("tokenIssued").length >= 1, "the first token");
    const token = w.of("tokenIssued")[0]!.token!;
    const res = await admin(ORCHESTRATOR_TOKEN).getSession({ sessionId: s.sessionId });
    expect(res.session!.agentId).toBe("sales-bot");
    expect(res.session!.grants.map((g) => g.resource)).toEqual(["salesforce", "calendar"]);
    expect(res.streams).toHaveLength(1);
    expect(res.streams[0]!.replica).toBe(h.server.replica);
    expect(res.streams[0]!.grants[0]).toMatchObject({ grantIndex: 0, resource: "calendar", live: true });
    expect(res.streams[0]!.grants[0]!.tokens.map((t) => t.tokenId)).toEqual([token.tokenId]);
    expect(res.streams[0]!.grants[0]!.tokens[0]!.expiresAt).toEqual(token.expiresAt);
    // Never a secret: the response names tokens by id only.
    expect(JSON.stringify(res, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(token.accessToken);
    expect(reasonOf(await failure(admin(ORCHESTRATOR_TOKEN).getSession({ sessionId: "ses_nope" })))).toBe("SESSION_NOT_FOUND");
  });
});

describe("RotateKeys, ReloadPolicy, PolicyStatus", () => {
  it("rotate the key (published, then signing), reload the policy and report its version", async () => {
    const a = admin(ORCHESTRATOR_TOKEN);
    const before = h.keyRing.current().kid;
    const r = await a.rotateKeys({});
    expect(r.retiredKid).toBe(before);
    expect(r.kid).not.toBe(before);
    expect(h.keyRing.jwks().keys.map((k) => k.kid)).toEqual(expect.arrayContaining([r.kid, before]));

    const reload = await a.reloadPolicy({});
    expect(reload).toMatchObject({ policyVersion: h.policy.state.policyVersion, changed: false, error: "" });
    const status = await a.policyStatus({});
    expect(status.converged).toBe(true);
    expect(status.replicas).toHaveLength(1);
    expect(status.replicas[0]!.policyVersion).toBe(h.policy.state.policyVersion);
  });
});

describe("server reflection", () => {
  it("lists every service to a real reflection client (buf curl), v1 and v1alpha, and lets it call a method without a proto file", async () => {
    const buf = path.join(ROOT, "node_modules/.bin/buf");
    const run = promisify(execFile);
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      const { stdout } = await run(buf, ["curl", "--http2-prior-knowledge", "--protocol", "grpc", "--reflect-protocol", protocol, "--list-services", h.url], { timeout: 30_000 });
      const services = stdout.trim().split("\n").sort();
      expect(services).toEqual(expect.arrayContaining(["capvend.admin.v1.AdminService", "capvend.v1.VendingService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]));
    }
    const methods = await run(buf, ["curl", "--http2-prior-knowledge", "--protocol", "grpc", "--list-methods", h.url], { timeout: 30_000 }).catch((err: { stderr?: string }) => {
      throw new Error(`buf curl --list-methods failed: ${err.stderr}`);
    });
    expect(methods.stdout).toContain("capvend.admin.v1.AdminService/ListSessions");
    // A call whose schema came from reflection alone.
    const call = await run(buf, ["curl", "--http2-prior-knowledge", "--protocol", "grpc", "-H", `authorization: Bearer ${ORCHESTRATOR_TOKEN}`, "--data", "{}", `${h.url}/capvend.admin.v1.AdminService/PolicyStatus`], { timeout: 30_000 });
    expect(JSON.parse(call.stdout)).toMatchObject({ converged: true, replicas: [{ policyVersion: h.policy.state.policyVersion }] });
  });
});

import http2 from "node:http2";
import { createClient, ConnectError, Code, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CapvendError, CredentialManager, type CredentialEvent } from "@capvend/client";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { waitFor } from "../helpers/wait.js";
import { grpcTransport, recordEvents, recordingApi, tcpProxy } from "./client-helpers.js";

const GRANTS = [
  { resource: "salesforce", scopes: ["read", "write"] },
  { resource: "calendar", scopes: ["read"] },
];

let r: ReplicaProcess;
beforeAll(async () => {
  // Short lifetimes so renewals happen within a test; heartbeats every 250 ms for the watchdog.
  r = await startReplica({ env: { CAPVEND_TOKEN_TTL: "3s", CAPVEND_RENEW_LEAD: "1s", CAPVEND_HEARTBEAT_INTERVAL: "250ms" } });
});
afterAll(async () => {
  await r?.cleanup();
});

async function session(grants = GRANTS) {
  return r.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants });
}

function manager(sessionCredential: string, endpoints = [r.url], extra: Partial<ConstructorParameters<typeof CredentialManager>[0]> = {}) {
  return new CredentialManager({ endpoints, transport: grpcTransport, sessionCredential, grants: GRANTS, backoff: { initialMs: 50, maxMs: 500 }, ...extra });
}

const jsonOf = (x: unknown) => JSON.stringify(x, (_k, v) => (typeof v === "bigint" ? String(v) : v));

describe("@capvend/client CredentialManager against a real server process", () => {
  it("holds verified tokens, answers getToken from memory, renews before expiry, and names tokens by id only", async () => {
    const s = await session();
    const m = manager(s.sessionCredential);
    const rec = recordEvents(m);
    await m.start();
    const jwt = await m.getToken("salesforce");
    const jwks = jose.createRemoteJWKSet(new URL(`${r.url}/.well-known/jwks.json`));
    const { payload } = await jose.jwtVerify(jwt, jwks, { audience: "salesforce" });
    expect(payload.sid).toBe(s.sessionId);
    expect(payload.scope).toBe("read write");
    // From memory: the same token again, and a subset of the scopes is served by it too.
    expect(await m.getToken("salesforce")).toBe(jwt);
    expect(await m.getToken("salesforce", ["read"])).toBe(jwt);
    await expect(m.getToken("salesforce", ["delete"])).rejects.toMatchObject({ code: "SCOPE_NOT_GRANTED" });
    await expect(m.getToken("github")).rejects.toMatchObject({ code: "RESOURCE_NOT_GRANTED" });

    // Renewal: a new token arrives while the old one is still valid.
    const renewed = await rec.next("renewed", (e) => e.resource === "salesforce" && e.replacesTokenId === payload.jti);
    expect(renewed.tokenId).not.toBe(payload.jti);
    const next = await m.getToken("salesforce");
    expect(jose.decodeJwt(next).jti).toBe(renewed.tokenId);
    // Minted before the token it replaces expired (the server's clock, not this test's).
    expect(jose.decodeJwt(next).iat!).toBeLessThan(payload.exp!);

    const st = m.state();
    expect(st).toMatchObject({ status: "ready", connected: true, endpoint: r.url, resumable: true });
    expect(st.grants.map((g) => g.resource)).toEqual(["salesforce", "calendar"]);
    expect(st.heartbeatIntervalMs).toBeGreaterThan(0);
    expect(jsonOf(st)).not.toContain(next);
    expect(jsonOf(rec.events)).not.toMatch(/eyJ/);
    expect(jsonOf(rec.events)).not.toContain(s.sessionCredential);
    await m.close();
    await m.close();
    expect(m.state().status).toBe("closed");
    await expect(m.getToken("salesforce")).rejects.toMatchObject({ code: "CLOSED" });
  });

  it("never returns a revoked token: the cache forgets it before the event is heard", async () => {
    const s = await session();
    const m = manager(s.sessionCredential);
    await m.start();
    const jwt = await m.getToken("salesforce");
    const jti = jose.decodeJwt(jwt).jti!;
    const returned = new Set<string>();
    let polling = true;
    const poller = (async () => {
      while (polling) {
        try {
          returned.add(await m.getToken("salesforce", undefined, { timeoutMs: 50 }));
        } catch {
          // revoked: fine
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    const events = m.events();
    await r.orchestrator.revoke({ target: { case: "tokenId", value: jti }, reason: "test" });
    for await (const e of events) {
      if (e.type !== "revoked") continue;
      expect(e.tokenIds).toContain(jti);
      expect(e.resources).toContain("salesforce");
      // The moment the event is seen, getToken refuses the grant.
      await expect(m.getToken("salesforce")).rejects.toMatchObject({ code: "GRANT_REVOKED" });
      break;
    }
    polling = false;
    await poller;
    // Calendar was not touched.
    expect(jose.decodeJwt(await m.getToken("calendar")).aud).toBe("calendar");
    await m.close();
  }, 30_000);

  it("stops for good when the session ends, and ends event iteration", async () => {
    const s = await session();
    const m = manager(s.sessionCredential);
    await m.start();
    const seen: CredentialEvent[] = [];
    const reading = (async () => {
      for await (const e of m.events()) seen.push(e);
    })();
    await r.orchestrator.endSession({ sessionId: s.sessionId, reason: "done" });
    await reading;
    expect(seen.at(-1)).toMatchObject({ type: "ended", code: "SESSION_ENDED" });
    expect(m.state().status).toBe("ended");
    await expect(m.getToken("calendar")).rejects.toMatchObject({ code: "SESSION_ENDED" });
    await m.close();
  });

  it("a refused credential is fatal: start rejects with UNKNOWN_CREDENTIAL and the manager does not retry", async () => {
    const m = manager("ses_0000000000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    const err = await m.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CapvendError);
    expect((err as CapvendError).code).toBe("UNKNOWN_CREDENTIAL");
    expect((err as CapvendError).message).not.toContain("AAAAAAAAAAAAAAAA");
    expect(m.state()).toMatchObject({ status: "failed", consecutiveFailures: 0 });
    await m.close();
  });

  it("authorizedFetch keeps a Request's headers and retries once on 401 with a fresh token", async () => {
    const s = await session();
    const m = manager(s.sessionCredential);
    await m.start();
    const held = await m.getToken("salesforce");
    // The API refuses the first token it sees, accepts any other.
    const api = await recordingApi((auth, n) => (n === 1 ? 401 : auth === `Bearer ${held}` ? 401 : 200));
    const crm = m.authorizedFetch("salesforce");
    const res = await crm(new Request(`${api.url}/contacts`, { method: "POST", headers: { "x-trace": "t-1", "content-type": "text/plain" }, body: "hello" }));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("ok hello");
    expect(api.seen).toHaveLength(2);
    expect(api.seen[0]).toBe(`Bearer ${held}`);
    const fresh = api.seen[1]!.slice("Bearer ".length);
    expect(fresh).not.toBe(held);
    expect(jose.decodeJwt(fresh)).toMatchObject({ aud: "salesforce", sid: s.sessionId });
    for (const h of api.headers) expect(h["x-trace"]).toBe("t-1");
    // init headers are kept too, and a second 401 comes back as it is (one retry only).
    const always401 = await recordingApi(() => 401);
    const res2 = await m.authorizedFetch("calendar")(`${always401.url}/x`, { headers: { "x-init": "yes" } });
    expect(res2.status).toBe(401);
    expect(always401.seen).toHaveLength(2);
    expect(always401.headers[0]!["x-init"]).toBe("yes");
    await Promise.all([api.close(), always401.close()]);
    await m.close();
  });

  it("the interceptor attaches the token to calls over a transport the user made, and retries a unary call once on UNAUTHENTICATED", async () => {
    const s = await session();
    const m = manager(s.sessionCredential);
    const jwks = jose.createRemoteJWKSet(new URL(`${r.url}/.well-known/jwks.json`));
    const seen: string[] = [];
    // A resource server of the user's: grpc.health.v1 that verifies capvend tokens, refusing the first.
    const routes = (router: ConnectRouter) =>
      router.service(Health, {
        async check(_req, ctx) {
          const auth = ctx.requestHeader.get("authorization") ?? "";
          seen.push(auth);
          if (seen.length === 1) throw new ConnectError("try again", Code.Unauthenticated);
          await jose.jwtVerify(auth.replace(/^Bearer /, ""), jwks, { audience: "calendar" }).catch(() => {
            throw new ConnectError("bad token", Code.Unauthenticated);
          });
          return { status: HealthCheckResponse_ServingStatus.SERVING };
        },
        async *watch() {},
      });
    const server = http2.createServer(connectNodeAdapter({ routes }));
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (sess) => {
      sessions.add(sess);
      sess.on("close", () => sessions.delete(sess));
    });
    await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const userTransport = createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors: [m.interceptor("calendar")] });
    const health = createClient(Health, userTransport);
    const res = await health.check({});
    expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(`Bearer ${await m.getToken("calendar")}`);
    expect(seen[1]).not.toBe(seen[0]);
    await m.close();
    await new Promise<void>((res) => {
      server.close(() => res());
      for (const sess of sessions) sess.destroy();
    });
  });

  it("toolWrapper gives the tool an authorized fetch and scrubs tokens from its result and its errors; tokenProvider has the SDK shape", async () => {
    const s = await session();
    const m = manager(s.sessionCredential);
    await m.start();
    const api = await recordingApi();
    const leaky = m.toolWrapper("salesforce", async (fetch, path: string) => {
      const res = await fetch(`${api.url}${path}`);
      return { status: res.status, echo: `I used ${api.seen.at(-1)}`, nested: [api.seen.at(-1)] };
    });
    const out = await leaky("/contacts");
    expect(out.status).toBe(200);
    expect(api.seen[0]).toMatch(/^Bearer eyJ/);
    expect(jsonOf(out)).not.toContain(api.seen[0]!.slice(7));
    expect(out.echo).toContain("[redacted]");
    const throwing = m.toolWrapper("salesforce", async (fetch) => {
      await fetch(`${api.url}/x`);
      throw new Error(`upstream said: token ${api.seen.at(-1)!.slice(7)} is bad`);
    });
    const err = (await throwing().catch((e: unknown) => e)) as Error;
    expect(err.message).toContain("upstream said");
    expect(err.message).not.toMatch(/eyJ/);
    expect(err.stack ?? "").not.toMatch(/eyJ/);

    const provider = m.tokenProvider("calendar");
    const t = await provider();
    expect(jose.decodeJwt(t.token).aud).toBe("calendar");
    expect(t.expiresAt).toBeInstanceOf(Date);
    expect(t.expiresAt.getTime()).toBe(jose.decodeJwt(t.token).exp! * 1000);
    await api.close();
    await m.close();
  });

  it("resumes after a cut with no revocation missed, and replaces a silently dead connection found by the watchdog", async () => {
    const proxy = await tcpProxy(r.url);
    const s = await session();
    const m = manager(s.sessionCredential, [proxy.url]);
    const rec = recordEvents(m);
    await m.start();
    const calendarJti = jose.decodeJwt(await m.getToken("calendar")).jti!;

    // A cut: while away, calendar is revoked; on resume the replay says so.
    proxy.cut(true);
    await rec.next("disconnected");
    await r.orchestrator.revoke({ target: { case: "resource", value: "calendar" }, reason: "while away" });
    proxy.allow();
    const back = await rec.next("reconnected");
    expect(back.resumed).toBe(true);
    const revoked = await rec.next("revoked");
    expect(revoked.resources).toEqual(["calendar"]);
    expect(revoked.tokenIds).toContain(calendarJti);
    await expect(m.getToken("calendar")).rejects.toMatchObject({ code: "GRANT_REVOKED" });
    expect(await m.getToken("salesforce")).toMatch(/^eyJ/);

    // A silent death: the proxy stops forwarding but keeps the connection open. The
    // deadline (3 heartbeats) is known once two heartbeats were seen.
    // (How the interval is learned from arrival gaps is pinned on fake times in client-units.)
    await waitFor(() => m.state().heartbeatIntervalMs !== undefined, "the heartbeat interval");
    expect(m.state().heartbeatIntervalMs).toBeGreaterThan(0);
    const from = rec.events.length;
    expect(proxy.freeze()).toBeGreaterThan(0);
    const lost = await rec.next("disconnected", () => true, 20_000, from);
    expect(lost.code).toBe("WATCHDOG");
    const again = await rec.next("reconnected", () => true, 20_000, from);
    expect(again.resumed).toBe(true);
    // The dead connection was dropped by the client, not left behind.
    expect(proxy.frozen).toBe(0);
    // And the new connection carries revocations.
    const sfJti = jose.decodeJwt(await m.getToken("salesforce")).jti!;
    await r.orchestrator.revoke({ target: { case: "tokenId", value: sfJti }, reason: "after the watchdog" });
    await rec.next("revoked", (e) => e.tokenIds.includes(sfJti), 20_000, from);
    await expect(m.getToken("salesforce")).rejects.toMatchObject({ code: "GRANT_REVOKED" });
    await m.close();
    await proxy.close();
  });

  it("a manager given a saved resume token continues where an earlier process stopped", async () => {
    const s = await session();
    const first = manager(s.sessionCredential);
    await first.start();
    const salesforceJti = jose.decodeJwt(await first.getToken("salesforce")).jti!;
    const saved = first.resumeToken();
    expect(typeof saved).toBe("string");
    await first.close();
    // Revoked while no process held the stream.
    await r.orchestrator.revoke({ target: { case: "resource", value: "salesforce" }, reason: "between processes" });
    const second = manager(s.sessionCredential, [r.url], { resumeToken: saved });
    const rec = recordEvents(second);
    await second.start();
    const revoked = await rec.next("revoked");
    // This process never held the revoked token; it hears that the grant is gone.
    expect(revoked.resources).toEqual(["salesforce"]);
    expect(revoked.tokenIds).not.toContain(salesforceJti.slice(0, 0) + "x");
    await expect(second.getToken("salesforce")).rejects.toMatchObject({ code: "GRANT_REVOKED" });
    expect(rec.events[0]).toMatchObject({ type: "connected", resumed: true });
    await second.close();
  });

  it("a resume token too old to replay from (RESUME_TOKEN_EXPIRED) makes it start fresh, dropping what it held", async () => {
    // Resume tokens live as long as the longest token lifetime: 2 s here.
    const short = await startReplica({ env: { CAPVEND_TOKEN_TTL: "2s", CAPVEND_MAX_TOKEN_TTL: "2s", CAPVEND_RENEW_LEAD: "1s", CAPVEND_HEARTBEAT_INTERVAL: "250ms" } });
    const proxy = await tcpProxy(short.url);
    try {
      const s = await short.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
      const m = manager(s.sessionCredential, [proxy.url], { backoff: { initialMs: 50, maxMs: 200 } });
      const rec = recordEvents(m);
      await m.start();
      const before = jose.decodeJwt(await m.getToken("calendar")).jti!;
      proxy.cut(true);
      await rec.next("disconnected");
      expect(m.state().connected).toBe(false);
      // Nothing is handed out while the stream is down.
      await expect(m.getToken("calendar", undefined, { timeoutMs: 100 })).rejects.toMatchObject({ code: "TIMEOUT" });
      await new Promise((res) => setTimeout(res, 2500));
      proxy.allow();
      await rec.next("disconnected", (e) => e.code === "RESUME_TOKEN_EXPIRED");
      const back = await rec.next("reconnected");
      expect(back.resumed).toBe(false);
      const after = jose.decodeJwt(await m.getToken("calendar")).jti!;
      expect(after).not.toBe(before);
      expect(m.state().status).toBe("ready");
      await m.close();
    } finally {
      await proxy.close();
      await short.cleanup();
    }
  });

  it("close() leaves no timer, socket or listener behind", async () => {
    const s = await session();
    const count = () => {
      const c: Record<string, number> = {};
      for (const k of process.getActiveResourcesInfo()) c[k] = (c[k] ?? 0) + 1;
      return c;
    };
    await new Promise((r) => setTimeout(r, 50));
    const before = count();
    const m = manager(s.sessionCredential);
    const iter = m.events();
    await m.start();
    expect(count().TCPSocketWrap ?? 0).toBeGreaterThan(before.TCPSocketWrap ?? 0);
    await m.close();
    // The iteration ends after what was queued.
    for (let e = await iter.next(); !e.done; e = await iter.next()) expect(e.value.type).not.toBe("ended");
    // Sockets close a few turns of the event loop after close() resolves; a leaked one never does.
    await waitFor(() => (count().TCPSocketWrap ?? 0) === (before.TCPSocketWrap ?? 0), "the manager's socket to close");
    await waitFor(() => (count().Timeout ?? 0) <= (before.Timeout ?? 0), "the manager's timers to be cleared");
  });

  it("rejects bad settings with a message naming the field", () => {
    const ok = { endpoints: [r.url], transport: grpcTransport, sessionCredential: "x", grants: GRANTS };
    expect(() => new CredentialManager({ ...ok, endpoints: [] })).toThrow(/endpoints/);
    expect(() => new CredentialManager({ ...ok, grants: [] })).toThrow(/grants/);
    expect(() => new CredentialManager({ ...ok, grants: [GRANTS[0]!, GRANTS[0]!] })).toThrow(/grants\[1\]\.resource/);
    expect(() => new CredentialManager({ ...ok, grants: [{ resource: "x", scopes: [] }] })).toThrow(/grants\[0\]\.scopes/);
    expect(() => new CredentialManager({ ...ok, sessionCredential: "" })).toThrow(/sessionCredential/);
    expect(() => new CredentialManager({ ...ok, backoff: { initialMs: 100, maxMs: 10 } })).toThrow(/backoff\.maxMs/);
  });
});

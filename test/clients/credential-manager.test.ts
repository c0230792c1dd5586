import http from "node:http";
import net from "node:net";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialManager, CredentialUnavailableError, type CredentialManagerEvent } from "../../clients/typescript/credential-manager.js";
import { startHarness, type Harness } from "../helpers/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

/** A TCP proxy in front of the server whose connections the test can cut and refuse. */
async function proxyTo(target: string) {
  const { port: targetPort } = new URL(target);
  const sockets = new Set<net.Socket>();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(Number(targetPort), "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut(refuse: boolean) {
      refusing = refuse;
      for (const s of sockets) s.destroy();
    },
    allow() {
      refusing = false;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

async function session(grants: { resource: string; scopes: string[]; ttl?: { seconds: bigint } }[]) {
  return h.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants });
}

const waitFor = async (pred: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("TypeScript credential manager", () => {
  it("hands out tokens that verify, and injects them into outgoing requests", async () => {
    const s = await session([{ resource: "salesforce", scopes: ["read"] }]);
    const m = new CredentialManager({ baseUrls: [h.url], sessionCredential: s.sessionCredential, grants: [{ resource: "salesforce", scopes: ["read"] }] });
    const jwt = await m.token("salesforce");
    const jwks = jose.createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`));
    expect((await jose.jwtVerify(jwt, jwks, { audience: "salesforce" })).payload.sid).toBe(s.sessionId);

    let seen: string | undefined;
    const api = http.createServer((req, res) => {
      seen = req.headers.authorization;
      res.end("ok");
    });
    await new Promise<void>((r) => api.listen(0, "127.0.0.1", r));
    const res = await m.fetch("salesforce")(`http://127.0.0.1:${(api.address() as net.AddressInfo).port}/contacts`);
    expect(await res.text()).toBe("ok");
    expect(seen).toBe(`Bearer ${jwt}`);
    api.close();
    await m.close();
    expect(m.state).toBe("closed");
    await expect(m.token("salesforce")).rejects.toBeInstanceOf(CredentialUnavailableError);
  });

  it("always has an unexpired token across renewals of a 3-second TTL", async () => {
    const s = await session([{ resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } }]);
    const m = new CredentialManager({ baseUrls: [h.url], sessionCredential: s.sessionCredential, grants: [{ resource: "calendar", scopes: ["read"], ttlSeconds: 3 }] });
    const ids = new Set<string>([jose.decodeJwt(await m.token("calendar")).jti!]);
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      // Never more than a brief wait: the renewal lands about when the held token enters its last second.
      const jwt = await m.token("calendar", { timeoutMs: 500 });
      const { exp, jti } = jose.decodeJwt(jwt);
      expect(exp! * 1000).toBeGreaterThan(Date.now());
      ids.add(jti!);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(ids.size).toBeGreaterThanOrEqual(2);
    await m.close();
  });

  it("drops a revoked token at once and refuses the grant afterwards", async () => {
    const s = await session([{ resource: "salesforce", scopes: ["read"] }, { resource: "calendar", scopes: ["read"] }]);
    const events: CredentialManagerEvent[] = [];
    const m = new CredentialManager({
      baseUrls: [h.url],
      sessionCredential: s.sessionCredential,
      grants: [{ resource: "salesforce", scopes: ["read"] }, { resource: "calendar", scopes: ["read"] }],
      onEvent: (e) => events.push(e),
    });
    const jwt = await m.token("salesforce");
    await m.token("calendar");
    await h.orchestrator.revoke({ target: { case: "tokenId", value: jose.decodeJwt(jwt).jti! } });
    await waitFor(() => events.some((e) => e.type === "revoked"), "revocation");
    await expect(m.token("salesforce")).rejects.toMatchObject({ why: "revoked" });
    expect(await m.token("calendar")).toBeTruthy();
    // Events name tokens by id only.
    expect(JSON.stringify(events, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(jwt);
    await m.close();
  });

  it("reconnects after the connection is cut, resumes, and learns of a revocation made while it was away", async () => {
    const proxy = await proxyTo(h.url);
    const s = await session([{ resource: "salesforce", scopes: ["read"] }, { resource: "calendar", scopes: ["read"] }]);
    const events: CredentialManagerEvent[] = [];
    const m = new CredentialManager({
      baseUrls: [proxy.url],
      sessionCredential: s.sessionCredential,
      grants: [{ resource: "salesforce", scopes: ["read"] }, { resource: "calendar", scopes: ["read"] }],
      onEvent: (e) => events.push(e),
    });
    await m.token("salesforce");
    await m.token("calendar");
    const tokenBefore = m.resumeToken;
    expect(tokenBefore).not.toBe("");

    proxy.cut(true);
    await waitFor(() => events.some((e) => e.type === "disconnected"), "disconnect");
    await h.orchestrator.revoke({ target: { case: "resource", value: "calendar" }, reason: "while away" });
    proxy.allow();

    await waitFor(() => events.some((e) => e.type === "revoked"), "replayed revocation");
    const connects = events.filter((e): e is Extract<CredentialManagerEvent, { type: "connected" }> => e.type === "connected");
    expect(connects.length).toBeGreaterThanOrEqual(2);
    expect(connects.at(-1)!.resumeToken).toBe(tokenBefore);
    await expect(m.token("calendar")).rejects.toMatchObject({ why: "revoked" });
    expect(await m.token("salesforce")).toBeTruthy();
    await m.close();
    await proxy.close();
  });

  it("stops for good when the session ends", async () => {
    const s = await session([{ resource: "calendar", scopes: ["read"] }]);
    const m = new CredentialManager({ baseUrls: [h.url], sessionCredential: s.sessionCredential, grants: [{ resource: "calendar", scopes: ["read"] }] });
    await m.token("calendar");
    await h.orchestrator.endSession({ sessionId: s.sessionId, reason: "done" });
    await waitFor(() => m.state === "ended", "ended");
    await expect(m.token("calendar")).rejects.toMatchObject({ why: "ended" });
    await m.close();
  });

  it("fails without retrying on a credential the server does not know", async () => {
    const m = new CredentialManager({ baseUrls: [h.url], sessionCredential: `ses_${"A".repeat(22)}.${"B".repeat(43)}`, grants: [{ resource: "calendar", scopes: ["read"] }] });
    await expect(m.token("calendar")).rejects.toMatchObject({ why: "failed" });
    expect(m.state).toBe("failed");
    await m.close();
  });
});

/**
 * @capvend/client across replicas that share state through a real nats-server: failover
 * to the next endpoint when one is killed, and a lagging replica (RESUME_AHEAD) that the
 * client moves on from instead of stopping.
 */
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialManager } from "@capvend/client";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { grpcTransport, recordEvents, tcpProxy } from "./client-helpers.js";

const GRANTS = [
  { resource: "salesforce", scopes: ["read"] },
  { resource: "calendar", scopes: ["read"] },
];
const ENV = { CAPVEND_TOKEN_TTL: "4s", CAPVEND_RENEW_LEAD: "1s", CAPVEND_HEARTBEAT_INTERVAL: "250ms" };

let nats: NatsServer;
const replicas: ReplicaProcess[] = [];
const closers: (() => Promise<void>)[] = [];
beforeAll(async () => {
  nats = await startNatsServer();
}, 60_000);
afterAll(async () => {
  for (const c of closers) await c().catch(() => undefined);
  await Promise.all(replicas.map((r) => r.cleanup()));
  await nats?.cleanup();
});

async function replica(natsUrl = nats.url): Promise<ReplicaProcess> {
  const r = await startReplica({ natsUrl, env: ENV });
  replicas.push(r);
  return r;
}

describe("@capvend/client with replicas on NATS", () => {
  it("fails over to the second endpoint when the first is killed, resuming there", async () => {
    const [a, b] = await Promise.all([replica(), replica()]);
    const s = await a!.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
    const m = new CredentialManager({ endpoints: [a!.url, b!.url], transport: grpcTransport, sessionCredential: s.sessionCredential, grants: GRANTS, backoff: { initialMs: 50, maxMs: 1000 } });
    closers.push(() => m.close());
    const rec = recordEvents(m);
    await m.start();
    expect(rec.events[0]).toMatchObject({ type: "connected", endpoint: a!.url });

    await a!.kill("SIGKILL");
    const lost = await rec.next("disconnected");
    expect(lost).toMatchObject({ endpoint: a!.url, code: "TRANSPORT" });
    const back = await rec.next("reconnected");
    expect(back).toMatchObject({ endpoint: b!.url, resumed: true });
    expect(m.state()).toMatchObject({ status: "ready", endpoint: b!.url, connected: true });

    // The stream on B carries revocations made on B (for the token B pushed on resume).
    const fromB = await rec.next("renewed", (e) => e.resource === "calendar", 20_000, rec.events.indexOf(back));
    const jti = jose.decodeJwt(await m.getToken("calendar")).jti!;
    expect(jti).toBe(fromB.tokenId);
    await b!.orchestrator.revoke({ target: { case: "tokenId", value: jti }, reason: "after failover" });
    await rec.next("revoked", (e) => e.tokenIds.includes(jti));
    await expect(m.getToken("calendar")).rejects.toMatchObject({ code: "GRANT_REVOKED" });
    expect(jose.decodeJwt(await m.getToken("salesforce")).aud).toBe("salesforce");
    await m.close();
  }, 60_000);

  it("moves on at once from a replica that drains (SIGTERM: DRAINING)", async () => {
    const [x, y] = await Promise.all([replica(), replica()]);
    const s = await x!.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
    const m = new CredentialManager({ endpoints: [x!.url, y!.url], transport: grpcTransport, sessionCredential: s.sessionCredential, grants: GRANTS });
    closers.push(() => m.close());
    const rec = recordEvents(m);
    await m.start();
    await x!.kill("SIGTERM");
    const lost = await rec.next("disconnected");
    expect(lost).toMatchObject({ endpoint: x!.url, code: "DRAINING" });
    expect(await rec.next("reconnected")).toMatchObject({ endpoint: y!.url, resumed: true });
    expect(jose.decodeJwt(await m.getToken("calendar")).aud).toBe("calendar");
    await m.close();
  }, 60_000);

  it("moves on from a lagging replica (RESUME_AHEAD) instead of stopping, and resumes there once it caught up", async () => {
    // L reaches NATS through a proxy the test can stall: its revocation feed falls behind.
    const natsProxy = await tcpProxy(nats.url.replace("nats://", "http://"));
    closers.push(() => natsProxy.close());
    const a = await replica();
    const lagging = await replica(natsProxy.url.replace("http://", "nats://"));
    const s = await a.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
    // L has seen the session (its store follows the session bucket) before it falls behind.
    await expect.poll(async () => (await lagging.client(s.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] })).token?.tokenId, { timeout: 10_000 }).toMatch(/^tok_/);
    expect(natsProxy.stall()).toBeGreaterThan(0);

    const m = new CredentialManager({ endpoints: [a.url, lagging.url], transport: grpcTransport, sessionCredential: s.sessionCredential, grants: GRANTS, backoff: { initialMs: 50, maxMs: 400 } });
    closers.push(() => m.close());
    const rec = recordEvents(m);
    await m.start();
    // A revocation L cannot see yet moves the stream's position past L's feed.
    const calendarJti = jose.decodeJwt(await m.getToken("calendar")).jti!;
    await a.orchestrator.revoke({ target: { case: "tokenId", value: calendarJti }, reason: "L has not seen this" });
    await rec.next("revoked", (e) => e.tokenIds.includes(calendarJti));
    await rec.next("renewed", (e) => e.resource === "salesforce", 20_000, rec.events.length);

    await a.kill("SIGKILL");
    const ahead = await rec.next("disconnected", (e) => e.code === "RESUME_AHEAD", 30_000);
    expect(ahead.endpoint).toBe(lagging.url);
    // Not a reason to stop: the manager keeps trying.
    expect(m.state().status).toBe("reconnecting");
    expect(m.resumeToken()).toBeDefined();

    natsProxy.resume();
    const back = await rec.next("reconnected", (e) => e.endpoint === lagging.url, 30_000);
    expect(back.resumed).toBe(true);
    expect(m.state()).toMatchObject({ status: "ready", connected: true });
    await expect(m.getToken("calendar")).rejects.toMatchObject({ code: "GRANT_REVOKED" });
    expect(jose.decodeJwt(await m.getToken("salesforce")).aud).toBe("salesforce");
    await m.close();
  }, 90_000);
});

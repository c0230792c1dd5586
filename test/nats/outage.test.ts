/**
 * A NATS outage under two replica processes: revocations and new sessions fail fast with
 * UNAVAILABLE, held streams keep renewing, health says NOT_SERVING, and after NATS comes
 * back (same port, same store) the replicas catch up and revocations reach the streams.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { REVOCATION_HEALTH_SERVICE, SESSIONS_HEALTH_SERVICE } from "../../src/backends/nats/names.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { waitFor, waitForItem } from "../helpers/wait.js";
import { collect, type Collected } from "../helpers/stream-collector.js";

/** Longest a failing call may take during the outage: the 2 s NATS timeout plus slack. */
const GRANTS = [
  { resource: "salesforce", scopes: ["read"], ttl: { seconds: 3n } },
  { resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } },
];

let nats: NatsServer;
let a: ReplicaProcess;
let b: ReplicaProcess;
const streams: Collected[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  const env = { CAPVEND_TOKEN_TTL: "3s", CAPVEND_HEARTBEAT_INTERVAL: "1s" };
  [a, b] = await Promise.all([startReplica({ id: "outage-a", natsUrl: nats.url, env }), startReplica({ id: "outage-b", natsUrl: nats.url, env })]);
}, 60_000);

afterAll(async () => {
  for (const s of streams) s.stop();
  await Promise.all([a?.cleanup(), b?.cleanup()]);
  await nats?.cleanup();
});

async function streamOnB() {
  const session = await a.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
  const runtime = b.client(session.sessionCredential);
  const s = collect((signal) => runtime.watchSession({ grants: GRANTS }, { signal }));
  streams.push(s);
  await s.until(() => s.of("tokenIssued").length >= 2, "first tokens");
  return { session, stream: s };
}

async function status(r: ReplicaProcess, service: string): Promise<ServingStatus> {
  return (await r.health.check({ service }, { timeoutMs: 2000 })).status;
}

/**
 * Runs `call` on replica `r`, expecting UNAVAILABLE at once: refused because NATS is known to
 * be unreachable (the cause the replica logs), not after waiting out a NATS deadline ("no
 * answer from NATS within").
 */
async function expectUnavailableFast(r: ReplicaProcess, call: (r: ReplicaProcess) => Promise<unknown>): Promise<void> {
  const from = r.logs.length;
  const err = await call(r).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  expect(err?.code).toBe(Code.Unavailable);
  const line = await waitForItem(() => r.logs.slice(from), (l) => l.includes('"msg":"rpc failed"'), "the replica's log line for the refusal");
  expect((JSON.parse(line) as { cause?: string }).cause).toMatch(/: NATS is unreachable$/);
}

describe("a NATS outage", () => {
  it("degrades cleanly and recovers without losing revocations", async () => {
    const renewing = await streamOnB();
    const first = await streamOnB();
    const second = await streamOnB();

    await nats.stop();
    await waitFor(async () => (await status(b, REVOCATION_HEALTH_SERVICE)) === ServingStatus.NOT_SERVING, "B to report capvend.revocation NOT_SERVING");
    expect(await status(b, SESSIONS_HEALTH_SERVICE)).toBe(ServingStatus.NOT_SERVING);
    await waitFor(async () => (await status(a, REVOCATION_HEALTH_SERVICE)) === ServingStatus.NOT_SERVING, "A to report NOT_SERVING");

    // Revoke and EndSession fail fast on either replica; so do new sessions (fail closed, documented).
    await expectUnavailableFast(a, (r) => r.orchestrator.revoke({ target: { case: "sessionId", value: first.session.sessionId }, reason: "during" }, { timeoutMs: 10_000 }));
    await expectUnavailableFast(b, (r) => r.orchestrator.revoke({ target: { case: "agentId", value: "sales-bot" }, reason: "during" }, { timeoutMs: 10_000 }));
    await expectUnavailableFast(b, (r) => r.orchestrator.endSession({ sessionId: second.session.sessionId, reason: "during" }, { timeoutMs: 10_000 }));
    await expectUnavailableFast(b, (r) => r.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS }, { timeoutMs: 10_000 }));

    // Known sessions keep their tokens coming: renewals of 3 s tokens and a one-off issue on A.
    const before = renewing.stream.of("tokenIssued").length;
    await renewing.stream.until(() => renewing.stream.of("tokenIssued").length >= before + 3, "renewals during the outage");
    const issued = await a.client(renewing.session.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] }, { timeoutMs: 5000 });
    expect(issued.token?.tokenId).toMatch(/^tok_/);

    await nats.start();
    // The first revocation goes through as soon as A is back, while B may still be reconnecting.
    await waitFor(async () => {
      try {
        await a.orchestrator.revoke({ target: { case: "sessionId", value: first.session.sessionId }, reason: "right after the outage" }, { timeoutMs: 5000 });
        return true;
      } catch {
        return false;
      }
    }, "a revoke on A to succeed after the restart");
    await waitFor(async () => (await status(b, REVOCATION_HEALTH_SERVICE)) === ServingStatus.SERVING, "B to report SERVING again");
    expect(await status(b, SESSIONS_HEALTH_SERVICE)).toBe(ServingStatus.SERVING);
    await a.orchestrator.revoke({ target: { case: "sessionId", value: second.session.sessionId }, reason: "after the outage" });

    await first.stream.until(() => first.stream.of("sessionEnded").length > 0, "the first session's end on B");
    await second.stream.until(() => second.stream.of("sessionEnded").length > 0, "the second session's end on B");
    expect(first.stream.of("sessionEnded")[0]!.reason).toBe("right after the outage");
    expect(second.stream.of("sessionEnded")[0]!.reason).toBe("after the outage");

    // New sessions work again; nothing crashed; the renewing stream never broke.
    await a.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
    expect(renewing.stream.ended).toBe(false);
    expect(a.alive && b.alive).toBe(true);
  }, 90_000);
});

/**
 * Grant rules across replica processes on one NATS: a revocation on A withdraws the grant on
 * B too, and the per-orchestrator session quota counts the sessions of every replica.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reasonOf } from "../../src/errors.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { collect, type Collected } from "../helpers/stream-collector.js";

const CAP = 3;
let nats: NatsServer;
let a: ReplicaProcess;
let b: ReplicaProcess;
const streams: Collected[] = [];

const GRANTS = [
  { resource: "salesforce", scopes: ["read"] },
  { resource: "calendar", scopes: ["read"] },
];

beforeAll(async () => {
  nats = await startNatsServer();
  const env = { CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR: String(CAP) };
  [a, b] = await Promise.all([startReplica({ id: "grant-a", natsUrl: nats.url, env }), startReplica({ id: "grant-b", natsUrl: nats.url, env })]);
}, 60_000);

afterAll(async () => {
  for (const s of streams) s.stop();
  await Promise.all([a?.cleanup(), b?.cleanup()]);
  await nats?.cleanup();
});

const sessionOn = (r: ReplicaProcess) => r.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });

function watchOn(r: ReplicaProcess, credential: string): Collected {
  const s = collect((signal) => r.client(credential).watchSession({ grants: GRANTS }, { signal }));
  streams.push(s);
  return s;
}

async function failure(call: Promise<unknown>): Promise<ConnectError | undefined> {
  return call.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
}

describe("grant rules on two replicas", () => {
  it("a resource revoked on A is refused to an earlier session's IssueToken and new WatchSession on A and on B", async () => {
    const s = await sessionOn(a);
    // A stream on B shows when B has applied the revocation (an event, not a sleep).
    const witness = await sessionOn(b);
    const onB = watchOn(b, witness.sessionCredential);
    await onB.until(() => onB.of("tokenIssued").length >= 2, "the witness's first tokens on B");
    for (const r of [a, b]) expect((await r.client(s.sessionCredential).issueToken({ resource: "salesforce", scopes: ["read"] })).token?.resource).toBe("salesforce");

    await a.orchestrator.revoke({ target: { case: "resource", value: "salesforce" }, reason: "kill switch" });
    await onB.until(() => onB.of("tokensRevoked").length > 0, "the revocation on B");
    expect(onB.of("tokensRevoked")[0]!.grantIndexes).toEqual([0]);

    for (const r of [a, b]) {
      const runtime = r.client(s.sessionCredential);
      const issued = await failure(runtime.issueToken({ resource: "salesforce", scopes: ["read"] }));
      expect({ replica: r.id, code: issued?.code, reason: reasonOf(issued) }).toEqual({ replica: r.id, code: Code.PermissionDenied, reason: "GRANT_REVOKED" });
      const stream = watchOn(r, s.sessionCredential);
      await stream.until(() => stream.ended, `the refused stream on ${r.id}`);
      expect({ replica: r.id, events: stream.messages.length, reason: reasonOf(stream.error) }).toEqual({ replica: r.id, events: 0, reason: "GRANT_REVOKED" });
      // The session's other grant still works.
      expect((await runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token?.resource).toBe("calendar");
    }

    // A session started after the revocation, on either replica, is granted the resource.
    const later = await sessionOn(b);
    for (const r of [a, b]) expect((await r.client(later.sessionCredential).issueToken({ resource: "salesforce", scopes: ["read"] })).token?.resource).toBe("salesforce");

    for (const x of [s, witness, later]) await a.orchestrator.endSession({ sessionId: x.sessionId });
  });

  it("counts one orchestrator's sessions of both replicas against its quota", async () => {
    const onA = [await sessionOn(a), await sessionOn(a)];
    const onB = await sessionOn(b);
    // Each replica reads the other's sessions (the bucket watch would bring them a moment later).
    await a.client(onB.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] });
    for (const s of onA) await b.client(s.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] });

    for (const r of [a, b]) {
      const e = await failure(sessionOn(r));
      expect({ replica: r.id, code: e?.code, reason: reasonOf(e) }).toEqual({ replica: r.id, code: Code.ResourceExhausted, reason: "SESSION_QUOTA" });
    }

    // Ended on A: once B has the end (its credential is refused there), B admits one again.
    await a.orchestrator.endSession({ sessionId: onA[0]!.sessionId });
    const deadline = Date.now() + 15_000;
    let ended: ConnectError | undefined;
    while (reasonOf((ended = await failure(b.client(onA[0]!.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] })))) !== "SESSION_ENDED" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(reasonOf(ended)).toBe("SESSION_ENDED");
    const replacement = await sessionOn(b);
    for (const s of [onA[1]!, onB, replacement]) await b.orchestrator.endSession({ sessionId: s.sessionId });
  });
});

/**
 * AdminService.GetSession across replicas: a session's streams are listed wherever they are
 * held, asked of every replica over NATS, and a replica that died is named as unanswered
 * instead of silently missing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { waitFor } from "../helpers/wait.js";
import { collect, type Collected } from "../helpers/stream-collector.js";

let nats: NatsServer;
let a: ReplicaProcess;
let b: ReplicaProcess;
let c: ReplicaProcess;
const streams: Collected[] = [];

const GRANTS = [
  { resource: "salesforce", scopes: ["read"] },
  { resource: "calendar", scopes: ["read"] },
];

beforeAll(async () => {
  nats = await startNatsServer();
  [a, b, c] = await Promise.all(["replica-a", "replica-b", "replica-c"].map((id) => startReplica({ id, natsUrl: nats.url })));
}, 60_000);

afterAll(async () => {
  for (const s of streams) s.stop();
  await Promise.all([a?.cleanup(), b?.cleanup(), c?.cleanup()]);
  await nats?.cleanup();
});

async function streamOn(r: ReplicaProcess) {
  const session = await a.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
  const runtime = r.client(session.sessionCredential);
  const s = collect((signal) => runtime.watchSession({ grants: GRANTS }, { signal }));
  streams.push(s);
  await s.until(() => s.of("tokenIssued").length >= 2, "the first tokens");
  return { session, stream: s };
}

describe("GetSession across replicas", () => {
  it("lists a stream held on B when asked on A, with its live token ids", async () => {
    await waitFor(async () => (await a.admin.policyStatus({})).replicas.length === 3, "all three replicas reporting");
    const { session, stream } = await streamOn(b);
    const issued = new Set(stream.of("tokenIssued").map((t) => t.token!.tokenId));

    const res = await a.admin.getSession({ sessionId: session.sessionId });
    expect(res.unansweredReplicas).toEqual([]);
    expect(res.streams).toHaveLength(1);
    const [held] = res.streams;
    expect(held!.replica).toBe("replica-b");
    expect(held!.state).toBe("open");
    expect(held!.grants.map((g) => g.resource).sort()).toEqual(["calendar", "salesforce"]);
    const listed = held!.grants.flatMap((g) => g.tokens.map((t) => t.tokenId));
    expect(listed.length).toBeGreaterThan(0);
    for (const id of listed) expect(issued.has(id)).toBe(true);

    // B lists its own stream once, not again as a remote one.
    const onB = await b.admin.getSession({ sessionId: session.sessionId });
    expect(onB.streams.map((s) => s.replica)).toEqual(["replica-b"]);
  });

  it("names a replica that died as unanswered and still lists the streams the others hold", async () => {
    const { session } = await streamOn(b);
    await c.kill("SIGKILL");
    const res = await a.admin.getSession({ sessionId: session.sessionId });
    expect(res.unansweredReplicas).toEqual(["replica-c"]);
    expect(res.streams.map((s) => s.replica)).toEqual(["replica-b"]);
  });
});

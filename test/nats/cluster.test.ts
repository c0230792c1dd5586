/**
 * A JetStream cluster of three nats-server nodes with replicas connected to different
 * nodes: killing a node while revoking in a loop loses nothing — every acknowledged
 * revocation reaches the stream held on the other replica.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REVOCATION_STREAM } from "../../src/backends/nats/names.js";
import { startNatsCluster, type NatsCluster } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { collect, type Collected } from "./watch-collector.js";

const SESSIONS = 16;
const KILL_AFTER = 5;
const GRANTS = [{ resource: "calendar", scopes: ["read"] }];

let cluster: NatsCluster;
let a: ReplicaProcess;
let b: ReplicaProcess;
const streams: Collected[] = [];

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  const [n1, n2] = cluster.servers;
  // Each replica is given one node; it learns the others from the cluster and fails over to them.
  [a, b] = await Promise.all([startReplica({ id: "cluster-a", natsUrl: n1!.url }), startReplica({ id: "cluster-b", natsUrl: n2!.url })]);
}, 90_000);

afterAll(async () => {
  for (const s of streams) s.stop();
  await Promise.all([a?.cleanup(), b?.cleanup()]);
  await cluster?.cleanup();
});

describe("a three-node JetStream cluster", () => {
  it("keeps capvend's streams on three replicas", async () => {
    const nc = await connect({ servers: cluster.servers[2]!.url });
    try {
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info(REVOCATION_STREAM)).config.num_replicas).toBe(3);
      expect((await jsm.streams.info("KV_capvend_sessions")).config.num_replicas).toBe(3);
    } finally {
      await nc.close();
    }
  });

  it("delivers every acknowledged revocation to streams on B while A's node is killed mid-run", async () => {
    const sessions: { sessionId: string; stream: Collected }[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const s = await a.orchestrator.startSession({ agentId: "sales-bot", userId: `user-${i}`, grants: GRANTS });
      const runtime = b.client(s.sessionCredential);
      const stream = collect((signal) => runtime.watchSession({ grants: GRANTS }, { signal }));
      streams.push(stream);
      sessions.push({ sessionId: s.sessionId, stream });
    }
    for (const s of sessions) await s.stream.until(() => s.stream.of("tokenIssued").length > 0, 15_000, "a first token");

    const acknowledged: string[] = [];
    let failures = 0;
    for (let i = 0; i < SESSIONS; i++) {
      if (i === KILL_AFTER) await cluster.servers[0]!.kill();
      const { sessionId } = sessions[i]!;
      // A failed revoke was not acknowledged: retry it, as an orchestrator would.
      for (const deadline = Date.now() + 30_000; ; ) {
        try {
          await a.orchestrator.revoke({ target: { case: "sessionId", value: sessionId }, reason: `revoke ${i}` }, { timeoutMs: 5000 });
          acknowledged.push(sessionId);
          break;
        } catch (err) {
          failures++;
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    }
    expect(acknowledged).toHaveLength(SESSIONS);

    for (const s of sessions) {
      await s.stream.until(() => s.stream.of("sessionEnded").length > 0, 30_000, `the end of ${s.sessionId} on B`);
    }
    expect(sessions.map((s) => s.stream.of("sessionEnded")[0]!.reason)).toEqual(sessions.map((_, i) => `revoke ${i}`));
    expect(a.alive && b.alive).toBe(true);
    // How many attempts failed over while the node was gone (for the log; any number is fine).
    console.info(`cluster failover: ${failures} revoke attempts retried`);
  }, 120_000);
});

/**
 * A replica's start-up while JetStream is not ready, on real nats-server processes: started
 * against one node of a three-node cluster (no JetStream quorum, so no meta leader), it
 * retries and becomes ready once the other nodes join; with JetStream never available it
 * fails clearly when CAPVEND_NATS_STARTUP_TIMEOUT runs out; a permission error fails at once.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { POLICY_BUCKET, POLICY_STATUS_BUCKET, REVOCATION_STREAM } from "../../src/backends/nats/names.js";
import { startNatsCluster, startNatsServer, type NatsCluster, type NatsServer } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { waitFor } from "../helpers/wait.js";

const RETRY_LINE = '"JetStream not ready; retrying a start-up step"';
const GRANTS = [{ resource: "calendar", scopes: ["read"] }];

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

function track<T extends { cleanup(): Promise<void> }>(x: T): T {
  cleanups.push(() => x.cleanup());
  return x;
}

/** Starts a replica in the background; `firstRetry` resolves at its first start-up retry warning. */
function startEarlyReplica(id: string, natsUrl: string, env: Record<string, string>) {
  const lines: string[] = [];
  let onRetry!: () => void;
  const firstRetry = new Promise<void>((resolve) => (onRetry = resolve));
  const replica = startReplica({
    id,
    natsUrl,
    env,
    startTimeoutMs: 180_000,
    onLine: (line) => {
      lines.push(line);
      if (line.includes(RETRY_LINE)) onRetry();
    },
  });
  replica.then((r) => cleanups.push(() => r.cleanup())).catch(() => undefined);
  return { replica, firstRetry, lines };
}

describe("replica start-up while JetStream is not ready", () => {
  it("retries while the cluster has no JetStream quorum and serves once the other nodes start", async () => {
    const cluster: NatsCluster = track(await startNatsCluster(3, "capvend-early", { started: 1 }));
    const [n1, n2, n3] = cluster.servers as [NatsServer, NatsServer, NatsServer];
    const early = startEarlyReplica("early-a", n1.url, { CAPVEND_NATS_STARTUP_TIMEOUT: "10m" });
    // The replica is up and retrying (or it died: then this rejects with its last lines).
    await Promise.race([early.firstRetry, early.replica.then(() => Promise.reject(new Error("the replica listened before JetStream was ready")))]);
    await Promise.all([n2.start(), n3.start()]);
    await cluster.waitJetStreamReady();
    const replica: ReplicaProcess = await early.replica;

    // It serves: a session, a token, and its streams and buckets are clustered.
    const s = await replica.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
    const token = await replica.client(s.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] });
    expect(token.token?.accessToken.split(".")).toHaveLength(3);
    expect((await replica.health.check({ service: "capvend.revocation" })).status).toBe(1);
    // And it is in the replica directory (its first status report may have failed while the cluster formed).
    await waitFor(async () => (await replica.admin.policyStatus({})).replicas.some((r) => r.replica === "early-a"), "the replica's policy status report");
    const nc = await connect({ servers: n3.url });
    try {
      const jsm = await jetstreamManager(nc);
      for (const stream of [REVOCATION_STREAM, `KV_${POLICY_BUCKET}`, `KV_${POLICY_STATUS_BUCKET}`]) {
        expect((await jsm.streams.info(stream)).config.num_replicas).toBe(3);
      }
    } finally {
      await nc.close();
    }
    // Each retry said what it waited for and why, at warn.
    const retries = early.lines.filter((l) => l.includes(RETRY_LINE)).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(retries.length).toBeGreaterThan(0);
    expect(retries[0]).toMatchObject({ level: "warn" });
    expect(typeof retries[0]!.step).toBe("string");
    expect(typeof retries[0]!.error).toBe("string");
  }, 240_000);

  it("fails with a clear error once CAPVEND_NATS_STARTUP_TIMEOUT passes with JetStream never ready", async () => {
    const cluster = track(await startNatsCluster(3, "capvend-lone", { started: 1 }));
    const early = startEarlyReplica("lone-a", cluster.servers[0]!.url, { CAPVEND_NATS_STARTUP_TIMEOUT: "3s", CAPVEND_NATS_TIMEOUT: "500ms" });
    await expect(early.replica).rejects.toThrow(/exited \(1\) before listening/);
    expect(early.lines.some((l) => l.includes(RETRY_LINE))).toBe(true);
    const failure = early.lines.find((l) => l.startsWith("capvend: failed to start:"));
    expect(failure).toMatch(/JetStream was not ready within CAPVEND_NATS_STARTUP_TIMEOUT \(3000 ms, \d+ attempts\); last error: /);
  }, 120_000);

  it("fails at once, without retrying, when NATS denies the JetStream API", async () => {
    const password = "startup-test-password-7f3a";
    const nats: NatsServer = track(
      await startNatsServer({
        config: `authorization { users = [ { user: "capvend", password: "${password}", permissions: { publish: { deny: ["$JS.API.>"] } } } ] }\n`,
      }),
    );
    // Ten minutes of budget: were a permission error retried, this test would time out.
    const early = startEarlyReplica("denied-a", nats.url, { NATS_USER: "capvend", NATS_PASSWORD: password, CAPVEND_NATS_STARTUP_TIMEOUT: "10m" });
    await expect(early.replica).rejects.toThrow(/exited \(1\) before listening/);
    const failure = early.lines.find((l) => l.startsWith("capvend: failed to start:"));
    expect(failure).toMatch(/NATS start-up: JetStream account info failed: \w+: Permissions Violation for Publish to "\$JS\.API\.INFO"/);
    expect(early.lines.some((l) => l.includes(RETRY_LINE))).toBe(false);
    expect(early.lines.join("\n")).not.toContain(password);
  }, 120_000);
});

/**
 * @capvend/client figures (`npm run bench -- client`):
 *
 * - cached getToken: the cost of one `await creds.getToken(resource)` answered from memory,
 *   against the same-run baseline of awaiting an async function that returns a Map entry
 *   (the floor for any async token getter).
 * - failover: two replica processes on one nats-server; the manager holds its stream on
 *   one, which is SIGKILLed; time from the kill to the `disconnected` event and to the
 *   `reconnected` event on the other endpoint (default backoff: full jitter from 100 ms).
 * - watchdog: the stream runs through a TCP proxy that stops forwarding without closing
 *   (server heartbeat 1 s, so the deadline is 3 s once learned); time from the freeze to
 *   the WATCHDOG `disconnected` and to the `reconnected` on a new connection. Baseline: the
 *   deadline itself.
 *
 * $CAPVEND_BENCH_CLIENT_TRIALS sets the failover/watchdog trials (default 5).
 */
import { performance } from "node:perf_hooks";
import { CredentialManager, type CredentialEvent } from "@capvend/client";
import { grpcTransport, tcpProxy } from "../test/clients/client-helpers.js";
import { startNatsServer } from "../test/helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../test/helpers/replica-process.js";

const GRANTS = [{ resource: "calendar", scopes: ["read"] }];
const GET_TOKEN_CALLS = 200_000;
const GET_TOKEN_ROUNDS = 7;
const DEFAULT_TRIALS = 5;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (label: string, xs: number[], unit: string, digits = 0) =>
  `${label.padEnd(44)} median ${median(xs).toFixed(digits).padStart(7)} ${unit}  (min ${Math.min(...xs).toFixed(digits)}, max ${Math.max(...xs).toFixed(digits)}, n=${xs.length})`;

/** Resolves at the first event of `type` (matching `pred`) with its performance.now(). */
function nextEvent(m: CredentialManager, type: CredentialEvent["type"], pred: (e: CredentialEvent) => boolean = () => true): Promise<{ at: number; e: CredentialEvent }> {
  const it = m.events();
  return (async () => {
    for await (const e of it) {
      if (e.type === type && pred(e)) {
        const at = performance.now();
        await it.return!();
        return { at, e };
      }
    }
    throw new Error(`the manager stopped before a "${type}" event`);
  })();
}

async function session(r: ReplicaProcess) {
  return r.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
}

async function cachedGetToken(): Promise<void> {
  const r = await startReplica();
  try {
    const s = await session(r);
    const m = new CredentialManager({ endpoints: [r.url], transport: grpcTransport, sessionCredential: s.sessionCredential, grants: GRANTS });
    await m.start();
    const map = new Map([["calendar", await m.getToken("calendar")]]);
    const baseline = async (k: string) => map.get(k)!;
    const perCall: number[] = [];
    const perBaseline: number[] = [];
    for (let round = 0; round < GET_TOKEN_ROUNDS; round++) {
      let t = performance.now();
      for (let i = 0; i < GET_TOKEN_CALLS; i++) await m.getToken("calendar");
      perCall.push(((performance.now() - t) * 1e6) / GET_TOKEN_CALLS);
      t = performance.now();
      for (let i = 0; i < GET_TOKEN_CALLS; i++) await baseline("calendar");
      perBaseline.push(((performance.now() - t) * 1e6) / GET_TOKEN_CALLS);
    }
    console.log(fmt("cached getToken", perCall, "ns/call"));
    console.log(fmt("baseline: await of a Map lookup", perBaseline, "ns/call"));
    await m.close();
  } finally {
    await r.cleanup();
  }
}

async function failover(trials: number): Promise<void> {
  const nats = await startNatsServer();
  const env = { CAPVEND_HEARTBEAT_INTERVAL: "1s" };
  const replicas: ReplicaProcess[] = [await startReplica({ natsUrl: nats.url, env }), await startReplica({ natsUrl: nats.url, env })];
  try {
    const s = await session(replicas[0]!);
    const endpoints = () => replicas.map((r) => r.url);
    const detect: number[] = [];
    const recover: number[] = [];
    for (let t = 0; t < trials; t++) {
      const m = new CredentialManager({ endpoints: endpoints(), transport: grpcTransport, sessionCredential: s.sessionCredential, grants: GRANTS });
      await m.start();
      const lost = nextEvent(m, "disconnected");
      const back = nextEvent(m, "reconnected");
      const t0 = performance.now();
      await replicas[0]!.kill("SIGKILL");
      const [d, b] = await Promise.all([lost, back]);
      if ((b.e as Extract<CredentialEvent, { type: "reconnected" }>).endpoint !== replicas[1]!.url) throw new Error("reconnected to an unexpected endpoint");
      detect.push(d.at - t0);
      recover.push(b.at - t0);
      await m.close();
      // The killed replica comes back as the second endpoint for the next trial.
      const dead = replicas.shift()!;
      await dead.cleanup();
      replicas.push(await startReplica({ natsUrl: nats.url, env }));
    }
    console.log(fmt("failover: kill → disconnected", detect, "ms", 1));
    console.log(fmt("failover: kill → reconnected on the other", recover, "ms", 1));
  } finally {
    await Promise.all(replicas.map((r) => r.cleanup()));
    await nats.cleanup();
  }
}

async function watchdog(trials: number): Promise<void> {
  const r = await startReplica({ env: { CAPVEND_HEARTBEAT_INTERVAL: "1s" } });
  const proxy = await tcpProxy(r.url);
  try {
    const s = await session(r);
    const m = new CredentialManager({ endpoints: [proxy.url], transport: grpcTransport, sessionCredential: s.sessionCredential, grants: GRANTS });
    await m.start();
    while (m.state().heartbeatIntervalMs === undefined) await new Promise((res) => setTimeout(res, 100));
    const detect: number[] = [];
    const recover: number[] = [];
    for (let t = 0; t < trials; t++) {
      const lost = nextEvent(m, "disconnected", (e) => (e as { code?: string }).code === "WATCHDOG");
      const back = nextEvent(m, "reconnected");
      const t0 = performance.now();
      proxy.freeze();
      const [d, b] = await Promise.all([lost, back]);
      detect.push(d.at - t0);
      recover.push(b.at - t0);
      // Let the new stream see two heartbeats before the next freeze.
      await new Promise((res) => setTimeout(res, 2500));
    }
    console.log(fmt("watchdog: silent → disconnected (WATCHDOG)", detect, "ms", 1));
    console.log(fmt("watchdog: silent → reconnected", recover, "ms", 1));
    console.log(`baseline: deadline = 3 × learned heartbeat interval = ${3 * m.state().heartbeatIntervalMs!} ms`);
    await m.close();
  } finally {
    await proxy.close();
    await r.cleanup();
  }
}

export async function main(): Promise<void> {
  const trials = Number(process.env.CAPVEND_BENCH_CLIENT_TRIALS ?? DEFAULT_TRIALS);
  await cachedGetToken();
  await failover(trials);
  await watchdog(trials);
}

/**
 * Cross-replica revocation latency: two replica processes on one nats-server (started here,
 * on a free port with its own store), every WatchSession stream held on replica B. Each
 * revocation is a Revoke(session_id) sent to replica A — the cross-replica path: A publishes
 * to JetStream, B's ordered consumer applies it and pushes SessionEnded — or, as the
 * baseline in the same run, to replica B itself (still through JetStream: every replica
 * applies the feed in order, its own revocations included). The two kinds alternate, one
 * revocation at a time, so drift hits both alike. Latency is from sending Revoke to the
 * SessionEnded event arriving at the runtime.
 *
 * $CAPVEND_BENCH_REVOCATIONS sets the count per kind (default 1000).
 */
import { setMaxListeners } from "node:events";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { VendingService } from "../src/gen/capvend/v1/vending_pb.js";
import { startNatsServer } from "../test/helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../test/helpers/replica-process.js";

const DEFAULT_REVOCATIONS = 1000;
const WARMUP_REVOCATIONS = 20;
/** Streams per HTTP/2 connection from the runtimes' side. */
const STREAMS_PER_CONNECTION = 50;
/** Concurrent StartSession/WatchSession calls while setting up. */
const SETUP_CONCURRENCY = 16;
/** Longest wait for one SessionEnded before the run is declared broken, ms. */
const EVENT_TIMEOUT_MS = 10_000;
const GRANTS = [{ resource: "calendar", scopes: ["read"] }];

interface Held {
  sessionId: string;
  /** performance.now() when SessionEnded arrived. */
  ended: Promise<number>;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function summary(label: string, values: number[]): string {
  const s = [...values].sort((x, y) => x - y);
  const f = (v: number) => `${v.toFixed(2)} ms`.padStart(10);
  return `${label.padEnd(34)} n=${String(s.length).padEnd(5)} p50 ${f(percentile(s, 50))}  p99 ${f(percentile(s, 99))}  max ${f(s.at(-1)!)}`;
}

/** Opens sessions on `starter` and holds a stream for each on `holder`, `count` of them. */
async function holdStreams(starter: ReplicaProcess, holder: ReplicaProcess, count: number, signal: AbortSignal): Promise<Held[]> {
  const transports: Transport[] = [];
  const transportFor = (i: number) => (transports[Math.floor(i / STREAMS_PER_CONNECTION)] ??= createConnectTransport({ baseUrl: holder.url, httpVersion: "2" }));
  const held: Held[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const s = await starter.orchestrator.startSession({ agentId: "sales-bot", userId: `bench-user-${i % 97}`, grants: GRANTS });
      const runtime: Client<typeof VendingService> = createClient(VendingService, transportFor(i));
      const stream = runtime.watchSession({ grants: GRANTS }, { signal, headers: { authorization: `Bearer ${s.sessionCredential}` } });
      let opened!: () => void;
      const isOpen = new Promise<void>((r) => (opened = r));
      const ended = (async () => {
        try {
          for await (const m of stream) {
            if (m.event.case === "tokenIssued") opened();
            if (m.event.case === "sessionEnded") return performance.now();
          }
        } catch {
          // aborted at the end of the run
        }
        return Number.NaN;
      })();
      await isOpen;
      held[i] = { sessionId: s.sessionId, ended };
    }
  };
  await Promise.all(Array.from({ length: SETUP_CONCURRENCY }, worker));
  return held;
}

async function revokeAndWait(via: ReplicaProcess, h: Held): Promise<{ total: number; rpc: number }> {
  const start = performance.now();
  await via.orchestrator.revoke({ target: { case: "sessionId", value: h.sessionId }, reason: "bench" });
  const rpc = performance.now() - start;
  let timer: NodeJS.Timeout | undefined;
  const arrived = await Promise.race([
    h.ended,
    new Promise<number>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no SessionEnded for ${h.sessionId} within ${EVENT_TIMEOUT_MS} ms`)), EVENT_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  return { total: arrived - start, rpc };
}

/** Runs the benchmark and prints p50/p99/max for both paths. */
export async function main(): Promise<void> {
  const count = Number(process.env.CAPVEND_BENCH_REVOCATIONS ?? DEFAULT_REVOCATIONS);
  const nats = await startNatsServer();
  const replicas: ReplicaProcess[] = [];
  const ac = new AbortController();
  // One signal ends every stream at the end of the run.
  setMaxListeners(0, ac.signal);
  try {
    const [a, b] = await Promise.all([startReplica({ id: "bench-a", natsUrl: nats.url }), startReplica({ id: "bench-b", natsUrl: nats.url })]);
    replicas.push(a!, b!);
    console.log(`cross-replica revocation: nats-server ${nats.url}, replicas A ${a!.url} and B ${b!.url}, node ${process.version}`);
    // Warm-up revocations on top of the measured ones: JIT and connection set-up on both paths.
    const warm = WARMUP_REVOCATIONS;
    const setupStart = performance.now();
    const cross = await holdStreams(a!, b!, warm + count, ac.signal);
    const same = await holdStreams(b!, b!, warm + count, ac.signal);
    console.log(`setup: ${2 * (warm + count)} sessions, each with a WatchSession stream on B, in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`);

    const crossTotal: number[] = [];
    const crossRpc: number[] = [];
    const sameTotal: number[] = [];
    const sameRpc: number[] = [];
    for (let i = 0; i < warm + count; i++) {
      const x = await revokeAndWait(a!, cross[i]!);
      const y = await revokeAndWait(b!, same[i]!);
      if (i < warm) continue;
      crossTotal.push(x.total);
      crossRpc.push(x.rpc);
      sameTotal.push(y.total);
      sameRpc.push(y.rpc);
    }
    console.log(`${count} revocations per path measured (after ${warm} warm-up ones), one at a time, alternating A and B`);
    console.log(summary("revoke on A -> event on B (cross)", crossTotal));
    console.log(summary("revoke on B -> event on B (same)", sameTotal));
    console.log(summary("  Revoke RPC alone, on A", crossRpc));
    console.log(summary("  Revoke RPC alone, on B", sameRpc));
    const ratio = percentile([...crossTotal].sort((p, q) => p - q), 50) / percentile([...sameTotal].sort((p, q) => p - q), 50);
    console.log(`ratio cross/same (p50): ${ratio.toFixed(2)}x`);
  } finally {
    ac.abort();
    await Promise.all(replicas.map((r) => r.cleanup()));
    await nats.cleanup();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}

/**
 * `npm run bench -- limits`: what the transport limits leave an attacker, measured on a
 * server in this process with the default limits:
 *
 * - heap per idle HTTP/2 connection (CONNECTIONS connections that sent one request and idle);
 * - heap per unauthenticated stream (grpc.health.v1 Watch), opened up to the per-connection
 *   budget on each connection; the streams past it are refused and counted;
 * - another session's IssueToken latency (p50/p99) alone, and during a burst of BURST
 *   WatchSession opens from one session (refused past CAPVEND_MAX_STREAMS_PER_SESSION), sent
 *   from a child process as an attacker's would be; ROUNDS rounds, medians summarized.
 */
import { spawn } from "node:child_process";
import * as http2 from "node:http2";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { sha256Hex } from "../src/auth/credentials.js";
import { systemClock } from "../src/clock.js";
import { DEFAULT_POLICY_DIR, loadConfig } from "../src/config/config.js";
import { VendingService } from "../src/gen/capvend/v1/vending_pb.js";
import { openKeyRing } from "../src/keys/key-ring.js";
import { createLogger } from "../src/logging/logger.js";
import { loadPolicyEngine } from "../src/policy/engine.js";
import { MemoryRevocationList } from "../src/backends/memory/memory-revocation-list.js";
import { createCapvendServer } from "../src/server.js";
import { MemorySessionStore } from "../src/backends/memory/memory-session-store.js";
import { createFileAuditSink } from "../src/audit/file-sink.js";

const TOKEN = "bench-orchestrator-token-0123456789";
const CONNECTIONS = 500;
const STREAM_CONNECTIONS = 40;
const BURST = 200;
/** Rounds of (alone, during a burst); the summary line gives their medians. $CAPVEND_BENCH_RUNS, default 5. */
const ROUNDS = Number(process.env.CAPVEND_BENCH_RUNS ?? 5);
/** Timed IssueToken calls per measurement. */
const SAMPLES = 200;
const gc = (globalThis as { gc?: () => void }).gc;

async function heap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage().heapUsed;
}

/** The burst's process (bench/limits-burst.ts): one session's WatchSession opens, on command. */
async function startAttacker(url: string, credential: string): Promise<{ burst(n: number): Promise<string>; stop(): void }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL("./limits-burst.js", import.meta.url)), url, credential], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error("the burst process ended");
    return r.value;
  };
  if ((await next()) !== "ready") throw new Error("the burst process did not start");
  return {
    async burst(n) {
      child.stdin!.write(`burst ${n}\n`);
      const [, opened, refused, reasons] = (await next()).split(" ");
      return `${opened} opened, ${refused} refused: ${reasons ?? ""}`;
    },
    stop: () => {
      child.stdin!.end();
      child.kill();
    },
  };
}

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

export async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-limits-bench-"));
  const config = loadConfig({ CAPVEND_DATA_DIR: dataDir });
  const policy = await loadPolicyEngine({ dir: DEFAULT_POLICY_DIR, clock: systemClock });
  const keyRing = await openKeyRing({ dataDir, alg: "EdDSA", clock: systemClock, maxTokenTtlMs: config.maxTokenTtlMs });
  const audit = await createFileAuditSink({ dir: dataDir, replica: "bench" });
  const server = await createCapvendServer({
    settings: config,
    clock: systemClock,
    logger: createLogger({ level: "silent", replica: "bench" }),
    orchestratorHashes: new Map([["dev", sha256Hex(TOKEN)]]),
    policy,
    keyRing,
    sessions: new MemorySessionStore(systemClock),
    revocations: new MemoryRevocationList(systemClock),
    audit,
  });
  const { port } = await server.listen("127.0.0.1", 0);
  const url = `http://127.0.0.1:${port}`;
  const L = config.limits;
  process.stdout.write(
    `limits: ${L.maxConnectionsPerAddress} connections per address, ${L.maxConcurrentStreams} streams per connection, ` +
      `${L.maxUnauthenticatedStreams} unauthenticated streams per connection, ${L.maxStreamsPerSession} streams per session\n`,
  );
  const sessions: http2.ClientHttp2Session[] = [];
  try {
    // 1. Idle connections.
    const base = await heap();
    for (let i = 0; i < Math.min(CONNECTIONS, L.maxConnectionsPerAddress - STREAM_CONNECTIONS - 8); i++) {
      const s = http2.connect(url);
      s.on("error", () => undefined);
      sessions.push(s);
      const req = s.request({ ":method": "GET", ":path": "/.well-known/jwks.json" });
      req.resume();
      await new Promise((r) => req.once("close", r));
    }
    const withConnections = await heap();
    const idle = sessions.length;
    process.stdout.write(`memory per idle HTTP/2 connection: ${((withConnections - base) / idle / 1024).toFixed(1)} KiB (${idle} connections)\n`);

    // 2. Unauthenticated streams, past the budget.
    let open = 0;
    let refused = 0;
    const streamSessions: http2.ClientHttp2Session[] = [];
    const perConnection = L.maxUnauthenticatedStreams * 2;
    await Promise.all(
      Array.from({ length: STREAM_CONNECTIONS }, async () => {
        const s = http2.connect(url);
        s.on("error", () => undefined);
        streamSessions.push(s);
        await Promise.all(
          Array.from({ length: perConnection }, () => {
            const req = s.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Watch", "content-type": "application/grpc", te: "trailers" });
            req.on("error", () => undefined);
            req.end(Buffer.from([0, 0, 0, 0, 0]));
            return new Promise<void>((resolve) => {
              req.once("response", (h) => {
                if (h["grpc-status"] === "8") refused++;
                else open++;
                resolve();
              });
              req.once("close", () => resolve());
            });
          }),
        );
      }),
    );
    const withStreams = await heap();
    process.stdout.write(
      `memory per unauthenticated stream: ${((withStreams - withConnections) / open / 1024).toFixed(1)} KiB ` +
        `(${open} open over ${STREAM_CONNECTIONS} connections, ${refused} refused RESOURCE_EXHAUSTED past ${L.maxUnauthenticatedStreams} per connection)\n`,
    );
    for (const s of streamSessions) s.destroy();

    // 3. Another session's IssueToken during one session's burst of opens. The burst comes
    // from a child process, as an attacker's would; the victim's calls are timed from here.
    const bearer = (t: string): Interceptor => (next) => (req) => {
      req.header.set("authorization", `Bearer ${t}`);
      return next(req);
    };
    const orchestrator = createClient(VendingService, createGrpcTransport({ baseUrl: url, interceptors: [bearer(TOKEN)] }));
    const grants = [{ resource: "calendar", scopes: ["read"] }];
    const a = await orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants });
    const b = await orchestrator.startSession({ agentId: "sales-bot", userId: "bob", grants });
    const bClient = createClient(VendingService, createGrpcTransport({ baseUrl: url, interceptors: [bearer(b.sessionCredential)] }));
    const timed = async (n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await bClient.issueToken({ resource: "calendar", scopes: ["read"] });
        out.push(performance.now() - t0);
      }
      return out;
    };
    const attacker = await startAttacker(url, a.sessionCredential);
    try {
      await timed(50);
      const rows: { alone: number[]; during: number[]; cpuMsPerOpen: number; outcome: string; loopMaxAlone: number; loopMaxDuring: number; burstOnlyCpuMs: number }[] = [];
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      for (let round = 0; round < ROUNDS; round++) {
        loop.reset();
        const alone = await timed(SAMPLES);
        const loopMaxAlone = loop.max / 1e6;
        loop.reset();
        const cpu0 = process.cpuUsage();
        const done = attacker.burst(BURST);
        const during = await timed(SAMPLES);
        const outcome = await done;
        const cpu = process.cpuUsage(cpu0);
        const loopMaxDuring = loop.max / 1e6;
        await new Promise((r) => setTimeout(r, 200));
        // The same burst with no other traffic: the server's CPU per open.
        const cpu1 = process.cpuUsage();
        await attacker.burst(BURST);
        const only = process.cpuUsage(cpu1);
        rows.push({ alone, during, cpuMsPerOpen: (cpu.user + cpu.system) / 1000 / BURST, outcome, loopMaxAlone, loopMaxDuring, burstOnlyCpuMs: (only.user + only.system) / 1000 / BURST });
        // Let the burst's streams close before the next round.
        await new Promise((r) => setTimeout(r, 200));
      }
      for (const [i, r] of rows.entries()) {
        process.stdout.write(
          `  round ${i + 1}: alone p50 ${quantile(r.alone, 0.5).toFixed(2)} / p99 ${quantile(r.alone, 0.99).toFixed(2)} ms; ` +
            `during a burst of ${BURST} opens (${r.outcome}) p50 ${quantile(r.during, 0.5).toFixed(2)} / p99 ${quantile(r.during, 0.99).toFixed(2)} ms; ` +
            `longest event-loop delay ${r.loopMaxAlone.toFixed(1)} ms alone, ${r.loopMaxDuring.toFixed(1)} ms during; server CPU ${r.burstOnlyCpuMs.toFixed(3)} ms per open\n`,
        );
      }
      const med = (xs: number[]) => quantile(xs, 0.5);
      process.stdout.write(
        `another session's IssueToken, median of ${ROUNDS} rounds of ${SAMPLES} calls: alone p50 ${med(rows.map((r) => quantile(r.alone, 0.5))).toFixed(2)} / p99 ${med(rows.map((r) => quantile(r.alone, 0.99))).toFixed(2)} ms; ` +
          `during a burst of ${BURST} opens from one session p50 ${med(rows.map((r) => quantile(r.during, 0.5))).toFixed(2)} / p99 ${med(rows.map((r) => quantile(r.during, 0.99))).toFixed(2)} ms ` +
          `(longest event-loop delay ${med(rows.map((r) => r.loopMaxAlone)).toFixed(1)} ms alone, ${med(rows.map((r) => r.loopMaxDuring)).toFixed(1)} ms during; server CPU ${med(rows.map((r) => r.burstOnlyCpuMs)).toFixed(3)} ms per open of the burst)\n`,
      );
    } finally {
      attacker.stop();
    }
  } finally {
    for (const s of sessions) s.destroy();
    await server.close(1000);
    await audit.close();
    policy.close();
    keyRing.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

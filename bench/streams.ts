import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { sha256Hex } from "../src/auth/credentials.js";
import { systemClock } from "../src/clock.js";
import { DEFAULT_POLICY_DIR, loadConfig } from "../src/config/config.js";
import { openKeyRing } from "../src/keys/key-ring.js";
import { createLogger } from "../src/logging/logger.js";
import { loadPolicyEngine } from "../src/policy/engine.js";
import { MemoryRevocationList } from "../src/backends/memory/memory-revocation-list.js";
import { createCapvendServer } from "../src/server.js";
import { MemorySessionStore } from "../src/backends/memory/memory-session-store.js";
import { RENEW_JITTER_FRACTION } from "../src/streams/renewal.js";
import { runScale } from "./streams-scale.js";

const TOKEN = "bench-orchestrator-token-0123456789";
const IDLE_STREAMS = 2000;
const JITTER_STREAMS = 300;
const JITTER_TTL_SECONDS = 6;

const gc = (globalThis as { gc?: () => void }).gc;

async function heapAfterGc(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage().heapUsed;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** A server in this process (so its heap can be measured) and streams from a child process. */
export async function main(): Promise<void> {
  // $CAPVEND_BENCH_SCALE_ONLY: only the at-scale part (its own server process), e.g. for a storm.
  if (process.env.CAPVEND_BENCH_SCALE_ONLY) return runScale();
  if (!gc) process.stdout.write("(run node with --expose-gc for exact heap figures; `npm run bench` does)\n");
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-bench-"));
  // One orchestrator holds every session of the run: its quota must not cap it.
  const config = loadConfig({ CAPVEND_DATA_DIR: dataDir, CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR: String(IDLE_STREAMS + JITTER_STREAMS + 1000) });
  const clock = systemClock;
  const policy = await loadPolicyEngine({ dir: DEFAULT_POLICY_DIR, clock });
  const keyRing = await openKeyRing({ dataDir, alg: "EdDSA", clock, maxTokenTtlMs: config.maxTokenTtlMs });
  const sessions = new MemorySessionStore(clock);
  const revocations = new MemoryRevocationList(clock);
  const server = await createCapvendServer({
    settings: config,
    clock,
    logger: createLogger({ level: "silent", replica: "bench" }),
    orchestratorHashes: new Map([["dev", sha256Hex(TOKEN)]]),
    policy,
    keyRing,
    sessions,
    revocations,
    // A sink that keeps nothing, so the figure is the stream's and not the audit trail's.
    audit: { append: async () => undefined, state: { healthy: true, pending: 0 }, close: async () => undefined },
  });
  const addr = await server.listen("127.0.0.1", 0);
  const url = `http://127.0.0.1:${addr.port}`;
  const client = path.join(path.dirname(fileURLToPath(import.meta.url)), "stream-client.js");

  const run = (count: number, ttl: number | "health", onLine: (line: string) => void) => {
    const child = spawn(process.execPath, [client, url, TOKEN, String(count), String(ttl)], { stdio: ["pipe", "pipe", "inherit"] });
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", onLine);
    const next = (prefix: string) => new Promise<void>((resolve) => lines.on("line", (l) => l.startsWith(prefix) && resolve()));
    return { child, next, go: () => child.stdin!.write("go\n") };
  };

  // 1. Memory per idle stream: the server's heap before and after N open streams.
  // The sessions are opened first and measured apart, so the figure is the stream's own:
  // hub state, timers, outbox, the first token kept for renewal, and connect's HTTP/2 stream.
  const idle = run(IDLE_STREAMS, 900, () => undefined);
  await idle.next("sessions");
  const withSessions = await heapAfterGc();
  let started = Date.now();
  idle.go();
  await idle.next("ready");
  const openMs = Date.now() - started;
  const withStreams = await heapAfterGc();
  const perStream = (withStreams - withSessions) / IDLE_STREAMS;
  process.stdout.write(
    `idle streams: ${IDLE_STREAMS} opened in ${openMs} ms; server heap +${((withStreams - withSessions) / 1024 / 1024).toFixed(1)} MiB ` +
      `= ${(perStream / 1024).toFixed(1)} KiB per idle stream (hub, timers, outbox and connect's HTTP/2 stream)\n`,
  );
  idle.child.kill();
  await new Promise((r) => setTimeout(r, 500));

  // Baseline in the same run: the same number of bare connect-node server streams.
  const bare = run(IDLE_STREAMS, "health", () => undefined);
  await bare.next("sessions");
  const beforeBare = await heapAfterGc();
  bare.go();
  await bare.next("ready");
  const afterBare = await heapAfterGc();
  const perBare = (afterBare - beforeBare) / IDLE_STREAMS;
  process.stdout.write(
    `baseline: ${IDLE_STREAMS} bare grpc.health.v1 Watch streams = ${(perBare / 1024).toFixed(1)} KiB each; ` +
      `capvend's own state per idle stream ≈ ${((perStream - perBare) / 1024).toFixed(1)} KiB\n`,
  );
  bare.child.kill();
  await new Promise((r) => setTimeout(r, 500));

  // 2. Renewal jitter across a fleet started together.
  const offsets: number[] = [];
  started = Date.now();
  const fleet = run(JITTER_STREAMS, JITTER_TTL_SECONDS, (line) => {
    if (line.startsWith("renewal ")) offsets.push(Number(line.slice(8)));
  });
  await fleet.next("sessions");
  fleet.go();
  const deadline = Date.now() + JITTER_TTL_SECONDS * 1000 * 3;
  while (offsets.length < JITTER_STREAMS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  fleet.child.kill();
  offsets.sort((a, b) => a - b);
  const lead = (JITTER_TTL_SECONDS * 1000) / 3;
  process.stdout.write(
    `renewal jitter: ${offsets.length} first renewals of ${JITTER_STREAMS} streams (ttl ${JITTER_TTL_SECONDS}s, lead ${lead} ms, jitter up to ${RENEW_JITTER_FRACTION * 100}% = ${lead * RENEW_JITTER_FRACTION} ms): ` +
      `arrived before expiry by min ${quantile(offsets, 0)} / p50 ${quantile(offsets, 0.5)} / max ${offsets.at(-1)} ms; spread ${offsets.at(-1)! - offsets[0]!} ms\n`,
  );

  await server.close(1000);
  policy.close();
  keyRing.close();
  await revocations.close();
  await sessions.close();
  await rm(dataDir, { recursive: true, force: true });

  // 3. Renewals and reconnect storms at scale, in processes of their own.
  await runScale();
}

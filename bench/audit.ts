/**
 * Audit sink throughput: appends/s for 1, 16 and 64 concurrent appenders, durability "fsync"
 * vs "write", against one-at-a-time fsync (the cost of a sync per record), plus 64 appenders
 * with group commit turned off, so what batching buys is visible at equal concurrency. Each
 * row also gives the process's CPU time per append (user + system, every thread, so the
 * writes and syncs on libuv's threads count): what one record costs the issuing server.
 *
 * Each figure is the median of 5 timed runs on a fresh log. Writes go to a temporary
 * directory under $CAPVEND_BENCH_DIR or the OS temp dir; fsync figures mean nothing on tmpfs.
 * $CAPVEND_BENCH_MS sets the length of one run (default 1000 ms).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditDurability } from "../src/audit/file-sink.js";
import { createFileAuditSink } from "../src/audit/file-sink.js";
import type { AuditEvent } from "../src/audit/event.js";

const RUNS = 5;

interface Config {
  label: string;
  durability: AuditDurability;
  concurrency: number;
  maxBatchRecords?: number;
}

const CONFIGS: Config[] = [
  { label: "fsync, 1 at a time (baseline)", durability: "fsync", concurrency: 1 },
  { label: "fsync, 16 concurrent", durability: "fsync", concurrency: 16 },
  { label: "fsync, 64 concurrent", durability: "fsync", concurrency: 64 },
  { label: "fsync, 64 concurrent, no group commit", durability: "fsync", concurrency: 64, maxBatchRecords: 1 },
  { label: "write, 1 at a time", durability: "write", concurrency: 1 },
  { label: "write, 16 concurrent", durability: "write", concurrency: 16 },
  { label: "write, 64 concurrent", durability: "write", concurrency: 64 },
];

function event(i: number): AuditEvent {
  return {
    type: "token.issued",
    caller: { kind: "session", id: `ses_${i % 97}` },
    agent_id: "sales-bot",
    user_id: `user-${i % 13}`,
    session_id: `ses_${i % 97}`,
    resource: "salesforce",
    scopes: ["read", "write"],
    jti: `tok_${i.toString(36).padStart(10, "0")}`,
    exp: 1_764_300_900,
    decision: "allow",
    policy_ids: ["allow-sales-read"],
    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
  };
}

/** One timed run: appends/s and the 99th-percentile append latency in ms. */
async function run(base: string, cfg: Config, ms: number): Promise<{ rate: number; p99: number; cpuUs: number }> {
  const dir = await mkdtemp(join(base, "run-"));
  const sink = await createFileAuditSink({
    dir,
    replica: "bench",
    durability: cfg.durability,
    ...(cfg.maxBatchRecords ? { maxBatchRecords: cfg.maxBatchRecords } : {}),
  });
  const latencies: number[] = [];
  let n = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + ms;
  const loop = async () => {
    while (performance.now() < deadline) {
      const s = performance.now();
      await sink.append(event(n++));
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: cfg.concurrency }, loop));
  const elapsed = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await sink.close();
  await rm(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    rate: (latencies.length / elapsed) * 1000,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
    cpuUs: (cpu.user + cpu.system) / Math.max(1, latencies.length),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Runs every configuration and prints a table. */
export async function main(): Promise<void> {
  const ms = Number(process.env.CAPVEND_BENCH_MS ?? 1000);
  const base = await mkdtemp(join(process.env.CAPVEND_BENCH_DIR ?? tmpdir(), "capvend-audit-bench-"));
  try {
    await run(base, CONFIGS[2]!, Math.min(ms, 300)); // warm-up: JIT, page cache
    const rows: { label: string; rate: number; p99: number; cpuUs: number }[] = [];
    for (const cfg of CONFIGS) {
      const results = [];
      for (let i = 0; i < RUNS; i++) results.push(await run(base, cfg, ms));
      rows.push({ label: cfg.label, rate: median(results.map((r) => r.rate)), p99: median(results.map((r) => r.p99)), cpuUs: median(results.map((r) => r.cpuUs)) });
    }
    const baseline = rows[0]!.rate;
    const out = [
      `audit sink, ${RUNS} runs of ${ms} ms each (median), log in ${base}`,
      `${"configuration".padEnd(40)} ${"appends/s".padStart(10)} ${"vs baseline".padStart(12)} ${"p99 ms".padStart(8)} ${"CPU µs/append".padStart(14)}`,
      ...rows.map(
        (r) =>
          `${r.label.padEnd(40)} ${Math.round(r.rate).toString().padStart(10)} ${`${(r.rate / baseline).toFixed(1)}x`.padStart(12)} ${r.p99.toFixed(2).padStart(8)} ${r.cpuUs.toFixed(1).padStart(14)}`,
      ),
    ];
    console.log(out.join("\n"));
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

/**
 * Issuance throughput: IssueToken calls/s over a real HTTP/2 server, from several concurrent
 * callers, with the file audit sink (durability "fsync", then "write"), with a sink that keeps
 * nothing, and with that no-op sink plus telemetry (as configured with no exporter: ids only;
 * and with every span recorded, redacted and batched to an exporter that discards them), so the
 * cost of the audit trail and of telemetry can each be read off. Raw signing speed
 * (minter.mint in a loop) is measured in the same run as the ceiling.
 *
 * Each variant's server runs in a process of its own (this file with "server <variant>") and
 * its callers in another ("client <url>"), so they do not share an event loop and one
 * variant's process-wide state (the async context manager) cannot slow another. The variants'
 * runs are interleaved; each figure is the median of RUNS runs of RUN_MS. Audit files go under $CAPVEND_BENCH_DIR or the OS temp
 * dir (fsync figures mean nothing on tmpfs). $CAPVEND_BENCH_MS sets RUN_MS (default 2000).
 */
import { V8_WASM_INLINING_WORKAROUND } from "../src/policy/v8-workaround.js";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ExportResultCode } from "@opentelemetry/core";
import { BatchSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { createFileAuditSink, type AuditDurability } from "../src/audit/file-sink.js";
import type { AuditSink } from "../src/audit/sink.js";
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
import { createTelemetry, type Telemetry } from "../src/telemetry/telemetry.js";
import { createMinter } from "../src/tokens/mint.js";

const TOKEN = "bench-orchestrator-token-0123456789";
const RUNS = 5;
const RUN_MS = Number(process.env.CAPVEND_BENCH_MS ?? 2000);
const WARMUP_MS = 1000;
/** Callers in flight at once, spread over CONNECTIONS HTTP/2 connections. */
const CONCURRENCY = 32;
const CONNECTIONS = 4;

interface Variant {
  key: string;
  label: string;
  audit: "fsync" | "write" | "none";
  /** "off": no telemetry object; "ids": createTelemetry() with no exporter; "export": spans batched to a discarding exporter. */
  telemetry: "off" | "ids" | "export";
}

const VARIANTS: Variant[] = [
  { key: "fsync", label: "file audit, fsync (default)", audit: "fsync", telemetry: "off" },
  { key: "write", label: "file audit, write", audit: "write", telemetry: "off" },
  { key: "none", label: "no-op audit sink", audit: "none", telemetry: "off" },
  { key: "ids", label: "no-op sink + telemetry, no exporter", audit: "none", telemetry: "ids" },
  { key: "export", label: "no-op sink + spans exported", audit: "none", telemetry: "export" },
];

/** Takes every span and drops it: the cost of recording, redacting and batching, without a network. */
const DISCARD: SpanExporter = {
  export: (_spans, done) => done({ code: ExportResultCode.SUCCESS }),
  shutdown: async () => undefined,
};

const NOOP_SINK: AuditSink = { append: async () => undefined, state: { healthy: true, pending: 0 }, close: async () => undefined };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const fmt = (x: number) => Math.round(x).toLocaleString("en-US").padStart(8);

/** tokens/s of minter.mint alone: what issuance could reach with no RPC, policy or audit. */
async function signingBaseline(dataDir: string): Promise<number[]> {
  const keyRing = await openKeyRing({ dataDir, alg: "EdDSA", clock: systemClock, maxTokenTtlMs: 60 * 60 * 1000 });
  const minter = createMinter({ keyRing, issuer: "https://capvend.local", clock: systemClock });
  const mint = () => minter.mint({ agentId: "sales-bot", userId: "alice", sessionId: "ses_bench", resource: "salesforce", scopes: ["read"], expiresAtMs: Date.now() + 15 * 60 * 1000 });
  const rate = (ms: number) => {
    let n = 0;
    const start = performance.now();
    while (performance.now() - start < ms) {
      for (let i = 0; i < 64; i++) mint();
      n += 64;
    }
    return n / ((performance.now() - start) / 1000);
  };
  rate(300);
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) out.push(rate(RUN_MS / 2));
  keyRing.close();
  return out;
}

/** A child process of this file, spoken to by lines on stdin and stdout. */
function child(args: string[]) {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: proc.stdout! });
  const waiting: ((line: string) => void)[] = [];
  const queued: string[] = [];
  lines.on("line", (l) => (waiting.length > 0 ? waiting.shift()!(l) : queued.push(l)));
  const exited = new Promise<void>((r) => proc.on("exit", () => r()));
  return {
    /** The next line it prints; rejects if it prints "failed …" or exits first. */
    next(): Promise<string> {
      const line = queued.length > 0 ? Promise.resolve(queued.shift()!) : new Promise<string>((r) => waiting.push(r));
      return Promise.race([line, exited.then(() => Promise.reject(new Error(`bench ${args[0]} exited`)))]).then((l) => {
        if (l.startsWith("failed")) throw new Error(`bench ${args[0]}: ${l}`);
        return l;
      });
    },
    send: (line: string) => proc.stdin!.write(`${line}\n`),
    async stop() {
      proc.stdin!.end();
      await exited;
    },
  };
}

/**
 * The server role: one variant in a process of its own, so what one variant turns on (the
 * async context manager is process-wide) cannot slow another. Prints "listening <url>", stops
 * when stdin closes.
 */
async function serve(key: string): Promise<void> {
  const v = VARIANTS.find((x) => x.key === key)!;
  const dataDir = await mkdtemp(path.join(process.env.CAPVEND_BENCH_DIR ?? os.tmpdir(), "capvend-issuance-bench-"));
  const config = loadConfig({ CAPVEND_DATA_DIR: dataDir });
  const clock = systemClock;
  const policy = await loadPolicyEngine({ dir: DEFAULT_POLICY_DIR, clock });
  const keyRing = await openKeyRing({ dataDir, alg: "EdDSA", clock, maxTokenTtlMs: config.maxTokenTtlMs });
  const audit = v.audit === "none" ? NOOP_SINK : await createFileAuditSink({ dir: dataDir, replica: "bench", durability: v.audit as AuditDurability });
  const telemetry: Telemetry | undefined =
    v.telemetry === "off"
      ? undefined
      : createTelemetry({ serviceName: "capvend-bench", spanProcessors: v.telemetry === "export" ? [new BatchSpanProcessor(DISCARD)] : [] });
  const server = await createCapvendServer({
    settings: config,
    clock,
    logger: createLogger({ level: "silent", replica: "bench" }),
    orchestratorHashes: new Map([["dev", sha256Hex(TOKEN)]]),
    policy,
    keyRing,
    sessions: new MemorySessionStore(clock),
    revocations: new MemoryRevocationList(clock),
    audit,
    telemetry,
  });
  const addr = await server.listen("127.0.0.1", 0);
  process.stdout.write(`listening http://127.0.0.1:${addr.port}\n`);
  process.stdin.resume();
  await new Promise((r) => process.stdin.on("end", r));
  await server.close(1000);
  await telemetry?.shutdown();
  await audit.close();
  policy.close();
  keyRing.close();
  await rm(dataDir, { recursive: true, force: true });
  process.exit(0);
}

/**
 * Runs the benchmark and prints calls/s (median, min, max) per variant, and the ratios. The
 * variants' runs are interleaved (one run of each, RUNS times), so drift on a shared machine
 * hits them alike.
 */
export async function main(): Promise<void> {
  const base = await mkdtemp(path.join(process.env.CAPVEND_BENCH_DIR ?? os.tmpdir(), "capvend-issuance-bench-"));
  const procs: ReturnType<typeof child>[] = [];
  try {
    process.stdout.write(
      `issuance benchmark: IssueToken over HTTP/2 (Connect protocol), ${CONCURRENCY} callers on ${CONNECTIONS} connections; ` +
        `server and callers in separate processes; ${RUNS} interleaved runs x ${RUN_MS} ms; node ${process.version} ${V8_WASM_INLINING_WORKAROUND}, ${os.cpus().length} cpus\n`,
    );
    const sign = await signingBaseline(path.join(base, "sign"));
    const clients = new Map<string, ReturnType<typeof child>>();
    for (const v of VARIANTS) {
      const server = child(["server", v.key]);
      procs.push(server);
      const url = (await server.next()).slice("listening ".length);
      const client = child(["client", url]);
      procs.push(client);
      await client.next(); // "ready": sessions open, warmed up
      clients.set(v.key, client);
    }
    const rates = new Map<string, number[]>(VARIANTS.map((v) => [v.key, []]));
    for (let i = 0; i < RUNS; i++) {
      for (const v of VARIANTS) {
        const c = clients.get(v.key)!;
        c.send("run");
        rates.get(v.key)!.push(Number((await c.next()).slice("run ".length)));
      }
    }
    process.stdout.write(`${"variant".padEnd(36)}   median       min       max  calls/s\n`);
    const row = (label: string, xs: number[]) =>
      process.stdout.write(`${label.padEnd(36)} ${fmt(median(xs))}  ${fmt(Math.min(...xs))}  ${fmt(Math.max(...xs))}\n`);
    row("raw signing (minter.mint, 1 core)", sign);
    for (const v of VARIANTS) row(v.label, rates.get(v.key)!);
    const m = (k: string) => median(rates.get(k)!);
    const none = m("none");
    process.stdout.write(
      `ratios (median): fsync/no-op ${(m("fsync") / none).toFixed(2)}, write/no-op ${(m("write") / none).toFixed(2)}, ` +
        `telemetry no exporter/off ${(m("ids") / none).toFixed(2)}, spans exported/off ${(m("export") / none).toFixed(2)}, ` +
        `no-op issuance/raw signing ${(none / median(sign)).toFixed(3)}\n`,
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await rm(base, { recursive: true, force: true });
  }
}

/**
 * The caller role: opens a session per caller, warms up, prints "ready"; then each "run" line
 * on stdin is one timed run, answered with "run <calls/s>". Ends when stdin closes.
 */
async function client(url: string): Promise<void> {
  const bearer = (token: string): Interceptor => (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transports = Array.from({ length: CONNECTIONS }, () => createConnectTransport({ baseUrl: url, httpVersion: "2" }));
  const orchestrator = createClient(VendingService, createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors: [bearer(TOKEN)] }));
  // Callers share the connections and send their own session credential per call.
  const callers = await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, i) => {
      const s = await orchestrator.startSession({ agentId: "sales-bot", userId: `user-${i}`, grants: [{ resource: "salesforce", scopes: ["read", "write"] }] });
      const c = createClient(VendingService, transports[i % CONNECTIONS]!);
      const headers = { authorization: `Bearer ${s.sessionCredential}` };
      return () => c.issueToken({ resource: "salesforce", scopes: ["read"] }, { headers });
    }),
  );
  let stop = 0;
  let count = 0;
  let failed: unknown;
  const loop = async (issue: (typeof callers)[number]) => {
    while (performance.now() < stop) {
      try {
        await issue();
        count++;
      } catch (err) {
        failed ??= err;
        return;
      }
    }
  };
  const run = async (ms: number) => {
    count = 0;
    const start = performance.now();
    stop = start + ms;
    await Promise.all(callers.map(loop));
    return count / ((performance.now() - start) / 1000);
  };
  const report = (line: string) => process.stdout.write(failed === undefined ? line : `failed ${(failed as Error).message}\n`);
  await run(WARMUP_MS);
  report("ready\n");
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === "run") report(`run ${(await run(RUN_MS)).toFixed(1)}\n`);
  }
  process.exit(0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === "client") await client(process.argv[3]!);
  else if (process.argv[2] === "server") await serve(process.argv[3]!);
  else await main();
}

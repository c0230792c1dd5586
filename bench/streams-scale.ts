/**
 * Part of `npm run bench -- streams`: renewals and reconnect storms at scale.
 *
 * A `capvend serve` process with its defaults (file audit with fsync), pinned to core 1, and
 * a client process pinned to core 0 that holds SCALE_STREAMS WatchSession streams (one per
 * session) over SCALE_CONNECTIONS HTTP/2 connections:
 *
 * 1. open storm: every stream opened at once; the time until the last one has its first
 *    token, and how many failed;
 * 2. renewals: with a RENEW_TTL_S token TTL every stream renews every few seconds; renewals
 *    per second of server CPU (all threads, /proc/<pid>/stat) against raw signing per
 *    CPU-second measured in the same run;
 * 3. reconnect storm: every stream dropped and reopened at once on new connections with
 *    `resume_token` (as when a replica dies and its streams move): time to the last first
 *    token, failures.
 *
 * $CAPVEND_BENCH_STREAMS overrides the stream count (default 10,000).
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from "node:child_process";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import * as net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { systemClock } from "../src/clock.js";
import { VendingService } from "../src/gen/capvend/v1/vending_pb.js";
import { openKeyRing } from "../src/keys/key-ring.js";
import { SERVE_NODE_FLAGS } from "../src/node-flags.js";
import { createMinter } from "../src/tokens/mint.js";
import { freePort } from "../test/helpers/nats-server.js";
import { rssBytes } from "../test/helpers/process-memory.js";
import { newestProfile, printProfile } from "./profile.js";

const ORCHESTRATOR_TOKEN = "bench-orchestrator-token-0123456789";
const SCALE_STREAMS = Number(process.env.CAPVEND_BENCH_STREAMS ?? 10_000);
const SCALE_CONNECTIONS = 20;
const RENEW_TTL_S = 6;
const RENEW_WINDOW_MS = 10_000;
const here = fileURLToPath(import.meta.url);
const repoRoot = path.resolve(path.dirname(here), "..", "..");
const serverNode = process.env.CAPVEND_BENCH_NODE ?? process.execPath;
/**
 * The server runs with the Node flags `capvend serve` ships with (src/node-flags.ts), then
 * $CAPVEND_BENCH_SERVER_FLAGS (space-separated, e.g. "--trace-gc", or
 * "--max-semi-space-size=16" for Node's default young generation).
 */
const serverFlags = (process.env.CAPVEND_BENCH_SERVER_FLAGS ?? "").split(" ").filter((f) => f !== "");
const hasTaskset = spawnSync("taskset", ["-c", "0", "true"]).status === 0;
const ticks = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100);

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / ticks;
}


/**
 * Samples the resident memory of the server and the client every 100 ms: the peak per phase,
 * an optional trace ($CAPVEND_BENCH_MEM_LOG: "ms server_rss client_rss" lines), and a stop
 * ($CAPVEND_BENCH_MAX_RSS_MB, default 6,000) that kills the server rather than the machine.
 */
function watchMemory(server: number, client: number) {
  const log = process.env.CAPVEND_BENCH_MEM_LOG ? openSync(process.env.CAPVEND_BENCH_MEM_LOG, "w") : undefined;
  const capBytes = Number(process.env.CAPVEND_BENCH_MAX_RSS_MB ?? 6000) * 1024 * 1024;
  const start = performance.now();
  let peakServer = 0;
  let peakClient = 0;
  let overCap = false;
  const timer = setInterval(() => {
    const s = rssBytes(server);
    const c = rssBytes(client);
    peakServer = Math.max(peakServer, s);
    peakClient = Math.max(peakClient, c);
    if (log !== undefined) writeSync(log, `${Math.round(performance.now() - start)} ${s} ${c}\n`);
    if (s > capBytes && !overCap) {
      overCap = true;
      process.stderr.write(`server RSS ${(s / 1048576).toFixed(0)} MiB is over the cap; killing it\n`);
      process.kill(server, "SIGKILL");
    }
  }, 100);
  return {
    /** Peak RSS since the last call, in bytes; starts the next phase's peak. */
    phasePeak(): { server: number; client: number } {
      const p = { server: Math.max(peakServer, rssBytes(server)), client: Math.max(peakClient, rssBytes(client)) };
      peakServer = rssBytes(server);
      peakClient = rssBytes(client);
      return p;
    },
    stop() {
      clearInterval(timer);
      if (log !== undefined) closeSync(log);
    },
  };
}

const mib = (b: number) => `${Math.round(b / 1048576).toLocaleString("en-US")} MiB`;

function pinned(core: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, stdout: "pipe" | number = "pipe"): ChildProcess {
  const stdio: StdioOptions = ["pipe", stdout, "inherit"];
  return hasTaskset ? spawn("taskset", ["-c", core, cmd, ...args], { env, stdio }) : spawn(cmd, args, { env, stdio });
}

/** SIGTERM, then SIGKILL after `timeoutMs`; true when it exited within the timeout. */
async function stopServer(server: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (server.exitCode !== null || server.signalCode !== null) return true;
  const exited = new Promise<void>((resolve) => server.once("exit", () => resolve()));
  server.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const inTime = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
  clearTimeout(timer);
  if (!inTime) {
    server.kill("SIGKILL");
    await exited;
  }
  return inTime;
}

/** Raw signing on one core: tokens per CPU-second of `minter.mint` alone. */
async function rawSigningPerCpuSecond(dataDir: string): Promise<number> {
  const keyRing = await openKeyRing({ dataDir, alg: "EdDSA", clock: systemClock, maxTokenTtlMs: 3_600_000 });
  const minter = createMinter({ keyRing, issuer: "https://capvend.local", clock: systemClock });
  const rates: number[] = [];
  for (let run = 0; run < 4; run++) {
    const cpu0 = process.cpuUsage();
    let n = 0;
    const start = performance.now();
    while (performance.now() - start < 700) {
      for (let i = 0; i < 64; i++) minter.mint({ agentId: "sales-bot", userId: "alice", sessionId: "ses_bench", resource: "calendar", scopes: ["read"], expiresAtMs: Date.now() + 60_000 });
      n += 64;
    }
    const cpu = process.cpuUsage(cpu0);
    rates.push(n / ((cpu.user + cpu.system) / 1e6));
  }
  keyRing.close();
  return rates.sort((a, b) => a - b)[1]!;
}

/** Runs the three phases; prints one line each. */
export async function runScale(): Promise<void> {
  /** The renewal phase's time span (µs, the monotonic clock of V8's profiles). */
  let renewWindow: [number, number] | undefined;
  const dataDir = await mkdtemp(path.join(process.env.CAPVEND_BENCH_DIR ?? os.tmpdir(), "capvend-scale-"));
  const raw = await rawSigningPerCpuSecond(path.join(dataDir, "raw"));
  const port = await freePort();
  // $CAPVEND_PROFILE_DIR: profile the server (node --cpu-prof) into that directory, and print
  // where its CPU went during the renewal phase.
  const profileDir = process.env.CAPVEND_PROFILE_DIR;
  const profile = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];
  // The server's log goes to a file ($CAPVEND_BENCH_SERVER_LOG, else one in the run's directory):
  // a pipe nobody reads would fill, and the logger would then hold every later line in memory.
  const serverLog = openSync(process.env.CAPVEND_BENCH_SERVER_LOG ?? path.join(dataDir, "server.log"), "a");
  const server = pinned("1", serverNode, [...SERVE_NODE_FLAGS, ...serverFlags, ...profile, path.join(repoRoot, "dist", "src", "cli.js"), "serve"], {
    ...process.env,
    CAPVEND_LISTEN: `127.0.0.1:${port}`,
    CAPVEND_DATA_DIR: path.join(dataDir, "server"),
    CAPVEND_ORCHESTRATOR_TOKEN: ORCHESTRATOR_TOKEN,
    CAPVEND_LOG_LEVEL: "warn",
    CAPVEND_SHUTDOWN_GRACE: "1s",
    // One orchestrator holds every session of the run: its quota must not cap the run.
    CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR: String(SCALE_STREAMS + 1000),
  }, serverLog);
  closeSync(serverLog);
  const client = pinned("0", process.execPath, [here, "client", `http://127.0.0.1:${port}`], process.env);
  const lines = createInterface({ input: client.stdout! });
  const queued: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  lines.on("line", (l) => (waiting.length > 0 ? waiting.shift()!(l) : queued.push(l)));
  const next = () => (queued.length > 0 ? Promise.resolve(queued.shift()!) : new Promise<string>((r) => waiting.push(r)));
  const ask = async (cmd: string) => {
    client.stdin!.write(`${cmd}\n`);
    const line = await next();
    if (line.startsWith("failed")) throw new Error(line);
    return JSON.parse(line) as Record<string, number> & { firstError?: string };
  };
  let memory: ReturnType<typeof watchMemory> | undefined;
  try {
    // Wait for the server, then create the sessions.
    for (let i = 0; ; i++) {
      const ok = await new Promise<boolean>((resolve) => net.connect(port, "127.0.0.1").once("connect", function (this: net.Socket) { this.destroy(); resolve(true); }).once("error", () => resolve(false)));
      if (ok) break;
      if (i > 200) throw new Error("capvend did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
    const pid = server.pid!;
    memory = watchMemory(pid, client.pid!);
    const sessions = await ask(`sessions ${SCALE_STREAMS}`);
    memory.phasePeak();
    let cpu0 = cpuSeconds(pid);
    const open = await ask("open");
    const openCpu = cpuSeconds(pid) - cpu0;
    let peak = memory.phasePeak();
    process.stdout.write(
      `open storm: ${SCALE_STREAMS} WatchSession opens at once over ${SCALE_CONNECTIONS} connections (${sessions.ms} ms to create the sessions${sessions.retries > 0 ? `, ${sessions.retries} retried after UNAVAILABLE` : ""}): ` +
        `${open.ok} with a first token, ${open.failed} failed${open.failed > 0 ? ` (e.g. ${open.firstError})` : ""}; last first token after ${open.ms} ms; server CPU ${openCpu.toFixed(2)} s; ` +
        `peak RSS server ${mib(peak.server)}, client ${mib(peak.client)}\n`,
    );
    if (!process.env.CAPVEND_BENCH_SKIP_RENEWALS) {
      cpu0 = cpuSeconds(pid);
      const renewFrom = Number(process.hrtime.bigint() / 1000n);
      const renew = await ask(`renew ${RENEW_WINDOW_MS}`);
      const renewCpu = cpuSeconds(pid) - cpu0;
      renewWindow = [renewFrom, Number(process.hrtime.bigint() / 1000n)];
      const perCpu = renew.renewals / renewCpu;
      peak = memory.phasePeak();
      process.stdout.write(
        `renewals: ${SCALE_STREAMS} streams, token TTL ${RENEW_TTL_S} s: ${renew.renewals} renewals in ${RENEW_WINDOW_MS} ms (${renew.late} arrived after the token they replaced expired), ` +
          `server CPU ${renewCpu.toFixed(2)} s = ${Math.round(perCpu).toLocaleString("en-US")} renewals per CPU-second; ` +
          `raw signing ${Math.round(raw).toLocaleString("en-US")} per CPU-second; ratio ${(perCpu / raw).toFixed(2)}; peak RSS server ${mib(peak.server)}\n`,
      );
    }
    cpu0 = cpuSeconds(pid);
    const storm = await ask("reconnect");
    const stormCpu = cpuSeconds(pid) - cpu0;
    peak = memory.phasePeak();
    process.stdout.write(
      `reconnect storm: ${SCALE_STREAMS} streams dropped and resumed at once (resume_token) on new connections: ${storm.ok} with a first token, ` +
        `${storm.failed} failed${storm.failed > 0 ? ` (e.g. ${storm.firstError})` : ""}; last first token after ${storm.ms} ms; server CPU ${stormCpu.toFixed(2)} s; ` +
        `peak RSS server ${mib(peak.server)}, client ${mib(peak.client)}\n`,
    );
    // Shutdown with every stream still open: SIGTERM to exit (grace 1 s).
    const exitFrom = performance.now();
    const exited = await stopServer(server, 30_000);
    process.stdout.write(
      exited
        ? `shutdown after the storm: SIGTERM to exit ${Math.round(performance.now() - exitFrom)} ms (${SCALE_STREAMS} streams open, grace 1 s)\n`
        : `shutdown after the storm: **the server had not exited 30 s after SIGTERM** (killed)\n`,
    );
  } finally {
    memory?.stop();
    client.stdin!.end();
    client.kill();
    await stopServer(server, 30_000);
    await rm(dataDir, { recursive: true, force: true });
  }
  if (profileDir && renewWindow) {
    printProfile(await newestProfile(profileDir), renewWindow, `renewals, ${SCALE_STREAMS} streams (the renewal phase only)`);
    process.stdout.write(`profile kept in ${profileDir} (renewal phase ${renewWindow[0]}–${renewWindow[1]} µs)\n`);
  }
}

// ---- client role ----

interface Held {
  credential: string;
  resumeToken: string;
  expiresAtMs: number;
  firstToken: boolean;
}

async function clientRole(url: string): Promise<void> {
  const bearer = (token: string): Interceptor => (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const orchestrators = Array.from({ length: 8 }, () => createClient(VendingService, createGrpcTransport({ baseUrl: url, interceptors: [bearer(ORCHESTRATOR_TOKEN)] })));
  const held: Held[] = [];
  let renewals = 0;
  let late = 0;
  let sessionRetries = 0;
  let aborts: AbortController[] = [];
  const grants = [{ resource: "calendar", scopes: ["read"], ttl: { seconds: BigInt(RENEW_TTL_S) } }];

  /** Opens every stream at once on fresh connections; resolves when all have a first token or failed. */
  const openAll = (resume: boolean) => {
    for (const a of aborts) a.abort();
    aborts = [];
    const transports = Array.from({ length: SCALE_CONNECTIONS }, () => createGrpcTransport({ baseUrl: url }));
    const start = performance.now();
    let ok = 0;
    let failed = 0;
    let firstError: string | undefined;
    let lastFirst = 0;
    return new Promise<Record<string, number | string | undefined>>((resolve) => {
      const settle = () => {
        if (ok + failed === held.length) resolve({ ok, failed, ms: Math.round(lastFirst), firstError });
      };
      held.forEach((h, i) => {
        const abort = new AbortController();
        aborts.push(abort);
        h.firstToken = false;
        const runtime = createClient(VendingService, transports[i % SCALE_CONNECTIONS]!);
        void (async () => {
          try {
            for await (const m of runtime.watchSession(
              { grants, resumeToken: resume ? h.resumeToken : "" },
              { signal: abort.signal, headers: { authorization: `Bearer ${h.credential}` } },
            )) {
              if (m.resumeToken) h.resumeToken = m.resumeToken;
              if (m.event.case !== "tokenIssued") continue;
              const exp = Number(m.event.value.token!.expiresAt!.seconds) * 1000;
              if (!h.firstToken) {
                h.firstToken = true;
                ok++;
                lastFirst = performance.now() - start;
                settle();
              } else {
                renewals++;
                if (Date.now() > h.expiresAtMs) late++;
              }
              h.expiresAtMs = exp;
            }
          } catch (err) {
            if (abort.signal.aborted) return;
            if (!h.firstToken) {
              failed++;
              firstError ??= (err as Error).message;
              settle();
            }
          }
        })();
      });
    });
  };

  // As an orchestrator would: UNAVAILABLE says retry (a journal write slowed by a shared disk).
  const startSession = async (client: (typeof orchestrators)[number], i: number) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await client.startSession({ agentId: "sales-bot", userId: `user-${i}`, grants });
      } catch (err) {
        if (!(err instanceof ConnectError) || err.code !== Code.Unavailable || attempt >= 5) throw err;
        sessionRetries++;
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
  };
  const reply = (o: unknown) => process.stdout.write(`${JSON.stringify(o, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, arg] = line.split(" ");
    try {
      if (cmd === "sessions") {
        const start = performance.now();
        const n = Number(arg);
        let next = 0;
        await Promise.all(
          Array.from({ length: 64 }, async (_, w) => {
            while (next < n) {
              const i = next++;
              const s = await startSession(orchestrators[w % orchestrators.length]!, i);
              held.push({ credential: s.sessionCredential, resumeToken: "", expiresAtMs: 0, firstToken: false });
            }
          }),
        );
        reply({ ms: Math.round(performance.now() - start), retries: sessionRetries });
      } else if (cmd === "open") {
        reply(await openAll(false));
      } else if (cmd === "renew") {
        renewals = 0;
        late = 0;
        await new Promise((r) => setTimeout(r, Number(arg)));
        reply({ renewals, late });
      } else if (cmd === "reconnect") {
        reply(await openAll(true));
      }
    } catch (err) {
      process.stdout.write(`failed ${(err as Error).message}\n`);
    }
  }
  for (const a of aborts) a.abort();
  process.exit(0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === "client") {
  await clientRole(process.argv[3]!);
}

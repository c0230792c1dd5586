/**
 * `npm run bench -- peer`: capvend against the server a user would pick instead, oidc-provider
 * 8.8.1 issuing JWT access tokens (EdDSA) with `client_credentials`.
 *
 * Each server runs as a process of its own, pinned to one core with `taskset` when present
 * (core 1), and the load comes from another process pinned to the other core (core 0). capvend
 * runs as `capvend serve` with its defaults: the durable file audit log (fsync), telemetry as
 * the environment configures it (no exporter), nothing turned off. Targets:
 *
 * - oidc-provider: HTTP/1.1 form POST to /token, HTTP_CONNECTIONS keep-alive connections;
 * - capvend Connect: `IssueToken` as Connect JSON over HTTP/1.1, the same connections;
 * - capvend gRPC: `IssueToken` with @grpc/grpc-js, GRPC_IN_FLIGHT calls on one connection;
 * - the floor (bench/peer-floor.ts), under the same two loads: Node's own HTTP/1.1 and HTTP/2
 *   servers around capvend's minter and nothing else. It is what the transport and the
 *   signature cost on this machine, so it shows how much of the 2x budget is left for
 *   authentication, policy, the audit record and telemetry.
 *
 * Every server runs with the Node flags `capvend serve` ships with (src/node-flags.ts), so
 * none gains from a heap setting the others lack.
 *
 * A figure is tokens per second of server CPU: user + system time of every thread, read from
 * /proc/<pid>/stat before and after each run. The targets' runs are interleaved, RUNS times;
 * each row is the median. Any error from either server fails the benchmark.
 *
 * $CAPVEND_BENCH_NODE runs the servers with another node binary (e.g. Node 24);
 * $CAPVEND_BENCH_MS sets the run length (default 4000 ms); $CAPVEND_BENCH_RUNS the runs (5).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import * as http from "node:http";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  IssueTokenRequestSchema,
  IssueTokenResponseSchema,
  VendingService,
  type IssueTokenRequest,
  type IssueTokenResponse,
} from "../src/gen/capvend/v1/vending_pb.js";
import { SERVE_NODE_FLAGS } from "../src/node-flags.js";
import { freePort } from "../test/helpers/nats-server.js";
import { floorServer } from "./peer-floor.js";

/** Imported by name at run time: it is a devDependency without type declarations. */
const OIDC_PROVIDER = "oidc-provider";
const ORCHESTRATOR_TOKEN = "bench-orchestrator-token-0123456789";
const CLIENT_ID = "bench-client";
const CLIENT_SECRET = "bench-client-secret-0123456789abcdef";
const RUNS = Number(process.env.CAPVEND_BENCH_RUNS ?? 5);
const RUN_MS = Number(process.env.CAPVEND_BENCH_MS ?? 4000);
const WARMUP_MS = 1500;
/** Keep-alive HTTP/1.1 connections, one caller each. */
const HTTP_CONNECTIONS = 32;
/** gRPC calls in flight on one HTTP/2 connection. */
const GRPC_IN_FLIGHT = 64;
const SERVER_CORE = "1";
const LOAD_CORE = "0";
const ISSUE_PATH = `/${VendingService.typeName}/${VendingService.method.issueToken.name}`;

const here = fileURLToPath(import.meta.url);
const repoRoot = path.resolve(path.dirname(here), "..", "..");
const serverNode = process.env.CAPVEND_BENCH_NODE ?? process.execPath;
const hasTaskset = spawnSync("taskset", ["-c", "0", "true"]).status === 0;
const ticksPerSecond = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100);

/** A process pinned to `core` when taskset exists. */
function pinned(core: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const [file, argv] = hasTaskset ? ["taskset", ["-c", core, cmd, ...args]] : [cmd, args];
  return spawn(file, argv, { env, stdio: ["pipe", "pipe", "inherit"] });
}

/** CPU seconds (user + system, all threads) a process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

/** Resolves with the first line of `proc`'s stdout that `match` accepts. */
function waitForLine(proc: ChildProcess, match: (line: string) => boolean, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    const onExit = () => reject(new Error(`${what} exited before it was ready`));
    proc.once("exit", onExit);
    lines.on("line", (line) => {
      if (!match(line)) return;
      proc.off("exit", onExit);
      lines.removeAllListeners("line");
      proc.stdout!.resume();
      resolve(line);
    });
  });
}

interface Server {
  name: string;
  proc: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

async function startOidc(): Promise<Server> {
  const port = await freePort();
  const proc = pinned(SERVER_CORE, serverNode, [...SERVE_NODE_FLAGS, here, "oidc-server", String(port)], { ...process.env, NODE_ENV: "production" });
  await waitForLine(proc, (l) => l.startsWith("listening"), "oidc-provider");
  return { name: "oidc-provider", proc, url: `http://127.0.0.1:${port}`, stop: () => stopProc(proc) };
}

async function startFloor(): Promise<Server> {
  const port = await freePort();
  const proc = pinned(SERVER_CORE, serverNode, [...SERVE_NODE_FLAGS, here, "floor-server", String(port)]);
  await waitForLine(proc, (l) => l.startsWith("listening"), "floor server");
  return { name: "floor", proc, url: `http://127.0.0.1:${port}`, stop: () => stopProc(proc) };
}

async function startCapvend(dataDir: string): Promise<Server> {
  const port = await freePort();
  const proc = pinned(SERVER_CORE, serverNode, [...SERVE_NODE_FLAGS, path.join(repoRoot, "dist", "src", "cli.js"), "serve"], {
    ...process.env,
    CAPVEND_LISTEN: `127.0.0.1:${port}`,
    CAPVEND_DATA_DIR: dataDir,
    CAPVEND_ORCHESTRATOR_TOKEN: ORCHESTRATOR_TOKEN,
    CAPVEND_LOG_LEVEL: "info",
  });
  await waitForLine(proc, (l) => l.includes("capvend listening"), "capvend");
  return { name: "capvend", proc, url: `http://127.0.0.1:${port}`, stop: () => stopProc(proc) };
}

function stopProc(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.once("exit", () => resolve());
    proc.kill("SIGTERM");
  });
}

interface RunResult {
  tokens: number;
  errors: number;
  firstError?: string;
  p50Ms: number;
  p99Ms: number;
  seconds: number;
}

/** One load process, driven by lines: "run" → one timed run, answered with a JSON RunResult. */
function startLoad(kind: string, url: string) {
  const proc = pinned(LOAD_CORE, process.execPath, [here, "load", kind, url]);
  const lines = createInterface({ input: proc.stdout! });
  const waiting: ((l: string) => void)[] = [];
  lines.on("line", (l) => waiting.shift()?.(l));
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const onExit = () => reject(new Error(`load ${kind} exited`));
      proc.once("exit", onExit);
      waiting.push((l) => {
        proc.off("exit", onExit);
        resolve(l);
      });
    });
  return {
    ready: next(),
    async run(): Promise<RunResult> {
      const line = next();
      proc.stdin!.write("run\n");
      return JSON.parse(await line) as RunResult;
    },
    stop: () => stopProc(proc),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Target {
  label: string;
  server: Server;
  load: ReturnType<typeof startLoad>;
  rows: { rate: number; perCpu: number; p50: number; p99: number }[];
}

export async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(process.env.CAPVEND_BENCH_DIR ?? os.tmpdir(), "capvend-peer-bench-"));
  const servers: Server[] = [];
  const loads: ReturnType<typeof startLoad>[] = [];
  const serverVersion = spawnSync(serverNode, ["--version"], { encoding: "utf8" }).stdout.trim();
  process.stdout.write(
    `peer benchmark: servers on ${serverVersion} pinned to core ${SERVER_CORE}, load on core ${LOAD_CORE} (taskset ${hasTaskset ? "yes" : "absent: unpinned"}); ` +
      `${RUNS} interleaved runs x ${RUN_MS} ms; HTTP/1.1 ${HTTP_CONNECTIONS} connections, gRPC ${GRPC_IN_FLIGHT} in flight on 1 connection; ` +
      `${os.cpus().length} cpus, load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}\n`,
  );
  try {
    const oidc = await startOidc();
    servers.push(oidc);
    const capvend = await startCapvend(dataDir);
    servers.push(capvend);
    const floor = await startFloor();
    servers.push(floor);
    const targets: Target[] = [];
    for (const [label, server, kind] of [
      ["oidc-provider 8.8.1, HTTP/1.1 form POST", oidc, "oidc"],
      ["capvend IssueToken, Connect JSON over HTTP/1.1", capvend, "connect"],
      ["capvend IssueToken, gRPC (grpc-js client)", capvend, "grpc"],
      ["floor: node:http + capvend's minter only, Connect JSON", floor, "connect"],
      ["floor: node:http2 gRPC + capvend's minter only", floor, "grpc"],
    ] as const) {
      const load = startLoad(kind, server.url);
      loads.push(load);
      const ready = await load.ready;
      if (ready !== "ready") throw new Error(`${label}: ${ready}`);
      targets.push({ label, server, load, rows: [] });
    }
    for (let i = 0; i < RUNS; i++) {
      for (const t of targets) {
        const pid = t.server.proc.pid!;
        const before = cpuSeconds(pid);
        const r = await t.load.run();
        const cpu = cpuSeconds(pid) - before;
        if (r.errors > 0) throw new Error(`${t.label}: ${r.errors} failed requests, e.g. ${r.firstError}`);
        t.rows.push({ rate: r.tokens / r.seconds, perCpu: r.tokens / Math.max(cpu, 1 / ticksPerSecond), p50: r.p50Ms, p99: r.p99Ms });
      }
    }
    const peer = median(targets[0]!.rows.map((r) => r.perCpu));
    process.stdout.write(`| server, protocol | tokens/s | tokens per server CPU-second | p50 | p99 | vs oidc-provider |\n|---|---|---|---|---|---|\n`);
    for (const t of targets) {
      const perCpu = median(t.rows.map((r) => r.perCpu));
      const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
      process.stdout.write(
        `| ${t.label} | ${fmt(median(t.rows.map((r) => r.rate)))} | ${fmt(perCpu)} (${fmt(Math.min(...t.rows.map((r) => r.perCpu)))}–${fmt(Math.max(...t.rows.map((r) => r.perCpu)))}) | ` +
          `${median(t.rows.map((r) => r.p50)).toFixed(2)} ms | ${median(t.rows.map((r) => r.p99)).toFixed(2)} ms | ${(perCpu / peer).toFixed(2)}x |\n`,
      );
    }
  } finally {
    for (const l of loads) await l.stop();
    for (const s of servers) await s.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

// ---- child roles ----

/** oidc-provider with one client_credentials client and JWT (EdDSA) access tokens. */
async function oidcServer(port: number): Promise<void> {
  const { default: Provider } = (await import(OIDC_PROVIDER)) as { default: new (issuer: string, config: unknown) => { listen(port: number, host: string, cb: () => void): void } };
  const { generateKeyPair, exportJWK } = await import("jose");
  const { privateKey } = await generateKeyPair("EdDSA", { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: "bench", alg: "EdDSA", use: "sig" };
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, grant_types: ["client_credentials"], redirect_uris: [], response_types: [], scope: "read write", id_token_signed_response_alg: "EdDSA" }],
    cookies: { keys: ["bench-cookie-signing-key-0123456789"] },
    jwks: { keys: [jwk] },
    scopes: ["read", "write"],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => "urn:salesforce",
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: "read write", audience: "salesforce", accessTokenTTL: 900, accessTokenFormat: "jwt", jwt: { sign: { alg: "EdDSA" } } }),
      },
    },
  });
  provider.listen(port, "127.0.0.1", () => process.stdout.write("listening\n"));
}

/** A caller loop's one request: resolves when a token came back, rejects otherwise. */
type Issue = () => Promise<void>;

function httpPost(agent: http.Agent, url: URL, headers: Record<string, string>, body: string, check: (status: number, text: string) => void): Issue {
  const payload = Buffer.from(body);
  const opts: http.RequestOptions = { agent, method: "POST", host: url.hostname, port: url.port, path: url.pathname, headers: { ...headers, "content-length": String(payload.length) } };
  return () =>
    new Promise((resolve, reject) => {
      const req = http.request(opts, (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => {
          try {
            check(res.statusCode ?? 0, Buffer.concat(parts).toString());
            resolve();
          } catch (err) {
            reject(err);
          }
        });
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(payload);
    });
}

async function capvendSessions(url: string, n: number): Promise<string[]> {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${ORCHESTRATOR_TOKEN}`);
    return next(req);
  };
  const orchestrator = createClient(VendingService, createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: [bearer] }));
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = await orchestrator.startSession({ agentId: "sales-bot", userId: `user-${i}`, grants: [{ resource: "salesforce", scopes: ["read", "write"] }] });
    out.push(s.sessionCredential);
  }
  return out;
}

async function callers(kind: string, url: string): Promise<Issue[]> {
  const base = new URL(url);
  if (kind === "oidc") {
    const agent = new http.Agent({ keepAlive: true, maxSockets: HTTP_CONNECTIONS });
    const auth = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64")}`;
    const issue = httpPost(agent, new URL("/token", base), { "content-type": "application/x-www-form-urlencoded", authorization: auth }, "grant_type=client_credentials&scope=read&resource=urn%3Asalesforce", (status, text) => {
      if (status !== 200 || !text.includes('"access_token"')) throw new Error(`oidc-provider answered ${status}: ${text.slice(0, 200)}`);
    });
    return Array.from({ length: HTTP_CONNECTIONS }, () => issue);
  }
  if (kind === "connect") {
    const agent = new http.Agent({ keepAlive: true, maxSockets: HTTP_CONNECTIONS });
    const credentials = await capvendSessions(url, HTTP_CONNECTIONS);
    return credentials.map((c) =>
      httpPost(agent, new URL(ISSUE_PATH, base), { "content-type": "application/json", authorization: `Bearer ${c}` }, JSON.stringify({ resource: "salesforce", scopes: ["read"] }), (status, text) => {
        if (status !== 200 || !text.includes('"accessToken"')) throw new Error(`capvend answered ${status}: ${text.slice(0, 200)}`);
      }),
    );
  }
  // gRPC through grpc-js: one channel, GRPC_IN_FLIGHT callers.
  const credentials = await capvendSessions(url, GRPC_IN_FLIGHT);
  const Client = grpc.makeGenericClientConstructor(
    {
      IssueToken: {
        path: ISSUE_PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: (m: IssueTokenRequest) => Buffer.from(toBinary(IssueTokenRequestSchema, m)),
        requestDeserialize: (b: Buffer) => fromBinary(IssueTokenRequestSchema, b),
        responseSerialize: (m: IssueTokenResponse) => Buffer.from(toBinary(IssueTokenResponseSchema, m)),
        responseDeserialize: (b: Buffer) => fromBinary(IssueTokenResponseSchema, b),
      },
    },
    "VendingService",
  );
  const client = new Client(`${base.hostname}:${base.port}`, grpc.credentials.createInsecure()) as unknown as {
    IssueToken(req: IssueTokenRequest, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: IssueTokenResponse) => void): void;
  };
  const request = create(IssueTokenRequestSchema, { resource: "salesforce", scopes: ["read"] });
  return credentials.map((c) => {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${c}`);
    return () =>
      new Promise<void>((resolve, reject) =>
        client.IssueToken(request, md, (err, res) => {
          if (err) reject(new Error(`capvend gRPC ${grpc.status[err.code]}: ${err.details}`));
          else if (!res?.token?.accessToken) reject(new Error("capvend gRPC: no token"));
          else resolve();
        }),
      );
  });
}

async function load(kind: string, url: string): Promise<void> {
  const issues = await callers(kind, url);
  let stop = 0;
  let latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const loop = async (issue: Issue) => {
    while (performance.now() < stop) {
      const t0 = performance.now();
      try {
        await issue();
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  const run = async (ms: number): Promise<RunResult> => {
    latencies = [];
    errors = 0;
    firstError = undefined;
    const start = performance.now();
    stop = start + ms;
    await Promise.all(issues.map(loop));
    const seconds = (performance.now() - start) / 1000;
    const sorted = latencies.sort((a, b) => a - b);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
    return { tokens: latencies.length, errors, firstError, p50Ms: q(0.5), p99Ms: q(0.99), seconds };
  };
  const warm = await run(WARMUP_MS);
  if (warm.errors > 0) {
    process.stdout.write(`failed ${warm.errors} errors in warm-up, e.g. ${warm.firstError}\n`);
    process.exit(1);
  }
  process.stdout.write("ready\n");
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === "run") process.stdout.write(`${JSON.stringify(await run(RUN_MS))}\n`);
  }
  process.exit(0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === "oidc-server") await oidcServer(Number(process.argv[3]));
  else if (process.argv[2] === "floor-server") await floorServer(Number(process.argv[3]));
  else if (process.argv[2] === "load") await load(process.argv[3]!, process.argv[4]!);
  else await main();
}

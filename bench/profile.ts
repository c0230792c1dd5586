/**
 * `npm run bench -- profile`: where a capvend server's CPU goes under IssueToken load. The
 * server runs as `node --cpu-prof capvend serve` (defaults: file audit with fsync, telemetry
 * without an exporter), pinned like `bench -- peer`, driven by the peer benchmark's load for
 * PROFILE_MS per protocol; the profile's samples are then split by the component whose code
 * was running (self time), and the busy time's shares printed.
 *
 * $CAPVEND_BENCH_NODE picks the server's node binary; $CAPVEND_PROFILE_KINDS the protocols
 * ("grpc,connect"); $CAPVEND_PROFILE_DIR keeps the .cpuprofile files there.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { SERVE_NODE_FLAGS } from "../src/node-flags.js";
import { freePort } from "../test/helpers/nats-server.js";

const PROFILE_MS = Number(process.env.CAPVEND_BENCH_MS ?? 6000);
const here = path.dirname(fileURLToPath(import.meta.url));
/** The checkout whose `dist/src/cli.js` is profiled ($CAPVEND_PROFILE_ROOT, default this one). */
const repoRoot = process.env.CAPVEND_PROFILE_ROOT ?? path.resolve(here, "..", "..");
const serverNode = process.env.CAPVEND_BENCH_NODE ?? process.execPath;
const hasTaskset = spawnSync("taskset", ["-c", "0", "true"]).status === 0;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface Profile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The component a frame belongs to, from its script URL. */
export function componentOf(frame: { functionName: string; url: string }): string {
  const { url, functionName } = frame;
  if (functionName === "(garbage collector)") return "garbage collection";
  if (functionName === "(idle)") return "(idle)";
  if (functionName === "(program)") return "(program: native, unattributed)";
  if (url.includes("@grpc/grpc-js")) return "@grpc/grpc-js";
  if (url.includes("@connectrpc/connect-node")) return "connect-node";
  if (url.includes("@connectrpc/connect")) return "connect-es";
  if (url.includes("@bufbuild/protobuf")) return "protobuf-es (encode/decode)";
  if (url.includes("@opentelemetry")) return "OpenTelemetry";
  if (url.includes("cedar")) return "Cedar (cedar-wasm)";
  if (url.includes("pino") || url.includes("sonic-boom")) return "logging";
  if (url.startsWith("wasm://")) return "Cedar (cedar-wasm)";
  if (url.includes("/dist/src/audit/")) return "capvend audit";
  if (url.includes("/dist/src/transport/")) return "capvend transport";
  if (url.includes("/dist/src/tokens/") || url.includes("/dist/src/keys/")) return "capvend mint (JWT)";
  if (url.includes("/dist/src/telemetry/")) return "capvend telemetry";
  if (url.includes("/dist/src/")) return "capvend other";
  if (url.startsWith("node:internal/http2") || url.startsWith("node:http2")) return "node:http2";
  if (url.startsWith("node:internal/crypto") || url.startsWith("node:crypto")) return "node:crypto (sign, hash)";
  if (url.startsWith("node:_http") || url.startsWith("node:http")) return "node:http (HTTP/1.1)";
  if (url.includes("async_hooks") || url.includes("async_context")) return "async context (async_hooks)";
  if (url.startsWith("node:internal/streams") || url.startsWith("node:stream")) return "node streams";
  if (url.startsWith("node:")) return "node other";
  if (url === "") return functionName ? `native: ${functionName}` : "native";
  return "other";
}

/**
 * Self-time shares of the busy time (idle excluded), by component, counting only samples
 * taken inside `window` (µs on the monotonic clock the profile's timestamps use).
 */
export function summarize(profile: Profile, window: [number, number] = [0, Infinity], by: (f: ProfileNode["callFrame"]) => string = componentOf): { total: number; shares: [string, number][] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const time = new Map<string, number>();
  let total = 0;
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0;
    if (at < window[0] || at > window[1]) return;
    const node = byId.get(id);
    if (!node) return;
    const c = by(node.callFrame);
    if (c === "(idle)") return;
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    time.set(c, (time.get(c) ?? 0) + dt);
  });
  const shares = [...time.entries()].map(([c, t]) => [c, t / total] as [string, number]).sort((a, b) => b[1] - a[1]);
  return { total, shares };
}

/**
 * Inclusive shares of the busy time: a sample counts for every component on its stack, so
 * "capvend audit" includes the hashing and writes it calls. Shares do not add up to 100%.
 */
export function inclusive(profile: Profile, window: [number, number] = [0, Infinity]): [string, number][] {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const stackCache = new Map<number, Set<string>>();
  const stackOf = (id: number): Set<string> => {
    let s = stackCache.get(id);
    if (s) return s;
    const p = parent.get(id);
    s = new Set(p === undefined ? [] : stackOf(p));
    s.add(componentOf(byId.get(id)!.callFrame));
    stackCache.set(id, s);
    return s;
  };
  const time = new Map<string, number>();
  let total = 0;
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    at += dt;
    if (at < window[0] || at > window[1]) return;
    const leaf = byId.get(id);
    if (!leaf || componentOf(leaf.callFrame) === "(idle)") return;
    total += dt;
    for (const c of stackOf(id)) time.set(c, (time.get(c) ?? 0) + dt);
  });
  return [...time.entries()].map(([c, t]) => [c, t / total] as [string, number]).sort((a, b) => b[1] - a[1]);
}

/** The monotonic clock of V8's profile timestamps, in µs. */
const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n);

/** Prints a profile's busy time in `window` by component (self, then inclusive), and the top functions with $CAPVEND_PROFILE_TOP. */
export function printProfile(profile: Profile, window: [number, number], title: string): void {
  const { total, shares } = summarize(profile, window);
  process.stdout.write(`\nprofile: ${title}, ${(total / 1e6).toFixed(1)} s busy (self time by component):\n`);
  for (const [c, share] of shares) if (share >= 0.005) process.stdout.write(`  ${(share * 100).toFixed(1).padStart(5)}%  ${c}\n`);
  process.stdout.write(`  inclusive (a sample counts for every component on its stack):\n`);
  for (const [c, share] of inclusive(profile, window)) if (share >= 0.02) process.stdout.write(`  ${(share * 100).toFixed(1).padStart(5)}%  ${c}\n`);
  if (process.env.CAPVEND_PROFILE_TOP) {
    const top = summarize(profile, window, (f) => f.functionName === "(idle)" ? "(idle)" : `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/dist\//, "")}`);
    process.stdout.write(`  top functions:\n`);
    for (const [c, share] of top.shares.slice(0, Number(process.env.CAPVEND_PROFILE_TOP))) process.stdout.write(`  ${(share * 100).toFixed(1).padStart(5)}%  ${c}\n`);
  }
}

/** The newest .cpuprofile in `dir`. */
export async function newestProfile(dir: string): Promise<Profile> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".cpuprofile")).sort();
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}`);
  return JSON.parse(await readFile(path.join(dir, files.at(-1)!), "utf8")) as Profile;
}

async function profileOne(kind: string, dir: string): Promise<{ profile: Profile; window: [number, number] }> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-profile-"));
  const profDir = path.join(dir, kind);
  const port = await freePort();
  const args = [...SERVE_NODE_FLAGS, "--cpu-prof", `--cpu-prof-dir=${profDir}`, path.join(repoRoot, "dist", "src", "cli.js"), "serve"];
  const server = spawn(hasTaskset ? "taskset" : serverNode, hasTaskset ? ["-c", "1", serverNode, ...args] : args, {
    env: { ...process.env, CAPVEND_LISTEN: `127.0.0.1:${port}`, CAPVEND_DATA_DIR: dataDir, CAPVEND_ORCHESTRATOR_TOKEN: "bench-orchestrator-token-0123456789", CAPVEND_LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    server.once("exit", () => reject(new Error("capvend exited")));
    createInterface({ input: server.stdout! }).on("line", (l) => l.includes("capvend listening") && resolve());
  });
  const loadArgs = [path.join(here, "peer.js"), "load", kind, `http://127.0.0.1:${port}`];
  const load = spawn(hasTaskset ? "taskset" : process.execPath, hasTaskset ? ["-c", "0", process.execPath, ...loadArgs] : loadArgs, {
    env: { ...process.env, CAPVEND_BENCH_MS: String(PROFILE_MS) },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: load.stdout! });
  const next = () => new Promise<string>((resolve) => lines.once("line", resolve));
  const ready = await next();
  if (ready !== "ready") throw new Error(`load ${kind}: ${ready}`);
  const from = monotonicMicros();
  load.stdin!.write("run\n");
  const result = JSON.parse(await next()) as { tokens: number; errors: number };
  const to = monotonicMicros();
  if (result.errors > 0) throw new Error(`load ${kind}: ${result.errors} errors`);
  load.stdin!.end();
  await new Promise((r) => load.once("exit", r));
  await new Promise<void>((resolve) => {
    server.once("exit", () => resolve());
    server.kill("SIGTERM");
  });
  await rm(dataDir, { recursive: true, force: true });
  return { profile: await newestProfile(profDir), window: [from, to] };
}

export async function main(): Promise<void> {
  const keep = process.env.CAPVEND_PROFILE_DIR;
  const dir = keep ?? (await mkdtemp(path.join(os.tmpdir(), "capvend-profiles-")));
  const kinds = (process.env.CAPVEND_PROFILE_KINDS ?? "grpc,connect").split(",");
  const version = spawnSync(serverNode, ["--version"], { encoding: "utf8" }).stdout.trim();
  try {
    for (const kind of kinds) {
      const { profile, window } = await profileOne(kind, dir);
      printProfile(profile, window, `IssueToken over ${kind}, server on ${version}`);
    }
    if (keep) process.stdout.write(`profiles kept in ${dir}\n`);
  } finally {
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
}

/**
 * capvend replicas as separate processes (`node dist/src/cli.js serve`), each with its own
 * data directory (so its own signing key), orchestrator token and replica id. The port comes
 * from the "capvend listening" log line. Needs `dist/` built (vitest's globalSetup does it).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../../src/gen/capvend/admin/v1/admin_pb.js";
import { VendingService } from "../../src/gen/capvend/v1/vending_pb.js";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";

/** The orchestrator bearer every test replica accepts (as orchestrator "dev"). */
export const REPLICA_ORCHESTRATOR_TOKEN = "replica-test-orchestrator-token-0123456789";
/** How long a replica may take to log "capvend listening": 30 s. */
export const REPLICA_START_TIMEOUT_MS = 30_000;

/** The package root, found from this file whether it runs from test/ or dist/test/. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) dir = path.dirname(dir);
  return dir;
}

/** Options for `startReplica`. */
export interface ReplicaOptions {
  /** CAPVEND_REPLICA_ID; default "replica-<random>". */
  id?: string;
  /** NATS_URL; unset runs the replica with in-process backends. */
  natsUrl?: string;
  /** Extra environment (CAPVEND_TOKEN_TTL, …). */
  env?: Record<string, string>;
  /** Data directory to reuse (a restart); default a new temp dir, removed by `cleanup`. */
  dataDir?: string;
  /** Called with each stdout/stderr line as it arrives, before the replica listens too. */
  onLine?: (line: string) => void;
  /** How long it may take to listen; default REPLICA_START_TIMEOUT_MS. */
  startTimeoutMs?: number;
}

/** A running replica process and clients for it. */
export interface ReplicaProcess {
  readonly id: string;
  readonly port: number;
  readonly url: string;
  readonly dataDir: string;
  readonly pid: number;
  /** Every stdout/stderr line so far (JSON log lines). */
  readonly logs: string[];
  /** True until the process exits. */
  readonly alive: boolean;
  /** Resolves with the exit code (or the signal name) when the process exits. */
  readonly exited: Promise<number | string | null>;
  /** A Connect (HTTP/2) client sending `bearer`. */
  client(bearer?: string): Client<typeof VendingService>;
  /** A client with the orchestrator token. */
  readonly orchestrator: Client<typeof VendingService>;
  /** A capvend.admin.v1 client with the orchestrator token. */
  readonly admin: Client<typeof AdminService>;
  /** A grpc.health.v1 client. */
  readonly health: Client<typeof Health>;
  /** Sends `signal` (default SIGKILL) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Kills it (if alive) and deletes its data directory unless it was given. Idempotent. */
  cleanup(): Promise<void>;
}

/** Spawns a replica on 127.0.0.1:0 and resolves once it listens (or rejects with its last log lines). */
export async function startReplica(opts: ReplicaOptions = {}): Promise<ReplicaProcess> {
  const root = packageRoot();
  const id = opts.id ?? `replica-${Math.random().toString(36).slice(2, 8)}`;
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), `capvend-${id}-`)));
  // A clean environment: nothing from the test runner's NATS_* or CAPVEND_* leaks in.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? os.tmpdir(),
    CAPVEND_LISTEN: "127.0.0.1:0",
    CAPVEND_DATA_DIR: dataDir,
    CAPVEND_ORCHESTRATOR_TOKEN: REPLICA_ORCHESTRATOR_TOKEN,
    CAPVEND_REPLICA_ID: id,
    CAPVEND_AUDIT_DURABILITY: "write",
    CAPVEND_SHUTDOWN_GRACE: "1s",
    CAPVEND_LOG_LEVEL: "info",
    ...(opts.natsUrl ? { NATS_URL: opts.natsUrl } : {}),
    ...opts.env,
  };
  const child: ChildProcess = spawn(process.execPath, [path.join(root, "dist/src/cli.js"), "serve"], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  const logs: string[] = [];
  let alive = true;
  const exited = new Promise<number | string | null>((resolve) =>
    child.once("exit", (code, signal) => {
      alive = false;
      resolve(code ?? signal);
    }),
  );
  let onListening: ((port: number) => void) | undefined;
  const listening = new Promise<number>((resolve) => (onListening = resolve));
  const collect = (stream: NodeJS.ReadableStream | null) => {
    let buf = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        opts.onLine?.(line);
        if (line.includes('"capvend listening"')) {
          try {
            const address = (JSON.parse(line) as { address: string }).address;
            onListening?.(Number(address.slice(address.lastIndexOf(":") + 1)));
          } catch {
            // not our line after all
          }
        }
      }
    });
  };
  collect(child.stdout);
  collect(child.stderr);

  let timer: NodeJS.Timeout | undefined;
  const port = await Promise.race([
    listening,
    exited.then((code) => {
      throw new Error(`replica ${id} exited (${String(code)}) before listening:\n${logs.slice(-15).join("\n")}`);
    }),
    new Promise<never>((_, reject) => {
      const startTimeoutMs = opts.startTimeoutMs ?? REPLICA_START_TIMEOUT_MS;
      timer = setTimeout(() => reject(new Error(`replica ${id} did not listen within ${startTimeoutMs} ms:\n${logs.slice(-15).join("\n")}`)), startTimeoutMs);
    }),
  ]).catch(async (err: unknown) => {
    child.kill("SIGKILL");
    await exited;
    if (ownDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  });
  clearTimeout(timer);

  const url = `http://127.0.0.1:${port}`;
  const bearer = (token: string | undefined): Interceptor => (next) => (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = (token?: string) => createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors: [bearer(token)] });
  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (!alive) return;
    child.kill(signal);
    await exited;
  };
  let cleaned = false;
  return {
    id,
    port,
    url,
    dataDir,
    pid: child.pid!,
    logs,
    get alive() {
      return alive;
    },
    exited,
    client: (token?: string) => createClient(VendingService, transport(token)),
    orchestrator: createClient(VendingService, transport(REPLICA_ORCHESTRATOR_TOKEN)),
    admin: createClient(AdminService, transport(REPLICA_ORCHESTRATOR_TOKEN)),
    health: createClient(Health, transport()),
    kill,
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      await kill("SIGKILL");
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

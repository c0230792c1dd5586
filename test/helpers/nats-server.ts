/**
 * Real `nats-server` processes for tests: each on free loopback ports with its own
 * JetStream store directory, so tests may stop, kill and restart them without touching the
 * shared server on 4222 or each other. Also a 3-node JetStream cluster with routes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

/** Debian's nats-server (2.9); override with $NATS_SERVER_BIN. */
export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";
/** How long a server may take to answer /healthz after start: 20 s. */
export const NATS_READY_TIMEOUT_MS = 20_000;
/** How long `stop` waits for a SIGTERM'd server before SIGKILL: 5 s. */
const STOP_GRACE_MS = 5000;

/** A free TCP port on 127.0.0.1 (bound and released; the OS does not hand it out again at once). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Options for `startNatsServer`. */
export interface NatsServerOptions {
  /** Server name (JetStream clustering needs unique ones). Default "n-<port>". */
  name?: string;
  /** Client port; default a free one. */
  port?: number;
  /** Base directory (store in `<dir>/store`, log in `<dir>/server.log`); default a new temp dir. */
  dir?: string;
  /** Cluster membership: own route port, peers' route ports, cluster name. */
  cluster?: { port: number; routes: number[]; name: string };
  /** Extra server configuration (nats-server config syntax, e.g. an `authorization` block), written to `<dir>/server.conf`. */
  config?: string;
  /** Prepare the ports and directory but launch nothing until `start()`. */
  deferStart?: boolean;
}

/** One nats-server process that can be stopped, killed and started again on the same port and store. */
export interface NatsServer {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly monitorPort: number;
  readonly dir: string;
  readonly storeDir: string;
  /** True while the process runs. */
  readonly running: boolean;
  /** Graceful stop (SIGTERM, SIGKILL after 5 s); resolves when the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL: a crash. Resolves when the process is gone. */
  kill(): Promise<void>;
  /** Starts it (again, or first when deferred) with the same name, ports and store; resolves when it is healthy. */
  start(): Promise<void>;
  /** Stops the process and deletes its directory. Idempotent. */
  cleanup(): Promise<void>;
}

/** How many times a start on fresh ports is tried: another process may take a port between picking and binding. */
const START_ATTEMPTS = 3;

/**
 * Starts a JetStream-enabled nats-server on loopback and waits until /healthz answers ok.
 * When the ports were picked here, a failed start is retried on fresh ones.
 */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServer> {
  const attempts = opts.port === undefined && !opts.cluster ? START_ATTEMPTS : 1;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      if (attempt >= attempts) throw err;
    }
  }
}

async function startOnce(opts: NatsServerOptions): Promise<NatsServer> {
  const port = opts.port ?? (await freePort());
  const monitorPort = await freePort();
  const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), "capvend-nats-")));
  const storeDir = path.join(dir, "store");
  await mkdir(storeDir, { recursive: true });
  const name = opts.name ?? `n-${port}`;
  const args: string[] = [];
  if (opts.config !== undefined) {
    const file = path.join(dir, "server.conf");
    await writeFile(file, opts.config);
    args.push("-c", file);
  }
  args.push("-js", "-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), "-sd", storeDir, "--server_name", name, "-l", path.join(dir, "server.log"));
  if (opts.cluster) {
    args.push(
      "--cluster_name",
      opts.cluster.name,
      "--cluster",
      `nats://127.0.0.1:${opts.cluster.port}`,
      "--routes",
      opts.cluster.routes.map((p) => `nats://127.0.0.1:${p}`).join(","),
    );
  }

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const launch = async (waitReady: boolean) => {
    const proc = spawn(NATS_SERVER_BIN, args, { stdio: "ignore" });
    child = proc;
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    void exited.then(() => {
      if (child === proc) child = undefined;
    });
    if (waitReady) await waitHealthy(monitorPort, () => child === proc, NATS_READY_TIMEOUT_MS);
  };
  const halt = async (signal: NodeJS.Signals) => {
    const proc = child;
    if (!proc) return;
    proc.kill(signal);
    if (signal !== "SIGKILL") {
      const t = setTimeout(() => proc.kill("SIGKILL"), STOP_GRACE_MS);
      await exited;
      clearTimeout(t);
    } else {
      await exited;
    }
  };
  // A cluster member is healthy only once its peers are up: the cluster helper waits for all.
  try {
    if (!opts.deferStart) await launch(!opts.cluster);
  } catch (err) {
    await halt("SIGKILL");
    const log = await readFile(path.join(dir, "server.log"), "utf8").catch(() => "");
    if (!opts.dir) await rm(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${log.split("\n").slice(-10).join("\n")}`);
  }
  let cleaned = false;
  return {
    name,
    port,
    url: `nats://127.0.0.1:${port}`,
    monitorPort,
    dir,
    storeDir,
    get running() {
      return child !== undefined;
    },
    stop: () => halt("SIGTERM"),
    kill: () => halt("SIGKILL"),
    async start() {
      if (child) return;
      await launch(true);
    },
    async cleanup() {
      if (cleaned) return;
      cleaned = true;
      await halt("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A JetStream cluster of nats-servers routed to each other on loopback. */
export interface NatsCluster {
  readonly servers: NatsServer[];
  /** Every node's client URL, comma-separated (a NATS_URL value). */
  readonly urls: string;
  /** Resolves once every running node is healthy (meta leader elected) and the JetStream API answers through each. */
  waitJetStreamReady(): Promise<void>;
  cleanup(): Promise<void>;
}

/** Options for `startNatsCluster`. */
export interface NatsClusterOptions {
  /**
   * How many nodes to launch now (default all); the rest wait for their `start()`. With
   * fewer than a quorum, JetStream stays unavailable: the helper then waits only until the
   * launched nodes answer their monitoring port.
   */
  started?: number;
}

/**
 * Starts `size` (default 3) clustered JetStream nodes and, when all are launched, waits
 * until JetStream is ready on every one (see `waitJetStreamReady`). A failed start is
 * retried on fresh ports.
 */
export async function startNatsCluster(size = 3, clusterName = "capvend-test", opts: NatsClusterOptions = {}): Promise<NatsCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOnce(size, clusterName, opts.started ?? size);
    } catch (err) {
      if (attempt >= START_ATTEMPTS) throw err;
    }
  }
}

async function startClusterOnce(size: number, clusterName: string, started: number): Promise<NatsCluster> {
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) routePorts.push(await freePort());
  const servers: NatsServer[] = [];
  const waitJetStreamReady = async () => {
    const running = servers.filter((s) => s.running);
    await Promise.all(running.map((s) => waitHealthy(s.monitorPort, () => s.running, NATS_READY_TIMEOUT_MS * 2)));
    await Promise.all(running.map((s) => waitJetStreamApi(s.url, NATS_READY_TIMEOUT_MS * 2)));
  };
  try {
    for (let i = 0; i < size; i++) {
      servers.push(
        await startNatsServer({
          name: `${clusterName}-n${i + 1}`,
          cluster: { port: routePorts[i]!, routes: routePorts.filter((_, j) => j !== i), name: clusterName },
          deferStart: i >= started,
        }),
      );
    }
    if (started >= size) await waitJetStreamReady();
    else await Promise.all(servers.filter((s) => s.running).map((s) => waitMonitor(s.monitorPort, () => s.running, NATS_READY_TIMEOUT_MS)));
  } catch (err) {
    await Promise.all(servers.map((s) => s.cleanup()));
    throw err;
  }
  return {
    servers,
    urls: servers.map((s) => s.url).join(","),
    waitJetStreamReady,
    async cleanup() {
      await Promise.all(servers.map((s) => s.cleanup()));
    },
  };
}

/** Waits until the JetStream API answers an account info request through the server at `url`. */
async function waitJetStreamApi(url: string, timeoutMs: number): Promise<void> {
  const nc = await connect({ servers: url, timeout: 5000 });
  try {
    const deadline = Date.now() + timeoutMs;
    let last = "no answer";
    while (Date.now() < deadline) {
      try {
        await jetstreamManager(nc, { timeout: 2000 });
        return;
      } catch (err) {
        last = String(err);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`JetStream API at ${url} not answering within ${timeoutMs} ms: ${last}`);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/** Waits until the monitoring port answers at all (a cluster node without quorum is never healthy). */
async function waitMonitor(monitorPort: number, alive: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`nats-server (monitor port ${monitorPort}) exited during start`);
    try {
      const res = await fetch(`http://127.0.0.1:${monitorPort}/varz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nats-server (monitor port ${monitorPort}) not answering within ${timeoutMs} ms`);
}

async function waitHealthy(monitorPort: number, alive: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`nats-server (monitor port ${monitorPort}) exited during start`);
    try {
      const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz`, { signal: AbortSignal.timeout(1000) });
      last = `${res.status} ${await res.text()}`;
      if (res.ok) return;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nats-server (monitor port ${monitorPort}) not healthy within ${timeoutMs} ms: ${last}`);
}

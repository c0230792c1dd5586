import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { createMemoryAuditSink, type MemoryAuditSink } from "../../src/audit/memory-sink.js";
import type { AuditSink } from "../../src/audit/sink.js";
import { sha256Hex } from "../../src/auth/credentials.js";
import { systemClock, type Clock } from "../../src/clock.js";
import { DEFAULT_POLICY_DIR, loadConfig } from "../../src/config/config.js";
import { VendingService } from "../../src/gen/capvend/v1/vending_pb.js";
import { openKeyRing, type KeyRing } from "../../src/keys/key-ring.js";
import { createLogger } from "../../src/logging/logger.js";
import { loadPolicyEngine, type PolicyEngine } from "../../src/policy/engine.js";
import { openFileBackends } from "../../src/backends/file/open-file-backends.js";
import { openMemoryBackends } from "../../src/backends/memory/open-memory-backends.js";
import { openNatsBackends } from "../../src/backends/nats/open-nats-backends.js";
import type { Backends, RevocationList, SessionStore } from "../../src/backends/types.js";
import { createCapvendServer, type CapvendServer, type ServerSettings } from "../../src/server.js";
import { memoryLogDestination } from "./memory-log.js";
import { startNatsServer, type NatsServer } from "./nats-server.js";
import type { Telemetry } from "../../src/telemetry/telemetry.js";
import type { MetricsSource } from "../../src/http/metrics-endpoint.js";

export const ORCHESTRATOR_TOKEN = "test-orchestrator-token-0123456789";
export const GATEWAY_TOKEN = "test-gateway-token-0123456789abcdef";
/** The resources whose tokens the demo gateway may introspect. */
export const GATEWAY_AUDIENCES = ["salesforce", "calendar"];

/** The backends an in-process test replica can run on. */
export type TestBackend = "memory" | "file" | "nats";
const TEST_BACKENDS: readonly TestBackend[] = ["memory", "file", "nats"];

/**
 * The backends `startHarness` opens: `$CAPVEND_TEST_BACKEND`, "memory" when unset. The e2e
 * suite runs once per backend (scripts/suites/11-e2e-backends.sh, vitest.config.ts); with
 * "nats" each harness starts a nats-server of its own on free ports.
 */
export const TEST_BACKEND: TestBackend = testBackendFrom(process.env.CAPVEND_TEST_BACKEND);

function testBackendFrom(value: string | undefined): TestBackend {
  if (value === undefined || value === "") return "memory";
  if (!(TEST_BACKENDS as readonly string[]).includes(value)) throw new Error(`CAPVEND_TEST_BACKEND: "${value}" is not one of ${TEST_BACKENDS.join(", ")}`);
  return value as TestBackend;
}

/** A session store as the harness exposes it: with the count of sessions this replica holds. */
export type HarnessSessionStore = SessionStore & { readonly size: number };
/** A revocation list as the harness exposes it: with its subscriber count (leak checks). */
export type HarnessRevocationList = RevocationList & { readonly listenerCount: number };

export interface Harness {
  /** The backends this replica runs on. */
  backend: TestBackend;
  server: CapvendServer;
  url: string;
  audit: MemoryAuditSink | AuditSink;
  keyRing: KeyRing;
  policy: PolicyEngine;
  sessions: HarnessSessionStore;
  revocations: HarnessRevocationList;
  dataDir: string;
  /** Every application log line, for leak checks. */
  logLines: string[];
  /** A Connect-protocol client over HTTP/2 with the given bearer. */
  client(bearer?: string, transport?: "connect" | "grpc" | "connect-h1"): Client<typeof VendingService>;
  transport(bearer?: string, kind?: "connect" | "grpc" | "connect-h1"): Transport;
  orchestrator: Client<typeof VendingService>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  settings?: Partial<ServerSettings>;
  env?: Record<string, string>;
  audit?: AuditSink;
  policyDir?: string;
  /** A policy engine to use instead of one loaded from `policyDir` (e.g. a watching one); the test closes it. */
  policy?: PolicyEngine;
  clock?: Clock;
  random?: () => number;
  /** Spans and metrics for the server; the test that built it shuts it down. */
  telemetry?: Telemetry;
  /** More orchestrators, id → bearer token, beside "dev" (ORCHESTRATOR_TOKEN). */
  orchestrators?: Record<string, string>;
  /** Serves GET /metrics (a PrometheusExporter registered in `telemetry`). */
  metrics?: MetricsSource;
  /**
   * Stores to use instead of the backend's (e.g. ones a test can make fail), both or
   * neither: the replica then runs on them whatever `TEST_BACKEND` says. Closed with it.
   */
  sessions?: HarnessSessionStore;
  revocations?: HarnessRevocationList;
}

/**
 * A whole replica on 127.0.0.1:0 with the example policy, the backends `TEST_BACKEND` names
 * (opened as src/main.ts opens them) and a memory audit sink.
 */
export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-test-"));
  const backend = TEST_BACKEND;
  const given = opts.sessions || opts.revocations ? { sessions: opts.sessions, revocations: opts.revocations } : undefined;
  if (given && !(given.sessions && given.revocations)) throw new Error("startHarness: pass both sessions and revocations, or neither");
  const nats = !given && backend === "nats" ? await startNatsServer() : undefined;
  const config = loadConfig({ CAPVEND_DATA_DIR: dataDir, CAPVEND_LISTEN: "127.0.0.1:0", ...(nats ? { NATS_URL: nats.url } : {}), ...opts.env });
  const settings: ServerSettings = { ...config, ...opts.settings };
  settings.resourceServerHashes = new Map([["demo-gateway", sha256Hex(GATEWAY_TOKEN)], ...settings.resourceServerHashes]);
  settings.resourceServerAudiences = new Map([["demo-gateway", new Set(GATEWAY_AUDIENCES)], ...settings.resourceServerAudiences]);
  const clock = opts.clock ?? systemClock;
  const { destination, lines: logLines } = memoryLogDestination();
  const logger = createLogger({ level: "debug", replica: "test", destination: destination as never });
  const audit = opts.audit ?? createMemoryAuditSink({ clock });
  const policy = opts.policy ?? (await loadPolicyEngine({ dir: opts.policyDir ?? DEFAULT_POLICY_DIR, clock }));
  const keyRing = await openKeyRing({ dataDir, alg: config.signingAlg, clock, maxTokenTtlMs: settings.maxTokenTtlMs });
  let backends: Backends;
  try {
    backends = given
      ? {
          sessions: given.sessions!,
          revocations: given.revocations!,
          publicKeys: keyRing,
          auditSinks: [],
          async close() {
            await given.revocations!.close();
            await given.sessions!.close();
          },
        }
      : await openTestBackends(backend, { config: { ...config, ...opts.settings }, clock, logger, keyRing });
  } catch (err) {
    keyRing.close();
    await nats?.cleanup();
    throw err;
  }
  const sessions = backends.sessions as HarnessSessionStore;
  const revocations = backends.revocations as HarnessRevocationList;
  const server = await createCapvendServer({
    settings,
    clock,
    logger,
    orchestratorHashes: new Map([["dev", sha256Hex(ORCHESTRATOR_TOKEN)], ...Object.entries(opts.orchestrators ?? {}).map(([id, token]) => [id, sha256Hex(token)] as [string, string])]),
    policy,
    keyRing,
    publicKeys: backends.publicKeys,
    sessions,
    revocations,
    audit,
    policyStatuses: backends.policyStatuses,
    random: opts.random,
    telemetry: opts.telemetry,
    metrics: opts.metrics,
  });
  backends.watchHealth?.((service, serving) => server.setHealth(service, serving));
  const addr = await server.listen("127.0.0.1", 0);
  const url = `http://127.0.0.1:${addr.port}`;

  const bearer = (token: string | undefined): Interceptor => (next) => (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = (token?: string, kind: "connect" | "grpc" | "connect-h1" = "connect") =>
    kind === "grpc"
      ? createGrpcTransport({ baseUrl: url, interceptors: [bearer(token)] })
      : createConnectTransport({ baseUrl: url, httpVersion: kind === "connect-h1" ? "1.1" : "2", interceptors: [bearer(token)] });
  const client = (token?: string, kind?: "connect" | "grpc" | "connect-h1") => createClient(VendingService, transport(token, kind));

  return {
    backend: given ? "memory" : backend,
    server,
    url,
    audit,
    keyRing,
    policy,
    sessions,
    revocations,
    dataDir,
    logLines,
    client,
    transport,
    orchestrator: client(ORCHESTRATOR_TOKEN),
    async close() {
      await server.close(1000);
      if (!opts.policy) policy.close();
      keyRing.close();
      await backends.close();
      await audit.close();
      await nats?.cleanup();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Opens the backends of `kind` as src/main.ts does (NATS: `config.nats` names the server). */
function openTestBackends(kind: TestBackend, opts: Parameters<typeof openMemoryBackends>[0]): Promise<Backends> {
  switch (kind) {
    case "memory":
      return Promise.resolve(openMemoryBackends(opts));
    case "file":
      return openFileBackends(opts);
    case "nats":
      if (!opts.config.nats) throw new Error("the NATS backends need NATS_URL");
      return openNatsBackends(opts, opts.config.nats);
  }
}

/** A sales-bot session for alice with salesforce read/write and calendar read. */
export async function startSalesSession(h: Harness, extra: { maxDurationSeconds?: number; ttlSeconds?: number } = {}) {
  const res = await h.orchestrator.startSession({
    agentId: "sales-bot",
    userId: "alice",
    grants: [
      { resource: "salesforce", scopes: ["read", "write"], ttl: extra.ttlSeconds ? { seconds: BigInt(extra.ttlSeconds) } : undefined },
      { resource: "calendar", scopes: ["read"], ttl: extra.ttlSeconds ? { seconds: BigInt(extra.ttlSeconds) } : undefined },
    ],
    maxDuration: extra.maxDurationSeconds ? { seconds: BigInt(extra.maxDurationSeconds) } : undefined,
    labels: { env: "test" },
  });
  return { ...res, runtime: h.client(res.sessionCredential) };
}

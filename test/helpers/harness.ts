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
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import { createCapvendServer, type CapvendServer, type ServerSettings } from "../../src/server.js";
import { MemorySessionStore } from "../../src/backends/memory/memory-session-store.js";
import { memoryLogDestination } from "./memory-log.js";
import type { Telemetry } from "../../src/telemetry/telemetry.js";
import type { MetricsSource } from "../../src/http/metrics-endpoint.js";

export const ORCHESTRATOR_TOKEN = "test-orchestrator-token-0123456789";
export const GATEWAY_TOKEN = "test-gateway-token-0123456789abcdef";
/** The resources whose tokens the demo gateway may introspect. */
export const GATEWAY_AUDIENCES = ["salesforce", "calendar"];

export interface Harness {
  server: CapvendServer;
  url: string;
  audit: MemoryAuditSink | AuditSink;
  keyRing: KeyRing;
  policy: PolicyEngine;
  sessions: MemorySessionStore;
  revocations: MemoryRevocationList;
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
  /** Stores to use instead of fresh memory ones (e.g. ones a test can make fail). */
  sessions?: MemorySessionStore;
  revocations?: MemoryRevocationList;
}

/** A whole replica on 127.0.0.1:0 with the example policy, memory stores and a memory audit sink. */
export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-test-"));
  const config = loadConfig({ CAPVEND_DATA_DIR: dataDir, CAPVEND_LISTEN: "127.0.0.1:0", ...opts.env });
  const settings: ServerSettings = { ...config, ...opts.settings };
  settings.resourceServerHashes = new Map([["demo-gateway", sha256Hex(GATEWAY_TOKEN)], ...settings.resourceServerHashes]);
  settings.resourceServerAudiences = new Map([["demo-gateway", new Set(GATEWAY_AUDIENCES)], ...settings.resourceServerAudiences]);
  const clock = opts.clock ?? systemClock;
  const { destination, lines: logLines } = memoryLogDestination();
  const logger = createLogger({ level: "debug", replica: "test", destination: destination as never });
  const audit = opts.audit ?? createMemoryAuditSink({ clock });
  const policy = opts.policy ?? (await loadPolicyEngine({ dir: opts.policyDir ?? DEFAULT_POLICY_DIR, clock }));
  const keyRing = await openKeyRing({ dataDir, alg: config.signingAlg, clock, maxTokenTtlMs: settings.maxTokenTtlMs });
  const sessions = opts.sessions ?? new MemorySessionStore(clock);
  const revocations = opts.revocations ?? new MemoryRevocationList(clock);
  const server = await createCapvendServer({
    settings,
    clock,
    logger,
    orchestratorHashes: new Map([["dev", sha256Hex(ORCHESTRATOR_TOKEN)], ...Object.entries(opts.orchestrators ?? {}).map(([id, token]) => [id, sha256Hex(token)] as [string, string])]),
    policy,
    keyRing,
    sessions,
    revocations,
    audit,
    random: opts.random,
    telemetry: opts.telemetry,
    metrics: opts.metrics,
  });
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
      await revocations.close();
      await sessions.close();
      await audit.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
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

import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ensurePrivateDir } from "./audit/permissions.js";
import { combineAuditSinks } from "./audit/combine.js";
import { createFileAuditSink } from "./audit/file-sink.js";
import { openFileBackends } from "./backends/file/open-file-backends.js";
import { openMemoryBackends } from "./backends/memory/open-memory-backends.js";
import { openNatsBackends } from "./backends/nats/open-nats-backends.js";
import type { BackendOptions, Backends } from "./backends/types.js";
import type { AuditSink } from "./audit/sink.js";
import { systemClock } from "./clock.js";
import type { Config } from "./config/config.js";
import { openKeyRing } from "./keys/key-ring.js";
import { rotateWithPublishDelay, type KeyRotation } from "./keys/rotate.js";
import { createLogger, type Logger } from "./logging/logger.js";
import { DEV_ORCHESTRATOR_ID, devOrchestratorHash } from "./orchestrator-token.js";
import { DEFAULT_RELOAD_DEBOUNCE_MS, directorySource, loadPolicyEngine, type PolicyEngine } from "./policy/engine.js";
import type { MetricsSource } from "./http/metrics-endpoint.js";
import { registerBearerTokenHashes } from "./security/redact.js";
import { REVOCATION_JOURNAL_FILE } from "./backends/file/file-revocation-list.js";
import { SESSION_JOURNAL_FILE, STATE_SUBDIR } from "./backends/file/file-session-store.js";
import { createCapvendServer, type CapvendServer } from "./server.js";
import type { Telemetry } from "./telemetry/telemetry.js";

/**
 * Longest wait for telemetry's final export at shutdown: a collector that does not answer
 * must not hold the process past its grace period (the exporters' own timeout is 10 s).
 */
export const TELEMETRY_FLUSH_TIMEOUT_MS = 3 * 1000;

/** After a new key is acknowledged in the shared key bucket, the shortest wait before it signs. */
export const KEY_ANNOUNCE_GRACE_MS = 1000;

/** How often keys whose last token expired are pruned from the ring. */
export const KEY_PRUNE_INTERVAL_MS = 60 * 1000;

/** What the caller may hand to `startCapvend` besides the config. */
export interface StartOptions {
  /** Spans and metrics (the CLI builds it with `telemetryFromEnv`). Shut down by `stop()`. */
  telemetry?: Telemetry;
  /**
   * The Prometheus reader registered in `telemetry` (CAPVEND_METRICS=main): served as
   * `GET /metrics` on the main port.
   */
  metrics?: MetricsSource;
}

export interface RunningCapvend {
  server: CapvendServer;
  address: { host: string; port: number };
  /**
   * Rotates the signing key while serving: the new key is published in the JWKS (and with
   * NATS announced to every replica) at once, and signs only after CAPVEND_KEY_PUBLISH_DELAY,
   * so verifiers have fetched it; the old one stays published until its last token expires.
   * Resolves once the new key is published; `activated` follows.
   */
  rotateKey(): Promise<KeyRotation>;
  /** The loaded policy engine (reload, state). */
  readonly policy: PolicyEngine;
  /** Stops everything in order, then flushes and stops telemetry; idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts one replica from a validated config: the only place that opens files, listens and
 * wires process-wide concerns. The CLI calls it and adds signal handling.
 */
export async function startCapvend(
  config: Config,
  logger: Logger = createLogger({ level: config.logLevel, replica: config.replicaId }),
  options: StartOptions = {},
): Promise<RunningCapvend> {
  const clock = systemClock;
  const startedAt = clock.now();
  const warnPermissions = (message: string, details?: Record<string, string>) => logger.warn(details ?? {}, message);
  await ensurePrivateDir(config.dataDir, warnPermissions);
  // State that is only ever made together with audit records: if it exists, an empty log is a gap.
  const expectRecords = existsSync(join(config.dataDir, "keys", "keyring.json")) || [SESSION_JOURNAL_FILE, REVOCATION_JOURNAL_FILE].some((f) => nonEmpty(join(config.dataDir, STATE_SUBDIR, f)));

  const dev = await devOrchestratorHash(config.dataDir, config.orchestratorToken);
  if (dev.created) logger.info({ file: dev.file }, `generated the bearer token of orchestrator "${DEV_ORCHESTRATOR_ID}"; read it from the file`);
  else if (dev.file) logger.info({ file: dev.file }, `orchestrator "${DEV_ORCHESTRATOR_ID}" authenticates with the token in the file`);
  const orchestratorHashes = new Map(config.orchestratorHashes);
  if (!orchestratorHashes.has(DEV_ORCHESTRATOR_ID)) orchestratorHashes.set(DEV_ORCHESTRATOR_ID, dev.hash);
  // The configured bearer tokens are secrets wherever they would appear (audit, logs, spans).
  registerBearerTokenHashes([
    { sha256Hex: dev.hash, ...(dev.length !== undefined ? { length: dev.length } : {}) },
    ...[...config.orchestratorHashes.values(), ...config.resourceServerHashes.values()].map((h) => ({ sha256Hex: h })),
  ]);

  let backends: Backends | undefined;
  const fileAudit = await createFileAuditSink({
    dir: config.dataDir,
    replica: config.replicaId,
    clock,
    durability: config.audit.durability,
    timeoutMs: config.audit.timeoutMs,
    checkpoints: {
      intervalMs: config.audit.checkpointIntervalMs,
      // With NATS, each checkpoint is also anchored in the JetStream audit stream.
      onCheckpoint: (c) => backends?.publishAuditCheckpoint?.(c),
    },
    acceptGap: config.acceptAuditGap,
    expectRecords,
    onWarning: warnPermissions,
  });
  const gap = fileAudit.state.gap;
  if (gap) logger.warn({ problem: gap.problem, checkpoint_seq: gap.checkpointSeq, log_seq: gap.logSeq }, `started with an accepted audit gap (recorded in the log): ${gap.description}`);
  // Filled in once the backends are open: key and policy events before that go to the file.
  let audit: AuditSink = fileAudit;
  const system = { kind: "system" as const, id: config.replicaId };

  const keyRing = await openKeyRing({
    dataDir: config.dataDir,
    alg: config.signingAlg,
    clock,
    maxTokenTtlMs: config.maxTokenTtlMs,
    keyFiles: config.signingKeyFiles.length > 0 ? config.signingKeyFiles : undefined,
  });
  keyRing.onChange((e) => {
    if (e.type === "removed") return;
    void audit
      .append({ type: e.type === "added" ? "key.added" : "key.retired", caller: system, details: { kid: e.kid, alg: e.alg } })
      .catch((err) => logger.error({ err }, "audit append failed for a key change"));
  });
  // A key made or loaded while the ring opened (the first key, an alg change, key files) came
  // before anyone listened: record it now, before the server takes a call.
  const initial = keyRing.current();
  if (initial.createdAt >= startedAt) {
    await audit.append({
      type: "key.added",
      caller: system,
      details: { kid: initial.kid, alg: initial.alg, source: config.signingKeyFiles.length > 0 ? "key_files" : "generated", at_start: true },
    });
  }
  const pruneTimer = setInterval(() => {
    keyRing.prune().catch((err) => logger.warn({ err }, "key prune failed"));
  }, KEY_PRUNE_INTERVAL_MS);
  pruneTimer.unref();

  const opened = await openBackends({ config, clock, logger, keyRing });
  backends = opened;
  // With NATS the pushed policy set wins over the directory (docs/operations.md). Reloads are
  // logged, audited and reported in health by the server (src/server.ts).
  let policy: PolicyEngine;
  try {
    const dir = directorySource(config.policyDir, { clock, debounceMs: DEFAULT_RELOAD_DEBOUNCE_MS });
    const source = opened.policySource ? await opened.policySource(dir) : dir;
    policy = await loadPolicyEngine({ source, watch: true, clock });
  } catch (err) {
    await opened.close();
    throw err;
  }
  const stopPolicyReports = opened.reportPolicy?.(policy);
  if (backends.auditSinks.length > 0) audit = combineAuditSinks(fileAudit, ...backends.auditSinks);
  const tls = config.tls ? { cert: await readFile(config.tls.certFile), key: await readFile(config.tls.keyFile) } : undefined;

  const rotateKey = (): Promise<KeyRotation> =>
    rotateWithPublishDelay(keyRing, {
      clock,
      publishDelayMs: config.keyPublishDelayMs,
      announce: backends.announceKey,
      minAnnouncedDelayMs: KEY_ANNOUNCE_GRACE_MS,
      onPublished: (r) => logger.info({ kid: r.kid, retiring: { kid: r.retired }, delay_ms: r.delayMs }, "new signing key published; it signs after the publish delay"),
    });
  const server = await createCapvendServer({
    settings: config,
    clock,
    logger,
    orchestratorHashes,
    policy,
    keyRing,
    publicKeys: backends.publicKeys,
    sessions: backends.sessions,
    revocations: backends.revocations,
    audit,
    tls,
    telemetry: options.telemetry,
    metrics: options.metrics,
    rotateKey: config.signingKeyFiles.length > 0 ? undefined : () => rotateKey(),
    policyStatuses: backends.policyStatuses,
    replicaQueries: backends.replicaQueries,
  });
  backends.watchHealth?.((service, serving) => server.setHealth(service, serving));
  const address = await server.listen(config.listen.host, config.listen.port);
  logger.info(
    { address: `${address.address}:${address.port}`, tls: Boolean(tls), kid: keyRing.current().kid, alg: keyRing.current().alg, policy_dir: config.policyDir, data_dir: config.dataDir },
    "capvend listening",
  );

  let stopping: Promise<void> | undefined;
  return {
    server,
    address: { host: address.address, port: address.port },
    policy,
    rotateKey,
    stop() {
      stopping ??= (async () => {
        clearInterval(pruneTimer);
        await server.close(config.shutdownGraceMs);
        stopPolicyReports?.();
        policy.close();
        keyRing.close();
        // The final checkpoint while NATS (if any) can still take its copy.
        await fileAudit.checkpoint().catch((err) => logger.error({ err }, "final audit checkpoint failed"));
        await backends!.close();
        await audit.close();
        await fileAudit.close();
        // Last: the spans of the calls drained above are still in the batch.
        if (options.telemetry) await flushTelemetry(options.telemetry, logger);
        logger.info("capvend stopped");
        logger.flush();
      })();
      return stopping;
    },
  };
}

async function flushTelemetry(telemetry: Telemetry, logger: Logger): Promise<void> {
  let timer: ReturnType<typeof systemClock.setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = systemClock.setTimeout(() => resolve("timeout"), TELEMETRY_FLUSH_TIMEOUT_MS);
  });
  try {
    const r = await Promise.race([telemetry.shutdown(), timedOut]);
    if (r === "timeout") logger.warn({ timeout_ms: TELEMETRY_FLUSH_TIMEOUT_MS }, "telemetry export did not finish at shutdown; unsent spans and metrics are dropped");
  } catch (err) {
    logger.warn({ err }, "telemetry flush failed at shutdown");
  } finally {
    if (timer) systemClock.clearTimeout(timer);
  }
}

function nonEmpty(file: string): boolean {
  try {
    return statSync(file).size > 0;
  } catch {
    return false;
  }
}

/**
 * Opens the backends the configuration asks for: with NATS_URL, the JetStream ones (see
 * src/backends/nats/ and docs/operations.md), resolved only once the revocation feed is caught up
 * and this replica's public keys are published; otherwise the durable embedded ones in the
 * data directory, or the in-process ones with CAPVEND_STATE_STORE=memory.
 */
export async function openBackends(opts: BackendOptions): Promise<Backends> {
  if (opts.config.nats) return openNatsBackends(opts, opts.config.nats);
  if (opts.config.natsUrl) throw new Error("NATS_URL is set but the NATS settings were not parsed (load the config with loadConfig)");
  if (opts.config.stateStore === "memory") return openMemoryBackends(opts);
  return openFileBackends(opts);
}

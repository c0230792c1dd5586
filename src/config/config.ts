import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseDuration } from "./duration.js";

/** Defaults, with units. Environment variables and flags override them (see docs/configuration.md). */
export const DEFAULT_LISTEN = "127.0.0.1:8080";
export const DEFAULT_DATA_DIR = "./.capvend";
export const DEFAULT_ISSUER = "https://capvend.local";
export const DEFAULT_TOKEN_TTL_MS = 15 * 60 * 1000;
export const DEFAULT_MAX_TOKEN_TTL_MS = 60 * 60 * 1000;
export const DEFAULT_RENEW_LEAD_MS = 2 * 60 * 1000;
export const DEFAULT_SESSION_MAX_DURATION_MS = 8 * 60 * 60 * 1000;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 15 * 1000;
export const DEFAULT_SHUTDOWN_GRACE_MS = 10 * 1000;
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;
/** CAPVEND_AUDIT_TIMEOUT: how long an audit append may take before the caller gets AUDIT_UNAVAILABLE: 2 s. */
export const DEFAULT_AUDIT_TIMEOUT_MS = 2000;
export const DEFAULT_STREAM_STALL_TIMEOUT_MS = 30 * 1000;
/**
 * CAPVEND_KEY_PUBLISH_DELAY: after a rotation, how long the new key is published in the JWKS
 * before it signs, so verifiers that cache the JWKS have fetched it: 1 minute. The JWKS
 * `Cache-Control: max-age` is never longer than this.
 */
export const DEFAULT_KEY_PUBLISH_DELAY_MS = 60 * 1000;
/** CAPVEND_METRICS: where `/metrics` is served; "main" is the main port. */
export const DEFAULT_METRICS = "main";
/** CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR: live sessions one orchestrator may hold at once. */
export const DEFAULT_MAX_SESSIONS_PER_ORCHESTRATOR = 1000;
/** CAPVEND_MAX_CONNECTIONS: open connections at once, all clients together. */
export const DEFAULT_MAX_CONNECTIONS = 4096;
/** CAPVEND_MAX_CONNECTIONS_PER_ADDRESS: open connections at once from one client address. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256;
/** CAPVEND_IDLE_TIMEOUT: an HTTP/2 connection with no open stream is closed after this long. */
export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60 * 1000;
/** CAPVEND_HANDSHAKE_TIMEOUT: absolute time from accept to a known protocol (sniffed preface or TLS handshake). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10 * 1000;
/** CAPVEND_HEADERS_TIMEOUT: absolute time an HTTP/1.1 request has to deliver its headers. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10 * 1000;
/** CAPVEND_FIRST_REQUEST_TIMEOUT: absolute time from an HTTP/2 connection's start to its first request. */
export const DEFAULT_FIRST_REQUEST_TIMEOUT_MS = 10 * 1000;
/** CAPVEND_MAX_CONCURRENT_STREAMS: SETTINGS_MAX_CONCURRENT_STREAMS advertised and enforced per HTTP/2 connection. */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 1000;
/** CAPVEND_MAX_UNAUTHENTICATED_STREAMS: open health or reflection streams per connection. */
export const DEFAULT_MAX_UNAUTHENTICATED_STREAMS = 16;
/** CAPVEND_MAX_RESETS_PER_SECOND: stream resets a client may send per second on one connection. */
export const DEFAULT_MAX_RESETS_PER_SECOND = 100;
/** CAPVEND_MAX_STREAMS_PER_SESSION: WatchSession streams one session may hold open at once. */
export const DEFAULT_MAX_STREAMS_PER_SESSION = 8;
/** CAPVEND_MAX_STREAMS: WatchSession streams this replica holds open at once. */
export const DEFAULT_MAX_STREAMS = 20_000;
/** CAPVEND_AUDIT_CHECKPOINT_INTERVAL: least time between two signed audit checkpoints. */
export const DEFAULT_AUDIT_CHECKPOINT_INTERVAL_MS = 200;
/** CAPVEND_NATS_TIMEOUT: longest wait for one NATS/JetStream answer (publish ack, KV read or write). */
export const DEFAULT_NATS_TIMEOUT_MS = 2000;
/**
 * CAPVEND_NATS_STARTUP_TIMEOUT: how long a replica's start-up keeps retrying while JetStream
 * is not ready (a cluster electing its leaders) before it fails: 30 s.
 */
export const DEFAULT_NATS_STARTUP_TIMEOUT_MS = 30_000;

/** The example policy shipped with the package: the embedded default. */
export const DEFAULT_POLICY_DIR = path.join(packageRoot(), "examples", "policy");

/** The package's root, found from this module whether it runs from src/ or dist/src/. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("capvend: package.json not found above " + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

export type SigningAlg = "EdDSA" | "ES256";
/** CAPVEND_AUDIT_DURABILITY: "fsync" (each batch reaches the disk before callers hear of it) or "write". */
export type AuditDurability = "fsync" | "write";
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";

/** The whole validated configuration of one replica. Durations in milliseconds. */
export interface Config {
  listen: { host: string; port: number };
  dataDir: string;
  policyDir: string;
  issuer: string;
  tokenTtlMs: number;
  maxTokenTtlMs: number;
  renewLeadMs: number;
  sessionMaxDurationMs: number;
  heartbeatIntervalMs: number;
  streamStallTimeoutMs: number;
  shutdownGraceMs: number;
  maxMessageBytes: number;
  signingAlg: SigningAlg;
  signingKeyFiles: string[];
  /** CAPVEND_ORCHESTRATOR_TOKEN: accepted as the bearer of orchestrator `dev`. */
  orchestratorToken?: string;
  /** Orchestrator id → sha256 hex of its bearer token. */
  orchestratorHashes: Map<string, string>;
  /** Resource server id → sha256 hex of its bearer token. */
  resourceServerHashes: Map<string, string>;
  /** CAPVEND_RESOURCE_SERVER_AUDIENCES: resource server id → the resources whose tokens it may introspect. */
  resourceServerAudiences: Map<string, Set<string>>;
  /** CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR: live sessions one orchestrator may hold at once. */
  maxSessionsPerOrchestrator: number;
  oidc?: { issuer: string; audience: string; jwksUrl?: string; jwksFile?: string };
  tls?: { certFile: string; keyFile: string };
  natsUrl?: string;
  /** Present when NATS_URL is set: how to reach the NATS cluster that replicas share. */
  nats?: NatsSettings;
  replicaId: string;
  /** CAPVEND_KEY_PUBLISH_DELAY in ms: a rotated-in key is in the JWKS this long before it signs (0: at once). */
  keyPublishDelayMs: number;
  /**
   * CAPVEND_METRICS: the Prometheus endpoint `/metrics` on the main port ("main"), on its
   * own `host:port` ("listen"), or not at all ("off").
   */
  metrics: { mode: "main" } | { mode: "off" } | { mode: "listen"; host: string; port: number };
  audit: { durability: AuditDurability; timeoutMs: number; checkpointIntervalMs: number };
  /**
   * CAPVEND_STATE_STORE: where sessions and revocations live without NATS. "file" (default):
   * durable in `<dataDir>/state/`; "memory": lost at exit (tests, throwaway runs).
   */
  stateStore: "file" | "memory";
  /**
   * CAPVEND_ACCEPT_AUDIT_GAP (flag `--accept-audit-gap`): start even though the audit log is
   * shorter than its last checkpoint or missing; the gap is recorded in the log.
   */
  acceptAuditGap: boolean;
  logLevel: LogLevel;
  /** Transport and stream limits (see "Limits and abuse" in docs/architecture.md). */
  limits: LimitSettings;
}

/** Limits that keep one client from exhausting the replica. Durations in ms. */
export interface LimitSettings {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
  headersTimeoutMs: number;
  firstRequestTimeoutMs: number;
  maxConcurrentStreams: number;
  maxUnauthenticatedStreams: number;
  maxResetsPerSecond: number;
  maxStreamsPerSession: number;
  maxStreams: number;
}

/** A setting that failed validation; the message names the setting. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`${setting}: ${message}`);
    this.name = "ConfigError";
  }
}

/** Every setting read below; a flag must name one of them. */
const SETTINGS: ReadonlySet<string> = new Set([
  "CAPVEND_LISTEN", "CAPVEND_DATA_DIR", "CAPVEND_POLICY_DIR", "CAPVEND_ISSUER", "CAPVEND_TOKEN_TTL",
  "CAPVEND_MAX_TOKEN_TTL", "CAPVEND_RENEW_LEAD", "CAPVEND_SESSION_MAX_DURATION", "CAPVEND_HEARTBEAT_INTERVAL",
  "CAPVEND_STREAM_STALL_TIMEOUT", "CAPVEND_SHUTDOWN_GRACE", "CAPVEND_MAX_MESSAGE_BYTES", "CAPVEND_SIGNING_ALG",
  "CAPVEND_SIGNING_KEY_FILES", "CAPVEND_ORCHESTRATOR_TOKEN", "CAPVEND_ORCHESTRATOR_HASHES",
  "CAPVEND_RESOURCE_SERVER_HASHES", "CAPVEND_RESOURCE_SERVER_AUDIENCES", "CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR", "CAPVEND_OIDC_ISSUER", "CAPVEND_OIDC_AUDIENCE", "CAPVEND_OIDC_JWKS_URL",
  "CAPVEND_OIDC_JWKS_FILE", "CAPVEND_TLS_CERT", "CAPVEND_TLS_KEY", "CAPVEND_REPLICA_ID", "CAPVEND_AUDIT_DURABILITY",
  "CAPVEND_AUDIT_TIMEOUT", "CAPVEND_LOG_LEVEL", "CAPVEND_NATS_TIMEOUT", "CAPVEND_NATS_REPLICAS", "CAPVEND_NATS_STARTUP_TIMEOUT",
  "CAPVEND_MAX_CONNECTIONS", "CAPVEND_MAX_CONNECTIONS_PER_ADDRESS", "CAPVEND_IDLE_TIMEOUT", "CAPVEND_HANDSHAKE_TIMEOUT",
  "CAPVEND_HEADERS_TIMEOUT", "CAPVEND_FIRST_REQUEST_TIMEOUT", "CAPVEND_MAX_CONCURRENT_STREAMS",
  "CAPVEND_MAX_UNAUTHENTICATED_STREAMS", "CAPVEND_MAX_RESETS_PER_SECOND", "CAPVEND_MAX_STREAMS_PER_SESSION", "CAPVEND_MAX_STREAMS",
  "CAPVEND_AUDIT_TIMEOUT", "CAPVEND_AUDIT_CHECKPOINT_INTERVAL", "CAPVEND_STATE_STORE", "CAPVEND_ACCEPT_AUDIT_GAP", "CAPVEND_LOG_LEVEL", "CAPVEND_NATS_TIMEOUT", "CAPVEND_NATS_REPLICAS",
  "CAPVEND_KEY_PUBLISH_DELAY", "CAPVEND_METRICS",
  "NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY_SEED_FILE", "NATS_CREDS_FILE",
]);

/** `--nats-*` flags that set CAPVEND_NATS_* settings; every other `--nats-*` flag sets a NATS_* one. */
const CAPVEND_NATS_FLAGS: ReadonlySet<string> = new Set(["nats-timeout", "nats-replicas", "nats-startup-timeout"]);

/** Flags that may stand alone, meaning "true". */
const BOOLEAN_FLAGS: ReadonlySet<string> = new Set(["accept-audit-gap"]);

/**
 * Command-line flags are the environment variables' names in kebab case without the
 * prefix: `--listen` sets CAPVEND_LISTEN, `--token-ttl 5m` sets CAPVEND_TOKEN_TTL,
 * `--nats-url` sets NATS_URL (and `--nats-user` NATS_USER, …). Flags win over the environment;
 * a flag that names no setting is an error, so a typo never leaves a default silently in force.
 */
export function flagsToEnv(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new ConfigError(arg, "unexpected argument (flags look like --listen 127.0.0.1:8080)");
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    } else if (BOOLEAN_FLAGS.has(name) && (argv[i + 1] === undefined || argv[i + 1]!.startsWith("--"))) {
      value = "true";
    } else {
      value = argv[++i];
      if (value === undefined) throw new ConfigError(arg, "needs a value");
    }
    const key = name.startsWith("nats-") && !CAPVEND_NATS_FLAGS.has(name) ? name.replaceAll("-", "_").toUpperCase() : `CAPVEND_${name.replaceAll("-", "_").toUpperCase()}`;
    if (!SETTINGS.has(key)) throw new ConfigError(`--${name}`, "is not a setting (see docs/configuration.md)");
    out[key] = value;
  }
  return out;
}

/** Reads and validates the configuration once, at start. Throws ConfigError naming the setting. */
export function loadConfig(env: Record<string, string | undefined>, argv: readonly string[] = []): Config {
  const e = { ...env, ...flagsToEnv(argv) };
  const str = (name: string): string | undefined => {
    const v = e[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const duration = (name: string, def: number, min = 1): number => {
    const raw = str(name);
    if (raw === undefined) return def;
    const ms = parseDuration(raw);
    if (ms === undefined) throw new ConfigError(name, `"${raw}" is not a duration (use e.g. 90s, 15m, 1h)`);
    if (ms < min) throw new ConfigError(name, `must be at least ${min} ms`);
    return ms;
  };
  const positiveInt = (name: string, def: number): number => {
    const raw = str(name);
    if (raw === undefined) return def;
    if (!/^\d+$/.test(raw) || Number(raw) <= 0) throw new ConfigError(name, `"${raw}" is not a positive integer`);
    return Number(raw);
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], def: T): T => {
    const raw = str(name);
    if (raw === undefined) return def;
    if (!allowed.includes(raw as T)) throw new ConfigError(name, `"${raw}" is not one of ${allowed.join(", ")}`);
    return raw as T;
  };

  const listen = parseListen(str("CAPVEND_LISTEN") ?? DEFAULT_LISTEN);
  const tokenTtlMs = duration("CAPVEND_TOKEN_TTL", DEFAULT_TOKEN_TTL_MS, 1000);
  const maxTokenTtlMs = duration("CAPVEND_MAX_TOKEN_TTL", DEFAULT_MAX_TOKEN_TTL_MS, 1000);
  if (tokenTtlMs > maxTokenTtlMs) {
    throw new ConfigError("CAPVEND_TOKEN_TTL", `must not exceed CAPVEND_MAX_TOKEN_TTL (${str("CAPVEND_MAX_TOKEN_TTL") ?? "1h"})`);
  }

  const issuer = str("CAPVEND_ISSUER") ?? DEFAULT_ISSUER;
  try {
    const u = new URL(issuer);
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error();
  } catch {
    throw new ConfigError("CAPVEND_ISSUER", `"${issuer}" is not an http(s) URL`);
  }

  const tlsCert = str("CAPVEND_TLS_CERT");
  const tlsKey = str("CAPVEND_TLS_KEY");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new ConfigError(tlsCert ? "CAPVEND_TLS_KEY" : "CAPVEND_TLS_CERT", "CAPVEND_TLS_CERT and CAPVEND_TLS_KEY go together");
  }

  const oidcIssuer = str("CAPVEND_OIDC_ISSUER");
  let oidc: Config["oidc"];
  if (oidcIssuer) {
    const audience = str("CAPVEND_OIDC_AUDIENCE");
    if (!audience) throw new ConfigError("CAPVEND_OIDC_AUDIENCE", "is required when CAPVEND_OIDC_ISSUER is set");
    const jwksUrl = str("CAPVEND_OIDC_JWKS_URL");
    const jwksFile = str("CAPVEND_OIDC_JWKS_FILE");
    if (!jwksUrl === !jwksFile) {
      throw new ConfigError("CAPVEND_OIDC_JWKS_URL", "set exactly one of CAPVEND_OIDC_JWKS_URL and CAPVEND_OIDC_JWKS_FILE");
    }
    if (jwksUrl) {
      try {
        new URL(jwksUrl);
      } catch {
        throw new ConfigError("CAPVEND_OIDC_JWKS_URL", `"${jwksUrl}" is not a URL`);
      }
    }
    oidc = { issuer: oidcIssuer, audience, jwksUrl, jwksFile };
  }

  const orchestratorToken = str("CAPVEND_ORCHESTRATOR_TOKEN");
  if (orchestratorToken !== undefined && orchestratorToken.length < 16) {
    throw new ConfigError("CAPVEND_ORCHESTRATOR_TOKEN", "must be at least 16 characters");
  }

  const resourceServerHashes = parseHashes("CAPVEND_RESOURCE_SERVER_HASHES", str("CAPVEND_RESOURCE_SERVER_HASHES"));
  const nats = parseNatsSettings(str, duration("CAPVEND_NATS_TIMEOUT", DEFAULT_NATS_TIMEOUT_MS, 100), duration("CAPVEND_NATS_STARTUP_TIMEOUT", DEFAULT_NATS_STARTUP_TIMEOUT_MS, 1000));

  return {
    listen,
    dataDir: path.resolve(str("CAPVEND_DATA_DIR") ?? DEFAULT_DATA_DIR),
    policyDir: path.resolve(str("CAPVEND_POLICY_DIR") ?? DEFAULT_POLICY_DIR),
    issuer,
    tokenTtlMs,
    maxTokenTtlMs,
    renewLeadMs: duration("CAPVEND_RENEW_LEAD", DEFAULT_RENEW_LEAD_MS),
    sessionMaxDurationMs: duration("CAPVEND_SESSION_MAX_DURATION", DEFAULT_SESSION_MAX_DURATION_MS, 1000),
    heartbeatIntervalMs: duration("CAPVEND_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL_MS, 100),
    streamStallTimeoutMs: duration("CAPVEND_STREAM_STALL_TIMEOUT", DEFAULT_STREAM_STALL_TIMEOUT_MS, 100),
    shutdownGraceMs: duration("CAPVEND_SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE_MS, 0),
    maxMessageBytes: positiveInt("CAPVEND_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES),
    signingAlg: oneOf("CAPVEND_SIGNING_ALG", ["EdDSA", "ES256"] as const, "EdDSA"),
    signingKeyFiles: (str("CAPVEND_SIGNING_KEY_FILES") ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    orchestratorToken,
    orchestratorHashes: parseHashes("CAPVEND_ORCHESTRATOR_HASHES", str("CAPVEND_ORCHESTRATOR_HASHES")),
    resourceServerHashes,
    resourceServerAudiences: parseAudiences(str("CAPVEND_RESOURCE_SERVER_AUDIENCES"), resourceServerHashes),
    maxSessionsPerOrchestrator: positiveInt("CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR", DEFAULT_MAX_SESSIONS_PER_ORCHESTRATOR),
    oidc,
    tls: tlsCert && tlsKey ? { certFile: tlsCert, keyFile: tlsKey } : undefined,
    natsUrl: str("NATS_URL"),
    nats,
    replicaId: str("CAPVEND_REPLICA_ID") ?? `capvend-${process.pid}`,
    keyPublishDelayMs: duration("CAPVEND_KEY_PUBLISH_DELAY", DEFAULT_KEY_PUBLISH_DELAY_MS, 0),
    metrics: parseMetrics(str("CAPVEND_METRICS") ?? DEFAULT_METRICS),
    audit: {
      durability: oneOf("CAPVEND_AUDIT_DURABILITY", ["fsync", "write"] as const, "fsync"),
      timeoutMs: duration("CAPVEND_AUDIT_TIMEOUT", DEFAULT_AUDIT_TIMEOUT_MS, 1),
      checkpointIntervalMs: str("CAPVEND_AUDIT_CHECKPOINT_INTERVAL") === "0" ? 0 : duration("CAPVEND_AUDIT_CHECKPOINT_INTERVAL", DEFAULT_AUDIT_CHECKPOINT_INTERVAL_MS, 1),
    },
    stateStore: oneOf("CAPVEND_STATE_STORE", ["file", "memory"] as const, "file"),
    acceptAuditGap: oneOf("CAPVEND_ACCEPT_AUDIT_GAP", ["true", "false", "1", "0"] as const, "false") === "true" || str("CAPVEND_ACCEPT_AUDIT_GAP") === "1",
    logLevel: oneOf("CAPVEND_LOG_LEVEL", ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const, "info"),
    limits: {
      maxConnections: positiveInt("CAPVEND_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS),
      maxConnectionsPerAddress: positiveInt("CAPVEND_MAX_CONNECTIONS_PER_ADDRESS", DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
      idleTimeoutMs: duration("CAPVEND_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT_MS, 100),
      handshakeTimeoutMs: duration("CAPVEND_HANDSHAKE_TIMEOUT", DEFAULT_HANDSHAKE_TIMEOUT_MS, 100),
      headersTimeoutMs: duration("CAPVEND_HEADERS_TIMEOUT", DEFAULT_HEADERS_TIMEOUT_MS, 100),
      firstRequestTimeoutMs: duration("CAPVEND_FIRST_REQUEST_TIMEOUT", DEFAULT_FIRST_REQUEST_TIMEOUT_MS, 100),
      maxConcurrentStreams: positiveInt("CAPVEND_MAX_CONCURRENT_STREAMS", DEFAULT_MAX_CONCURRENT_STREAMS),
      maxUnauthenticatedStreams: positiveInt("CAPVEND_MAX_UNAUTHENTICATED_STREAMS", DEFAULT_MAX_UNAUTHENTICATED_STREAMS),
      maxResetsPerSecond: positiveInt("CAPVEND_MAX_RESETS_PER_SECOND", DEFAULT_MAX_RESETS_PER_SECOND),
      maxStreamsPerSession: positiveInt("CAPVEND_MAX_STREAMS_PER_SESSION", DEFAULT_MAX_STREAMS_PER_SESSION),
      maxStreams: positiveInt("CAPVEND_MAX_STREAMS", DEFAULT_MAX_STREAMS),
    },
  };
}

function parseMetrics(raw: string): Config["metrics"] {
  if (raw === "main" || raw === "off") return { mode: raw };
  try {
    return { mode: "listen", ...parseListen(raw) };
  } catch {
    throw new ConfigError("CAPVEND_METRICS", `"${raw}" is not main, off or host:port (e.g. 127.0.0.1:9464)`);
  }
}

function parseListen(raw: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(raw);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError("CAPVEND_LISTEN", `"${raw}" is not host:port (e.g. 127.0.0.1:8080, [::1]:8080, :8080)`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** `id=sha256hex,id2=sha256hex` → Map. */
function parseHashes(setting: string, raw: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!raw) return out;
  for (const entry of raw.split(",").map((s) => s.trim()).filter(Boolean)) {
    const eq = entry.indexOf("=");
    const id = entry.slice(0, eq).trim();
    const hash = entry.slice(eq + 1).trim().toLowerCase();
    if (eq <= 0 || !id) throw new ConfigError(setting, `entry "${entry}" is not id=sha256hex`);
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new ConfigError(setting, `the hash for "${id}" is not 64 hex digits (sha256)`);
    if (out.has(id)) throw new ConfigError(setting, `"${id}" appears twice`);
    out.set(id, hash);
  }
  return out;
}

/**
 * `{"<resource server id>": ["<resource>", …], …}` → Map. Every id must be a configured
 * resource server (CAPVEND_RESOURCE_SERVER_HASHES), so a typo cannot leave one without its
 * audiences unnoticed; a resource server left out may not introspect at all.
 */
function parseAudiences(raw: string | undefined, resourceServers: ReadonlyMap<string, string>): Map<string, Set<string>> {
  const setting = "CAPVEND_RESOURCE_SERVER_AUDIENCES";
  const out = new Map<string, Set<string>>();
  if (!raw) return out;
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw new ConfigError(setting, 'is not JSON (e.g. {"crm-gateway":["salesforce"],"calendar-api":["calendar"]})');
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new ConfigError(setting, "must be a JSON object of resource server id to a list of resources");
  for (const [id, list] of Object.entries(doc)) {
    if (!resourceServers.has(id)) throw new ConfigError(setting, `"${id}" is not a resource server of CAPVEND_RESOURCE_SERVER_HASHES`);
    if (!Array.isArray(list) || list.length === 0 || !list.every((a) => typeof a === "string" && a.length > 0)) {
      throw new ConfigError(setting, `the audiences of "${id}" must be a non-empty list of resource names`);
    }
    out.set(id, new Set(list as string[]));
  }
  return out;
}

/** How to reach NATS (from NATS_URL and the usual NATS_* credentials). At most one credential kind is set. */
export interface NatsSettings {
  /** NATS_URL split on commas, e.g. ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]. */
  servers: string[];
  /** NATS_USER and NATS_PASSWORD, together. */
  user?: string;
  password?: string;
  /** NATS_TOKEN. */
  token?: string;
  /** NATS_NKEY_SEED_FILE: a file holding an nkey seed (SU…). */
  nkeySeedFile?: string;
  /** NATS_CREDS_FILE: a .creds file (user JWT and seed). */
  credsFile?: string;
  /** CAPVEND_NATS_TIMEOUT in ms (default 2 s): bounds every publish, KV read and KV write. */
  timeoutMs: number;
  /**
   * CAPVEND_NATS_STARTUP_TIMEOUT in ms (default 30 s, at least 1 s): how long start-up retries
   * while JetStream is not ready before the replica fails to start.
   */
  startupTimeoutMs: number;
  /** CAPVEND_NATS_REPLICAS (1–5): replicas of capvend's streams and buckets; unset means 3 on a cluster, else 1. */
  replicas?: number;
}

/** Hides `user:password@` in a server address, with or without a scheme, before it is echoed. */
function maskUserInfo(server: string): string {
  return server.replace(/^((?:[a-z][a-z0-9+.-]*:\/\/)?)[^@/]*@/i, "$1***@");
}

function parseNatsSettings(str: (name: string) => string | undefined, timeoutMs: number, startupTimeoutMs: number): NatsSettings | undefined {
  const url = str("NATS_URL");
  if (url === undefined) return undefined;
  const servers = url.split(",").map((s) => s.trim()).filter(Boolean);
  for (const server of servers) {
    let u: URL | undefined;
    try {
      u = new URL(server.includes("://") ? server : `nats://${server}`);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== "nats:" && u.protocol !== "tls:") || u.hostname === "") {
      throw new ConfigError("NATS_URL", `"${maskUserInfo(server)}" is not a NATS server URL (e.g. nats://127.0.0.1:4222, several separated by commas)`);
    }
  }
  if (servers.length === 0) throw new ConfigError("NATS_URL", "lists no server");
  const user = str("NATS_USER");
  const password = str("NATS_PASSWORD");
  if ((user === undefined) !== (password === undefined)) {
    throw new ConfigError(user === undefined ? "NATS_USER" : "NATS_PASSWORD", "NATS_USER and NATS_PASSWORD go together");
  }
  const token = str("NATS_TOKEN");
  const nkeySeedFile = str("NATS_NKEY_SEED_FILE");
  const credsFile = str("NATS_CREDS_FILE");
  const kinds = [user && "NATS_USER", token && "NATS_TOKEN", nkeySeedFile && "NATS_NKEY_SEED_FILE", credsFile && "NATS_CREDS_FILE"].filter(Boolean);
  if (kinds.length > 1) throw new ConfigError(kinds[1] as string, `set only one kind of NATS credential (got ${kinds.join(" and ")})`);
  for (const [setting, file] of [["NATS_NKEY_SEED_FILE", nkeySeedFile], ["NATS_CREDS_FILE", credsFile]] as const) {
    if (file !== undefined && !existsSync(file)) throw new ConfigError(setting, `${file} does not exist`);
  }
  const rawReplicas = str("CAPVEND_NATS_REPLICAS");
  let replicas: number | undefined;
  if (rawReplicas !== undefined) {
    replicas = Number(rawReplicas);
    if (!/^[1-5]$/.test(rawReplicas)) throw new ConfigError("CAPVEND_NATS_REPLICAS", `"${rawReplicas}" is not a replica count from 1 to 5`);
  }
  return { servers, user, password, token, nkeySeedFile, credsFile, timeoutMs, startupTimeoutMs, replicas };
}

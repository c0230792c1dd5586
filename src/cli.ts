#!/usr/bin/env -S node --max-semi-space-size=64
import { readFileSync } from "node:fs";
import { auditCommand } from "./audit/cli.js";
import { sha256Hex } from "./auth/credentials.js";
import path from "node:path";
import { ConfigError, loadConfig, packageRoot } from "./config/config.js";
import { remoteKeysRotate } from "./cli/admin-commands.js";
import { revokeCommand, SESSION_USAGE, sessionCommand } from "./cli/session-command.js";
import { createLogger } from "./logging/logger.js";
import { describeError } from "./errors.js";
import { keysCommand } from "./keys/keys-command.js";
import { policyCommand } from "./policy/policy-command.js";
import { startCapvend } from "./main.js";
import { routeDiagToLogger } from "./telemetry/diag-logger.js";
import { telemetryFromEnv } from "./telemetry/env.js";
import { prometheusReader } from "./telemetry/prometheus.js";

const USAGE = `capvend — token vending service for AI agents

usage:
  capvend serve [--listen host:port] [--data-dir DIR] [--policy-dir DIR] [--<setting> VALUE ...]
      Runs a replica. Every CAPVEND_* variable has a flag of the same name in kebab case
      (CAPVEND_TOKEN_TTL → --token-ttl); see docs/configuration.md.
  capvend session start|list|show|end ...    Sessions on a running server (capvend session --help).
  capvend revoke --session|--agent|--user|--resource|--token VALUE [--reason TEXT]
  capvend keys rotate [--address URL]        Rotates the running server's key (published first, signs after
                                             CAPVEND_KEY_PUBLISH_DELAY). Without --address or CAPVEND_ADDRESS:
  capvend keys list|rotate [--data-dir DIR]  offline, on a stopped replica's data directory.
  capvend policy check DIR | explain ... | push DIR [--wait 30s] | status | reload   (capvend policy --help)
  capvend audit verify [PATH]         Checks the audit log's hash chain; reports the first broken record.
  capvend audit tail [--follow] [--session S] [--agent A] [--user U] [--dir DIR]
  capvend hash-token                  Reads a bearer token on stdin, prints its sha256 for CAPVEND_*_HASHES.
  capvend --version

Remote commands talk to --address (or CAPVEND_ADDRESS; default http://127.0.0.1:8080) with the
orchestrator token in CAPVEND_TOKEN (or CAPVEND_ORCHESTRATOR_TOKEN, or --token-file FILE).
`;

async function serve(argv: string[]): Promise<number> {
  let config;
  try {
    config = loadConfig(process.env, argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`capvend: bad configuration: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel, replica: config.replicaId });
  routeDiagToLogger(logger);
  const metrics = prometheusReader(config, logger);
  const otel = telemetryFromEnv(process.env, { serviceInstanceId: config.replicaId, metricReaders: metrics ? [metrics] : [] });
  for (const w of otel.warnings) logger.warn(w);
  if (otel.traces.length + otel.metrics.length > 0) logger.info({ traces: otel.traces, metrics: otel.metrics }, "telemetry exporting");
  else logger.info("telemetry not exported: set OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_TRACES_EXPORTER=console");
  let running;
  try {
    running = await startCapvend(config, logger, { telemetry: otel.telemetry, metrics: config.metrics.mode === "main" ? metrics : undefined });
  } catch (err) {
    await otel.telemetry.shutdown().catch(() => undefined);
    // Policy files that do not parse, unreadable keys, a busy port: say which and stop.
    logger.fatal({ err }, "capvend failed to start");
    logger.flush();
    process.stderr.write(`capvend: failed to start: ${describeError(err)}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (++signals > 1) {
        logger.warn({ signal }, "second signal: exiting at once");
        resolve(1);
        return;
      }
      logger.info({ signal, grace_ms: config.shutdownGraceMs }, "shutting down: draining streams and in-flight calls");
      // Bounded: stop() itself is bounded by the grace period; this guards the rest.
      const hard = setTimeout(() => resolve(1), config.shutdownGraceMs + 5000);
      hard.unref();
      running.stop().then(
        () => resolve(0),
        (err) => {
          logger.error({ err }, "error while stopping");
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    // SIGHUP rotates the signing key without a restart (docs/operations.md).
    process.on("SIGHUP", () => {
      running.rotateKey().then(
        ({ kid, retired, activated }) =>
          activated.then(
            () => logger.info({ kid, retired: { kid: retired } }, "signing key rotated"),
            (err) => logger.error({ err }, "signing key rotation failed; the current key keeps signing"),
          ),
        (err) => logger.error({ err }, "signing key rotation failed; the current key keeps signing"),
      );
    });
  });
}

function io() {
  return { stdout: (s: string) => process.stdout.write(s), stderr: (s: string) => process.stderr.write(s), env: process.env };
}

/** The version in the package.json this CLI ships in. */
function packageVersion(): string {
  const text = readFileSync(path.join(packageRoot(), "package.json"), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "audit":
      return auditCommand(rest, { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) });
    case "policy":
      return policyCommand(rest, { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s), env: process.env });
    case "keys":
      // With an address the running server rotates; without, the offline data-directory commands.
      if (rest[0] === "rotate" && (process.env.CAPVEND_ADDRESS || rest.some((a) => a === "--address" || a.startsWith("--address=")))) {
        return remoteKeysRotate(rest.slice(1), io());
      }
      return keysCommand(rest, { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s), env: process.env });
    case "session":
      if (rest[0] === "--help" || rest[0] === "-h") {
        process.stdout.write(SESSION_USAGE);
        return 0;
      }
      return sessionCommand(rest, io());
    case "revoke":
      return revokeCommand(rest, io());
    case "--version":
    case "-v":
    case "version":
      process.stdout.write(`capvend ${packageVersion()}\n`);
      return 0;
    case "hash-token": {
      const token = readFileSync(0, "utf8").trim();
      if (!token) {
        process.stderr.write("capvend: no token on stdin\n");
        return 2;
      }
      process.stdout.write(sha256Hex(token) + "\n");
      return 0;
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`capvend: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`capvend: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);

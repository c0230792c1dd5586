/** Shared set-up for the NATS backend tests: a connection to a test server, fresh streams and buckets. */
import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { systemClock, type Clock } from "../../src/clock.js";
import { pino } from "pino";
import type { Logger } from "../../src/logging/logger.js";
import { memoryLogDestination } from "../helpers/memory-log.js";
import { ensureBucket, ensureStream } from "../../src/backends/nats/jetstream-setup.js";
import { startupRetry, type StartupRetry } from "../../src/backends/nats/startup-retry.js";
import { openKvSessionStore, type KvSessionStore } from "../../src/backends/nats/kv-session-store.js";
import { NatsLink } from "../../src/backends/nats/link-state.js";
import { openNatsRevocationList, type NatsRevocationList, type NatsRevocationListOptions } from "../../src/backends/nats/nats-revocation-list.js";

/** A logger that keeps its lines in memory (warnings and up). */
export function memoryLogger(): { logger: Logger; lines: string[] } {
  const { destination, lines } = memoryLogDestination();
  // Plain pino (the backends take any pino logger): these tests are about NATS, not log formatting.
  return { logger: pino({ level: "warn", base: { replica: "nats-test" } }, destination), lines };
}

/** One client connection with the pieces the backends take. */
export interface TestClient {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  link: NatsLink;
  logger: Logger;
  lines: string[];
  clock: Clock;
  close(): Promise<void>;
}

/** Connects to `url` the way the backends do: reconnect forever, quickly. */
export async function connectClient(url: string, timeoutMs = 2000): Promise<TestClient> {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 200, reconnectJitter: 100, timeout: 5000 });
  const { logger, lines } = memoryLogger();
  const link = new NatsLink(nc, logger);
  return {
    nc,
    js: jetstream(nc, { timeout: timeoutMs }),
    jsm: await jetstreamManager(nc, { timeout: timeoutMs }),
    link,
    logger,
    lines,
    clock: systemClock,
    async close() {
      link.close();
      await nc.close().catch(() => undefined);
    },
  };
}

/** A start-up budget for test set-up through client `c`: generous, since the machine is shared. */
export function testStartup(c: Pick<TestClient, "clock" | "logger">, timeoutMs = 30_000): StartupRetry {
  return startupRetry({ clock: c.clock, logger: c.logger, timeoutMs });
}

/** A unique suffix for stream, bucket and subject names. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString("hex")}`;
}

/** Creates a revocation stream of its own (subjects `<prefix>.>`), as the backends create theirs. */
export async function createRevocationStream(c: TestClient, replicas = 1): Promise<{ stream: string; subjectPrefix: string }> {
  const stream = uniqueName("T_REV").toUpperCase();
  const subjectPrefix = `${stream.toLowerCase()}.revocations`;
  await ensureStream(c.jsm, { name: stream, subjects: [`${subjectPrefix}.>`], description: "test", maxAgeMs: 60 * 60 * 1000, replicas }, testStartup(c));
  return { stream, subjectPrefix };
}

/** Opens a revocation list on `feed` through client `c`. */
export function openList(c: TestClient, feed: { stream: string; subjectPrefix: string }, extra: Partial<NatsRevocationListOptions> = {}): Promise<NatsRevocationList> {
  return openNatsRevocationList({ js: c.js, jsm: c.jsm, link: c.link, clock: c.clock, logger: c.logger, replica: "test", timeoutMs: 2000, startCatchUpTimeoutMs: 10_000, ...feed, ...extra });
}

/** Creates a session bucket of its own and opens a store on it through client `c`. */
export async function createSessionBucket(c: TestClient, replicas = 1): Promise<string> {
  const bucket = uniqueName("t_sessions");
  await ensureBucket(c.js, c.jsm, { bucket, description: "test", ttlMs: 60 * 60 * 1000, replicas, timeoutMs: 2000 }, testStartup(c));
  return bucket;
}

export async function openStore(c: TestClient, bucket: string): Promise<KvSessionStore> {
  const { kv } = await ensureBucket(c.js, c.jsm, { bucket, description: "test", ttlMs: 60 * 60 * 1000, replicas: 1, timeoutMs: 2000 }, testStartup(c));
  return openKvSessionStore({ kv, jsm: c.jsm, link: c.link, clock: c.clock, logger: c.logger, timeoutMs: 2000, bucket });
}

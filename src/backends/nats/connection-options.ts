import { readFile } from "node:fs/promises";
import { credsAuthenticator, nkeyAuthenticator, type NodeConnectionOptions } from "@nats-io/transport-node";
import type { NatsSettings } from "../../config/config.js";

/** Wait between reconnect attempts to one server: 1 s (plus jitter). */
export const NATS_RECONNECT_WAIT_MS = 1000;
/** Upper bound of the random delay added to each reconnect wait, so a fleet does not reconnect in step: 1 s. */
export const NATS_RECONNECT_JITTER_MS = 1000;
/** How long the first connection (and each reconnect handshake) may take: 5 s. */
export const NATS_CONNECT_TIMEOUT_MS = 5000;
/**
 * Client pings every 10 s; two unanswered pings mark the connection stale. A server that
 * vanished without closing the socket is noticed within about 30 s instead of minutes.
 */
export const NATS_PING_INTERVAL_MS = 10_000;
export const NATS_MAX_PINGS_OUT = 2;

/**
 * Builds nats.js connection options from validated settings: every server, the one
 * credential kind configured (files are read here, never logged), and reconnect forever
 * with wait and jitter: a replica outlives any NATS outage and catches up afterwards.
 */
export async function natsConnectionOptions(settings: NatsSettings, name: string): Promise<NodeConnectionOptions> {
  const opts: NodeConnectionOptions = {
    servers: settings.servers,
    name,
    timeout: NATS_CONNECT_TIMEOUT_MS,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: NATS_RECONNECT_WAIT_MS,
    reconnectJitter: NATS_RECONNECT_JITTER_MS,
    reconnectJitterTLS: NATS_RECONNECT_JITTER_MS,
    pingInterval: NATS_PING_INTERVAL_MS,
    maxPingOut: NATS_MAX_PINGS_OUT,
    waitOnFirstConnect: false,
  };
  if (settings.user !== undefined) {
    opts.user = settings.user;
    opts.pass = settings.password;
  } else if (settings.token !== undefined) {
    opts.token = settings.token;
  } else if (settings.nkeySeedFile !== undefined) {
    const seed = (await readSecretFile(settings.nkeySeedFile, "NATS_NKEY_SEED_FILE")).trim();
    opts.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  } else if (settings.credsFile !== undefined) {
    opts.authenticator = credsAuthenticator(new TextEncoder().encode(await readSecretFile(settings.credsFile, "NATS_CREDS_FILE")));
  }
  return opts;
}

async function readSecretFile(file: string, setting: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    // The path is configuration, not a secret; the contents never reach the message.
    throw new Error(`${setting}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
}

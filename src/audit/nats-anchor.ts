/**
 * Checkpoints on the JetStream audit stream: each replica publishes its signed checkpoints on
 * `capvend.audit.checkpoint.<kid>` (kid: the audit signing key's thumbprint), so a copy of the
 * chain head lives outside the replica's disk. `capvend audit verify --anchor nats://…` reads
 * the newest one back.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { Checkpoint } from "./checkpoint.js";
import { parseCheckpoint } from "./checkpoint.js";

/** The JetStream stream audit events and checkpoints go to (see src/backends/nats/names.ts). */
export const AUDIT_ANCHOR_STREAM = "CAPVEND_AUDIT";

/** Subject of one log's checkpoints: `capvend.audit.checkpoint.<kid>`. */
export function checkpointSubject(kid: string): string {
  return `capvend.audit.checkpoint.${kid}`;
}

/** The JSON published for a checkpoint (the head file's content). */
export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(c));
}

/**
 * Reads the newest checkpoint of the log signed by `kid` from the JetStream audit stream at
 * `url` (a nats:// URL; user:password in it are used). Rejects naming what was missing.
 */
export async function fetchNatsCheckpoint(url: string, kid: string, timeoutMs = 5000): Promise<Checkpoint> {
  const u = new URL(url);
  const server = `${u.protocol}//${u.host}`;
  const nc = await connect({
    servers: server,
    timeout: timeoutMs,
    ...(u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : {}),
  });
  try {
    const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
    const subject = checkpointSubject(kid);
    let msg;
    try {
      msg = await jsm.streams.getMessage(AUDIT_ANCHOR_STREAM, { last_by_subj: subject });
    } catch (err) {
      throw new Error(`no checkpoint on ${subject} in stream ${AUDIT_ANCHOR_STREAM} at ${server}: ${(err as Error).message}`);
    }
    if (!msg) throw new Error(`no checkpoint on ${subject} in stream ${AUDIT_ANCHOR_STREAM} at ${server}`);
    return parseCheckpoint(new TextDecoder().decode(msg.data), `${server} ${subject}`);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

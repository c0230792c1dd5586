/** The JetStream audit sink: what it publishes, what it refuses, and how it behaves while NATS is away. */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureStream } from "../../src/backends/nats/jetstream-setup.js";
import { createJetStreamAuditSink, type JetStreamAuditSinkOptions } from "../../src/backends/nats/jetstream-audit-sink.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";
import { connectClient, testStartup, uniqueName, type TestClient } from "./fixtures.js";

let server: NatsServer;
let c: TestClient;

beforeAll(async () => {
  server = await startNatsServer();
  c = await connectClient(server.url);
});
afterAll(async () => {
  await c?.close();
  await server?.cleanup();
});

async function auditStream(): Promise<{ stream: string; subjectPrefix: string }> {
  const stream = uniqueName("T_AUDIT").toUpperCase();
  const subjectPrefix = `${stream.toLowerCase()}.audit`;
  await ensureStream(c.jsm, { name: stream, subjects: [`${subjectPrefix}.>`], description: "test", maxAgeMs: 60_000, replicas: 1 }, testStartup(c));
  return { stream, subjectPrefix };
}

function sink(subjectPrefix: string, extra: Partial<JetStreamAuditSinkOptions> = {}) {
  return createJetStreamAuditSink({ js: c.js, link: c.link, clock: c.clock, logger: c.logger, replica: "replica-a", timeoutMs: 1000, subjectPrefix, ...extra });
}

const messages = async (stream: string) => (await c.jsm.streams.info(stream)).state.messages;

describe("JetStream audit sink", () => {
  it("publishes each event on <prefix>.<type> as JSON stamped with time and replica, acknowledged before append resolves", async () => {
    const { stream, subjectPrefix } = await auditStream();
    const s = sink(subjectPrefix);
    await s.append({ type: "token.issued", session_id: "ses_x", agent_id: "sales-bot", jti: "tok_1", scopes: ["read"], exp: 1_900_000_000 });
    const stored = await c.jsm.streams.getMessage(stream, { last_by_subj: `${subjectPrefix}.token.issued` });
    const body = stored!.json<Record<string, unknown>>();
    expect(body).toMatchObject({ type: "token.issued", session_id: "ses_x", jti: "tok_1", replica: "replica-a" });
    expect(Date.parse(body.time as string)).toBeGreaterThan(Date.now() - 60_000);
    expect(body).not.toHaveProperty("hash");
    expect(stored!.header.get("Nats-Msg-Id")).not.toBe("");
    expect(s.state).toMatchObject({ healthy: true, pending: 0 });
    await s.close();
  });

  it("refuses an event carrying something that looks like a credential, and publishes nothing", async () => {
    const { stream, subjectPrefix } = await auditStream();
    const s = sink(subjectPrefix);
    const credential = `ses_${randomBytes(16).toString("base64url")}.${randomBytes(32).toString("base64url")}`;
    await expect(s.append({ type: "session.started", reason: credential })).rejects.toMatchObject({ errorCode: "audit_event_refused" });
    expect(await messages(stream)).toBe(0);
    await s.close();
  });

  it("spools while NATS is unreachable (the file log holds the record), fails closed when the spool is full, and flushes in order after reconnect", async () => {
    const { stream, subjectPrefix } = await auditStream();
    const s = sink(subjectPrefix, { spoolLimit: 3 });
    await server.stop();
    await waitFor(() => !c.link.connected, "the outage to be noticed");
    for (const jti of ["tok_a", "tok_b", "tok_c"]) await s.append({ type: "token.renewed", jti });
    expect(s.spooled).toBe(3);
    // Spooling is not failing: appends resolved. A full spool is.
    expect(s.state).toMatchObject({ healthy: true, pending: 3 });
    await expect(s.append({ type: "token.renewed", jti: "tok_d" })).rejects.toMatchObject({ errorCode: "audit_unavailable" });
    expect(s.state.healthy).toBe(false);

    await server.start();
    await waitFor(() => s.spooled === 0, "the spool to flush");
    expect(await messages(stream)).toBe(3);
    expect(s.state.healthy).toBe(true);
    await s.close();
  }, 40_000);

  it("without a spool, rejects with audit_unavailable while NATS is unreachable", async () => {
    const { subjectPrefix } = await auditStream();
    const s = sink(subjectPrefix, { spoolLimit: 0, timeoutMs: 500 });
    await server.stop();
    try {
      await waitFor(() => !c.link.connected, "the outage to be noticed");
      // Refused when its publish goes unacknowledged (a hang would fail the test on its timeout).
      const err = await s.append({ type: "token.issued", jti: "tok_x" }).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ errorCode: "audit_unavailable" });
      expect((err as { rawMessage: string }).rawMessage).toMatch(/^audit record not written: JetStream did not acknowledge it/);
      expect(s.state.healthy).toBe(false);
    } finally {
      await server.start();
      await waitFor(() => c.link.connected, "the reconnect");
      await s.close();
    }
  }, 40_000);
});

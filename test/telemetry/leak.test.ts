import { createPrivateKey } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { memoryLogDestination } from "../helpers/memory-log.js";
import { SpanStatusCode } from "@opentelemetry/api";
import { ConnectError } from "@connectrpc/connect";
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { createLogger } from "../../src/logging/logger.js";
import { REDACTED } from "../../src/security/redact.js";
import { GATEWAY_TOKEN, ORCHESTRATOR_TOKEN, startHarness, type Harness } from "../helpers/harness.js";
import { collect } from "../helpers/stream-collector.js";
import { clientWith, memoryTelemetry, named, spanText, type MemoryTelemetry } from "./helpers.js";

/**
 * Secrets must not leave through spans, logs or audit records, whatever a caller sends. The
 * scenario below produces every kind of secret capvend handles and feeds some of them back in
 * the places a careless implementation would echo them (a resource name, a bearer, a reason).
 */

let h: Harness;
let mt: MemoryTelemetry;
let spans: ReadableSpan[];
const secrets = new Map<string, string>();

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  mt = memoryTelemetry();
  h = await startHarness({ telemetry: mt.telemetry });
  const orchestrator = clientWith(h.url, ORCHESTRATOR_TOKEN);
  const started = await orchestrator.startSession({
    agentId: "sales-bot",
    userId: "alice",
    grants: [
      { resource: "salesforce", scopes: ["read", "write"] },
      { resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } },
    ],
  });
  const credential = started.sessionCredential;
  const runtime = clientWith(h.url, credential);

  // Issue, then denials: a grant policy forbids (at StartSession), a TTL policy caps (at IssueToken).
  const { token } = await runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
  const jwt = token!.accessToken;
  expect((await failure(orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "salesforce", scopes: ["delete"] }] }))).rawMessage).toContain("no-salesforce-delete");
  const reporter = await orchestrator.startSession({ agentId: "report-bot", grants: [{ resource: "warehouse", scopes: ["read"] }] });
  expect((await failure(clientWith(h.url, reporter.sessionCredential).issueToken({ resource: "warehouse", scopes: ["read"], ttl: { seconds: 3600n } }))).rawMessage).toContain("no policy permits it");

  // A stream whose 3 s token renews at least once.
  const ac = new AbortController();
  const watch = collect(runtime.watchSession({ grants: [{ resource: "calendar", scopes: ["read"], ttl: { seconds: 3n } }] }, { signal: ac.signal }));
  await watch.until(() => watch.tokens().length >= 2, "a renewal");

  // The token where it belongs (Introspect), and where it does not: as an id, a bearer, a reason.
  expect((await clientWith(h.url, GATEWAY_TOKEN).introspect({ token: jwt })).active).toBe(true);
  await failure(runtime.issueToken({ resource: jwt, scopes: ["read"] }));
  await failure(runtime.issueToken({ resource: "salesforce", scopes: [jwt] }));
  await failure(clientWith(h.url, jwt).issueToken({ resource: "salesforce", scopes: ["read"] }));
  await failure(clientWith(h.url, `${credential.split(".")[0]}.${"A".repeat(43)}`).issueToken({ resource: "salesforce", scopes: ["read"] }));
  await failure(orchestrator.startSession({ agentId: credential, grants: [{ resource: "calendar", scopes: ["read"] }] }));
  await orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId }, reason: `leaked ${jwt}` }).catch(() => undefined);
  await failure(orchestrator.revoke({ target: { case: "tokenId", value: jwt } })).catch(() => undefined);
  // A policy reload is logged (and re-evaluates the live stream) while secrets are about.
  await h.policy.reload();
  await orchestrator.revoke({ target: { case: "sessionId", value: started.sessionId }, reason: "done" });
  await watch.done;
  ac.abort();

  secrets.set("access token (IssueToken)", jwt);
  watch.tokens().forEach((t, i) => secrets.set(`access token (stream #${i})`, t.accessToken));
  secrets.set("session credential", credential);
  secrets.set("session credential secret", credential.split(".")[1]!);
  secrets.set("orchestrator token", ORCHESTRATOR_TOKEN);
  secrets.set("resource-server token", GATEWAY_TOKEN);
  const keyDir = path.join(h.dataDir, "keys");
  for (const file of (await readdir(keyDir)).filter((f) => f.endsWith(".pem"))) {
    const pem = await readFile(path.join(keyDir, file), "utf8");
    const body = pem.split("\n").filter((l) => l && !l.startsWith("-----")).join("");
    secrets.set(`private key PEM body ${file}`, body);
    secrets.set(`private key d ${file}`, createPrivateKey(pem).export({ format: "jwk" }).d!);
  }
  spans = await mt.spans();
}, 30_000);

afterAll(async () => {
  await h?.close();
  await mt?.telemetry.shutdown();
});

describe("no secret leaves through spans, logs or audit records", () => {
  it("the scenario produced what it should: tokens, a renewal, a denial, secrets that are long enough to find", () => {
    expect(secrets.size).toBeGreaterThanOrEqual(8);
    for (const [what, s] of secrets) expect(s.length, what).toBeGreaterThanOrEqual(16);
    expect(named(spans, "capvend.renew").length).toBeGreaterThanOrEqual(1);
    expect(spans.some((s) => s.attributes["capvend.policy.decision"] === "deny")).toBe(true);
    expect(h.logLines.length).toBeGreaterThan(0);
    expect((h.audit as MemoryAuditSink).lines.length).toBeGreaterThan(5);
  });

  it("every exported span (name, attributes, events, links, status) is free of every secret", () => {
    expect(spans.length).toBeGreaterThan(20);
    for (const s of spans) {
      const text = spanText(s);
      for (const [what, secret] of secrets) expect(text.includes(secret), `${what} in span ${s.name}`).toBe(false);
    }
  });

  it("every log line is free of every secret", () => {
    for (const line of h.logLines) for (const [what, secret] of secrets) expect(line.includes(secret), `${what} in log: ${line.slice(0, 120)}`).toBe(false);
  });

  it("every audit record is free of every secret", () => {
    for (const line of (h.audit as MemoryAuditSink).lines) {
      for (const [what, secret] of secrets) expect(line.includes(secret), `${what} in audit record`).toBe(false);
    }
  });

  it("the calls that carried a token where an id belongs were traced, with the token stripped rather than the span lost", () => {
    // `resource: <jwt>` failed validation; its span exists and says why, without the value.
    const bad = spans.filter((s) => s.name.endsWith("/IssueToken") && s.attributes["rpc.grpc.status_code"] === 3);
    expect(bad.length).toBeGreaterThanOrEqual(2);
    expect(bad.some((s) => s.droppedAttributesCount > 0)).toBe(true);
    // A JWT presented as a bearer is refused, and the refusal is traced too.
    expect(spans.some((s) => s.name.endsWith("/IssueToken") && s.attributes["rpc.grpc.status_code"] === 16)).toBe(true);
  });
});

describe("the redaction processor", () => {
  it("strips a token planted in a span attribute, an array attribute, an event and the status message", async () => {
    const jwt = secrets.get("access token (IssueToken)")!;
    const span = mt.telemetry.tracer.startSpan("planted");
    span.setAttribute("planted.note", jwt);
    span.setAttribute("planted.scopes", ["read", jwt]);
    span.setAttribute("http.request.header.authorization", "Bearer not-even-secret-looking");
    span.setAttribute("planted.fine", "kept");
    span.addEvent("planted.event", { detail: `prefix ${jwt} suffix`, harmless: 1 });
    span.setStatus({ code: SpanStatusCode.ERROR, message: `failed for ${jwt}` });
    span.end();
    const exported = named(await mt.spans(), "planted");
    expect(exported).toHaveLength(1);
    const s = exported[0]!;
    expect(s.attributes).toEqual({ "planted.fine": "kept" });
    expect(s.droppedAttributesCount).toBe(3);
    expect(s.events[0]!.attributes).toEqual({ harmless: 1 });
    expect(s.events[0]!.droppedAttributesCount).toBe(1);
    expect(s.status).toEqual({ code: SpanStatusCode.ERROR, message: REDACTED });
    expect(spanText(s)).not.toContain(jwt);
  });

  it("lets a span with nothing secret through untouched", async () => {
    const span = mt.telemetry.tracer.startSpan("clean");
    span.setAttribute("capvend.token.id", "tok_abc");
    span.end();
    const s = named(await mt.spans(), "clean")[0]!;
    expect(s.attributes).toEqual({ "capvend.token.id": "tok_abc" });
    expect(s.droppedAttributesCount).toBe(0);
  });
});

describe("the log serializer", () => {
  it("redacts a planted JWT in a field and in the message, and carries the active span's ids", async () => {
    const jwt = secrets.get("access token (IssueToken)")!;
    const { destination, lines } = memoryLogDestination();
    const logger = createLogger({ level: "info", replica: "leak-test", destination: destination as never });
    let expected: { traceId: string; spanId: string } | undefined;
    mt.telemetry.tracer.startActiveSpan("logging", (span) => {
      expected = span.spanContext();
      logger.info({ note: jwt, nested: { value: `Bearer ${jwt}` } }, `issued ${jwt}`);
      span.end();
    });
    logger.info("outside any span");
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(2);
    const inside = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(lines[0]).not.toContain(jwt);
    expect(inside.note).toBe(REDACTED);
    expect(inside.msg).toBe(REDACTED);
    expect(inside.trace_id).toBe(expected!.traceId);
    expect(inside.span_id).toBe(expected!.spanId);
    const outside = JSON.parse(lines[1]!) as Record<string, unknown>;
    expect(outside.trace_id).toBeUndefined();
    expect(outside.msg).toBe("outside any span");
  });
});

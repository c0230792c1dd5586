/** StartSession's request_id (AIP-155): retries open at most one session, and what a retry returns. */
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { reasonOf } from "../../src/errors.js";
import { startHarness, type Harness } from "../helpers/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const request = (requestId: string, overrides: Record<string, unknown> = {}) => ({
  agentId: "sales-bot",
  userId: "alice",
  grants: [{ resource: "calendar", scopes: ["read"] }],
  labels: { env: "test", team: "sales" },
  requestId,
  ...overrides,
});

async function refusal(p: Promise<unknown>) {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, reason: reasonOf(e), message: e.rawMessage };
  }
  throw new Error("expected the call to fail");
}

describe("StartSession with a request_id", () => {
  it("a retry returns the same session with a credential of its own; every attempt's credential works", async () => {
    const id = randomUUID();
    const sessionsBefore = h.sessions.size;
    const first = await h.orchestrator.startSession(request(id));
    // Labels in another order are the same request.
    const retry = await h.orchestrator.startSession(request(id, { labels: { team: "sales", env: "test" } }));
    expect(retry.sessionId).toBe(first.sessionId);
    expect(retry.expiresAt).toEqual(first.expiresAt);
    expect(retry.sessionCredential).not.toBe(first.sessionCredential);
    expect(h.sessions.size).toBe(sessionsBefore + 1);
    for (const credential of [first.sessionCredential, retry.sessionCredential]) {
      const { token } = await h.client(credential).issueToken({ resource: "calendar", scopes: ["read"] });
      expect(token?.resource).toBe("calendar");
    }
    const started = (h.audit as MemoryAuditSink).find({ type: "session.started", session_id: first.sessionId });
    expect(started.map((r) => r.details?.retry)).toEqual([false, true]);
    expect(started.every((r) => r.details?.request_id === id)).toBe(true);
  });

  it("concurrent attempts open exactly one session, and every answer's credential works", async () => {
    const id = randomUUID();
    const sessionsBefore = h.sessions.size;
    const answers = await Promise.all(Array.from({ length: 5 }, () => h.orchestrator.startSession(request(id))));
    expect(new Set(answers.map((a) => a.sessionId)).size).toBe(1);
    expect(h.sessions.size).toBe(sessionsBefore + 1);
    for (const a of answers) await h.client(a.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] });
  });

  it("the same request_id with a different request → ALREADY_EXISTS REQUEST_ID_REUSED, and nothing changes", async () => {
    const id = randomUUID();
    const first = await h.orchestrator.startSession(request(id));
    for (const changed of [{ agentId: "support-bot" }, { userId: "bob" }, { grants: [{ resource: "calendar", scopes: ["read"], ttl: { seconds: 60n } }] }, { labels: { env: "prod" } }, { maxDuration: { seconds: 600n } }]) {
      const f = await refusal(h.orchestrator.startSession(request(id, changed)));
      expect(f).toMatchObject({ code: Code.AlreadyExists, reason: "REQUEST_ID_REUSED" });
      expect(f.message).toMatch(/^request_id: /);
    }
    expect((await h.sessions.get(first.sessionId))?.retryCredentialHashes).toBeUndefined();
  });

  it("a retry after the session ended → SESSION_ENDED; a request_id is not a UUID → INVALID_ARGUMENT", async () => {
    const id = randomUUID();
    const first = await h.orchestrator.startSession(request(id));
    await h.orchestrator.endSession({ sessionId: first.sessionId, reason: "done" });
    expect(await refusal(h.orchestrator.startSession(request(id)))).toMatchObject({ code: Code.Unauthenticated, reason: "SESSION_ENDED" });
    const bad = await refusal(h.orchestrator.startSession(request("not-a-uuid")));
    expect(bad).toMatchObject({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT" });
    expect(bad.message).toMatch(/^request_id: must be a UUID/);
  });

  it("without a request_id every call opens a new session", async () => {
    const a = await h.orchestrator.startSession(request(""));
    const b = await h.orchestrator.startSession(request(""));
    expect(a.sessionId).not.toBe(b.sessionId);
  });
});

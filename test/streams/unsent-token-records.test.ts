/**
 * No token.issued record for a token that was never sent: a stream open is recorded before
 * any token is minted, and a stream that closed meanwhile (its caller left, the session
 * ended, the audit log refused the open) mints nothing. The ordering is driven by an audit
 * sink that holds the open's record until the test lets it go: no sleeps, no timing.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fault } from "../../src/errors.js";
import type { AuditEvent } from "../../src/audit/event.js";
import { createMemoryAuditSink, type MemoryAuditSink } from "../../src/audit/memory-sink.js";
import type { AuditSink } from "../../src/audit/sink.js";
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import type { SessionRecord } from "../../src/backends/types.js";
import { ManualClock } from "../../src/clock.js";
import { reasonOf } from "../../src/errors.js";
import type { WatchSessionResponse } from "../../src/gen/capvend/v1/vending_pb.js";
import { openKeyRing, type KeyRing } from "../../src/keys/key-ring.js";
import { loadPolicyEngine, type PolicyEngine } from "../../src/policy/engine.js";
import { createIssuer } from "../../src/service/issuer.js";
import { streamTokens } from "../../src/service/watch-session.js";
import { StreamHub } from "../../src/streams/stream-hub.js";
import { createMinter } from "../../src/tokens/mint.js";

const H = 3600_000;
let dir: string;
let keyRing: KeyRing;
let policy: PolicyEngine;
const clock = new ManualClock(Date.UTC(2026, 5, 1));

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "capvend-unsent-"));
  await writeFile(path.join(dir, "all.cedar"), '@id("all") permit (principal == Agent::"bot", action, resource);');
  policy = await loadPolicyEngine({ dir, clock });
  keyRing = await openKeyRing({ dataDir: dir, alg: "EdDSA", clock, maxTokenTtlMs: H });
});
afterAll(async () => {
  policy.close();
  keyRing.close();
  await rm(dir, { recursive: true, force: true });
});

/** A memory sink that holds the first append of one event type until released (or failed). */
function gatedSink(type: AuditEvent["type"]) {
  const inner: MemoryAuditSink = createMemoryAuditSink({ clock, timeoutMs: 60_000 });
  let reached!: () => void;
  const held = new Promise<void>((r) => (reached = r));
  let open!: (how: "write" | "fail") => void;
  const gate = new Promise<"write" | "fail">((r) => (open = r));
  let gated = false;
  const sink: AuditSink = {
    async append(event) {
      if (event.type === type && !gated) {
        gated = true;
        reached();
        if ((await gate) === "fail") throw fault("audit_unavailable", "audit record not written: test failure");
      }
      return inner.append(event);
    },
    get state() {
      return inner.state;
    },
    close: () => inner.close(),
  };
  return { sink, inner, held, release: () => open("write"), fail: () => open("fail") };
}

function setup(type: AuditEvent["type"]) {
  const audit = gatedSink(type);
  const revocations = new MemoryRevocationList(clock);
  const issuer = createIssuer({ clock, policy, minter: createMinter({ keyRing, issuer: "https://capvend.local", clock }), audit: audit.sink, revocations, defaultTtlMs: 15 * 60_000, maxTtlMs: H });
  const hub = new StreamHub({ clock, tokens: streamTokens(issuer), revocations, audit: audit.sink, renewLeadMs: 60_000, heartbeatIntervalMs: 15_000, stallTimeoutMs: 30_000 });
  const now = clock.now();
  const session: SessionRecord = {
    id: "ses_unsent000000000000000000",
    agentId: "bot",
    grants: [
      { resource: "calendar", scopes: ["read"] },
      { resource: "crm", scopes: ["read"] },
    ],
    labels: {},
    credentialHash: "00",
    startedBy: "test",
    createdAt: now,
    expiresAt: now + H,
  };
  // What the service hands the hub once it has validated and authorized the call.
  const opening = { session, grants: session.grants };
  const close = async () => {
    hub.close();
    await revocations.close();
  };
  return { audit, revocations, hub, session, opening, close };
}

/** Reads the stream to its end; resolves with the tokens it delivered and how it ended. */
async function drain(stream: AsyncIterable<WatchSessionResponse>): Promise<{ tokens: string[]; error?: unknown }> {
  const tokens: string[] = [];
  try {
    for await (const m of stream) if (m.event.case === "tokenIssued") tokens.push(m.event.value.token!.tokenId);
    return { tokens };
  } catch (error) {
    return { tokens, error };
  }
}

const issuedRecords = (sink: MemoryAuditSink) => sink.records.filter((r) => r.type === "token.issued");

describe("a stream open that does not complete", () => {
  it("records nothing for a caller that leaves while its open is being recorded", async () => {
    const t = setup("stream.opened");
    const ac = new AbortController();
    const reading = drain(t.hub.open(t.opening, { signal: ac.signal }, () => undefined));
    await t.audit.held;
    ac.abort();
    t.audit.release();
    const { tokens } = await reading;
    expect(tokens).toEqual([]);
    expect(issuedRecords(t.audit.inner)).toEqual([]);
    // The open and the close are both on record (in either order: the gate held the open's).
    expect(t.audit.inner.records.map((r) => r.type).sort()).toEqual(["stream.closed", "stream.opened"]);
    await t.close();
  });

  it("mints nothing when the audit log refuses the open", async () => {
    const t = setup("stream.opened");
    const reading = drain(t.hub.open(t.opening, { signal: new AbortController().signal }, () => undefined));
    await t.audit.held;
    t.audit.fail();
    const { tokens, error } = await reading;
    expect(tokens).toEqual([]);
    expect(reasonOf(error)).toBe("AUDIT_UNAVAILABLE");
    expect(issuedRecords(t.audit.inner)).toEqual([]);
    await t.close();
  });

  it("mints nothing for a session that ends while its open is being recorded", async () => {
    const t = setup("stream.opened");
    const reading = drain(t.hub.open(t.opening, { signal: new AbortController().signal }, () => undefined));
    await t.audit.held;
    const now = clock.now();
    await t.revocations.publish({ id: "rev_test", kind: "session_id", value: t.session.id, reason: "ended", revokedAt: now, expiresAt: now + H, by: "system" });
    t.audit.release();
    const { tokens } = await reading;
    expect(tokens).toEqual([]);
    expect(issuedRecords(t.audit.inner)).toEqual([]);
    await t.close();
  });

  it("records exactly the tokens it sends when the open completes", async () => {
    const t = setup("stream.opened");
    const ac = new AbortController();
    const got: string[] = [];
    const reading = (async () => {
      for await (const m of t.hub.open(t.opening, { signal: ac.signal }, () => undefined)) {
        if (m.event.case === "tokenIssued") got.push(m.event.value.token!.tokenId);
        if (got.length === 2) ac.abort();
      }
    })();
    await t.audit.held;
    t.audit.release();
    await reading;
    expect(issuedRecords(t.audit.inner).map((r) => r.jti).sort()).toEqual([...got].sort());
    await t.close();
  });
});

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryAuditSink } from "../../src/audit/memory-sink.js";
import { ManualClock } from "../../src/clock.js";
import { WatchSessionRequestSchema, type WatchSessionResponse } from "../../src/gen/capvend/v1/vending_pb.js";
import { openKeyRing, type KeyRing } from "../../src/keys/key-ring.js";
import { loadPolicyEngine, type PolicyEngine } from "../../src/policy/engine.js";
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import { createIssuer } from "../../src/service/issuer.js";
import { admitWatch, streamTokens } from "../../src/service/watch-session.js";
import type { SessionRecord } from "../../src/backends/types.js";
import { StreamHub } from "../../src/streams/stream-hub.js";
import { createMinter } from "../../src/tokens/mint.js";

const S = 1000;
const H = 3600 * S;
/**
 * Simulated time. Three hours take every grant, the longest (one hour) included, through
 * several renewals, and the 3-second one through thousands, at a tenth of the cost of a day.
 */
const HOURS = 3;

function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let dir: string;
let keyRing: KeyRing;
let policy: PolicyEngine;
const clock = new ManualClock(Date.UTC(2026, 5, 1));

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "capvend-sim-"));
  await writeFile(path.join(dir, "all.cedar"), '@id("sim-all") permit (principal == Agent::"sim", action, resource);');
  policy = await loadPolicyEngine({ dir, clock });
  keyRing = await openKeyRing({ dataDir: dir, alg: "EdDSA", clock, maxTokenTtlMs: H });
});
afterAll(async () => {
  policy.close();
  keyRing.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * The real hub, issuer, minter, policy and audit sink on fake time: a stream held for hours
 * with grants of random TTLs (3 s to 1 h) must hold a valid, unrevoked token for every grant
 * at every simulated second.
 */
describe(`a held stream over ${HOURS} hours of fake time`, () => {
  it("always holds a valid, unrevoked token for every grant", async () => {
    const rnd = mulberry32(99);
    const revocations = new MemoryRevocationList(clock);
    const audit = createMemoryAuditSink({ clock });
    const issuer = createIssuer({ clock, policy, minter: createMinter({ keyRing, issuer: "https://capvend.local", clock }), audit, revocations, defaultTtlMs: 15 * 60 * S, maxTtlMs: H });
    const hub = new StreamHub({ clock, tokens: streamTokens(issuer), revocations, audit, renewLeadMs: 2 * 60 * S, heartbeatIntervalMs: 15 * S, stallTimeoutMs: 30 * S, random: rnd });

    const ttls = [3 * S, 10 * S, ...Array.from({ length: 6 }, () => Math.round((3 * S + rnd() * (H - 3 * S)) / S) * S)];
    const start = clock.now();
    const session: SessionRecord = {
      id: "ses_simulation0000000000000",
      agentId: "sim",
      grants: ttls.map((ttl, i) => ({ resource: `api-${i}`, scopes: ["read"], ttlMs: ttl })),
      labels: {},
      credentialHash: "00",
      startedBy: "test",
      createdAt: start,
      expiresAt: start + HOURS * H + 500,
    };
    const req = create(WatchSessionRequestSchema, {
      grants: ttls.map((ttl, i) => ({ resource: `api-${i}`, scopes: ["read"], ttl: { seconds: BigInt(ttl / 1000) } })),
    });
    const ac = new AbortController();
    const held = new Map<number, { jti: string; iat: number; exp: number; resource: string }>();
    let received = 0;
    let ended = false;
    const reader = (async () => {
      const opening = await admitWatch({ clock, issuer, revocations, maxTokenTtlMs: H }, session, req);
      for await (const m of hub.open(opening, { signal: ac.signal }, () => undefined) as AsyncIterable<WatchSessionResponse>) {
        received++;
        if (m.event.case === "tokenIssued") {
          const t = m.event.value.token!;
          held.set(m.event.value.grantIndex, { jti: t.tokenId, iat: Number(t.issuedAt!.seconds) * 1000, exp: Number(t.expiresAt!.seconds) * 1000, resource: t.resource });
        }
        if (m.event.case === "sessionEnded") ended = true;
      }
    })();
    const settle = () => new Promise((r) => setImmediate(r));
    for (let i = 0; i < 5 && held.size < ttls.length; i++) await settle();
    expect(held.size).toBe(ttls.length);

    let violations = 0;
    for (let t = 0; t < HOURS * 3600; t++) {
      clock.advance(S);
      await settle();
      const now = clock.now();
      if (now >= session.expiresAt - S) break;
      for (const [, tok] of held) {
        const revoked = revocations.tokenRevocation({ jti: tok.jti, sessionId: session.id, agentId: "sim", resource: tok.resource, issuedAtSec: tok.iat / 1000 });
        if (tok.exp <= now || revoked) violations++;
      }
    }
    expect(violations).toBe(0);
    // Covering the whole run with tokens that live at most their grant's TTL takes at least
    // run / TTL tokens per grant; every one had its audit record, and reached the stream.
    const atLeast = ttls.reduce((n, ttl) => n + Math.floor((HOURS * H) / ttl), 0);
    const issued = audit.records.filter((r) => r.type === "token.issued" || r.type === "token.renewed").length;
    expect(issued).toBeGreaterThanOrEqual(atLeast);
    expect(received).toBeGreaterThan(issued * 0.99);

    clock.advance(2 * S);
    await settle();
    await reader;
    expect(ended).toBe(true);
    // The session's end freed everything: no stream, no timer left.
    expect(hub.stats()).toMatchObject({ streams: 0, timers: 0, timerArmed: false });
    hub.close();
    await revocations.close();
  }, 120_000); // CPU-bound: the timeout only stops a hung run
});

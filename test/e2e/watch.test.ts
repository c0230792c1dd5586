import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchSessionRequestSchema } from "../../src/gen/capvend/v1/vending_pb.js";
import { reasonOf } from "../../src/errors.js";
import { parseSessionCredential } from "../../src/auth/credentials.js";
import { encodeResumeToken } from "../../src/streams/resume-token.js";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";
import { collect } from "../helpers/stream-collector.js";
import { waitFor } from "../helpers/wait.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ settings: { heartbeatIntervalMs: 500 } });
});
afterAll(async () => {
  await h?.close();
});

const grants = (ttlSeconds?: number) => [
  { resource: "salesforce", scopes: ["read"], ttl: ttlSeconds ? { seconds: BigInt(ttlSeconds) } : undefined },
  { resource: "calendar", scopes: ["read"], ttl: ttlSeconds ? { seconds: BigInt(ttlSeconds) } : undefined },
];

/** A raw HTTP/2 gRPC WatchSession that stops reading: a tiny flow-control window and no reads. */
function stalledWatch(on: Harness, credential: string) {
  const session = http2.connect(new URL(on.url), { settings: { initialWindowSize: 64 } });
  const body = toBinary(WatchSessionRequestSchema, create(WatchSessionRequestSchema, { grants: grants(3) }));
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  Buffer.from(body).copy(frame, 5);
  const req = session.request({
    ":method": "POST",
    ":path": "/capvend.v1.VendingService/WatchSession",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${credential}`,
  });
  req.end(frame);
  req.pause();
  let isClosed = false;
  const closed = new Promise<number>((resolve) =>
    req.on("close", () => {
      isClosed = true;
      resolve(req.rstCode);
    }),
  );
  req.on("error", () => undefined);
  session.on("error", () => undefined);
  return { session, closed, isClosed: () => isClosed };
}

async function errorOf(stream: AsyncIterable<unknown>): Promise<ConnectError> {
  try {
    for await (const _ of stream) void _;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the stream to fail");
}

describe("WatchSession over a real HTTP/2 server", () => {
  it("sends a token per grant at once, then renews a 3-second token several times in a row, each renewal naming the token it replaces", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const c = collect(s.runtime.watchSession({ grants: grants(3) }, { signal: ac.signal }));
    await c.until(() => c.of("tokenIssued").length >= 2, "first tokens");
    const first = c.of("tokenIssued");
    expect(new Set(first.map((t) => t.grantIndex))).toEqual(new Set([0, 1]));
    expect(first.every((t) => t.replacesTokenId === "")).toBe(true);

    await c.until(() => c.of("tokenIssued").filter((t) => t.grantIndex === 0).length >= 4, "3 renewals");
    const sf = c.of("tokenIssued").filter((t) => t.grantIndex === 0);
    for (let i = 1; i < sf.length; i++) {
      // Each renewal names the token it replaces and outlives it. (When a renewal is due is a
      // pure function, tested on fake time in test/streams/renewal.test.ts.)
      expect(sf[i]!.replacesTokenId).toBe(sf[i - 1]!.token!.tokenId);
      expect(sf[i]!.token!.expiresAt!.seconds).toBeGreaterThanOrEqual(sf[i - 1]!.token!.expiresAt!.seconds);
      expect(sf[i]!.token!.tokenId).not.toBe(sf[i - 1]!.token!.tokenId);
    }
    // Every event carries an opaque resume token.
    expect(c.messages.every((m) => /^[A-Za-z0-9_-]{42}$/.test(m.resumeToken))).toBe(true);
    // Heartbeats flow on a quiet stream too (interval 500 ms in this harness).
    expect(c.of("heartbeat").length).toBeGreaterThan(0);
    ac.abort();
    await c.done;
  });

  it("pushes a revocation and stops renewing that grant while the other grant renews on", async () => {
    // How fast the push arrives is a figure for `npm run bench -- push-latency`, not a test.
    const s = await startSalesSession(h, { ttlSeconds: 3 });
    const ac = new AbortController();
    const c = collect(s.runtime.watchSession({ grants: grants(3) }, { signal: ac.signal }));
    await c.until(() => c.of("tokenIssued").length >= 2, "the first tokens");
    const sfToken = c.of("tokenIssued").find((t) => t.grantIndex === 0)!.token!;
    await h.orchestrator.revoke({ target: { case: "tokenId", value: sfToken.tokenId }, reason: "compromised" });
    await c.until(() => c.of("tokensRevoked").length > 0, "the revocation");
    const ev = c.of("tokensRevoked")[0]!;
    expect(ev.tokenIds).toEqual([sfToken.tokenId]);
    expect(ev.grantIndexes).toEqual([0]);
    expect(ev.reason).toBe("compromised");
    // Two calendar renewals after the revocation: by then a salesforce renewal would have been due too.
    const at = c.messages.findIndex((m) => m.event.case === "tokensRevoked");
    const after = () => c.messages.slice(at).flatMap((m) => (m.event.case === "tokenIssued" ? [m.event.value] : []));
    await c.until(() => after().filter((t) => t.grantIndex === 1).length >= 2, "two calendar renewals after the revocation");
    expect(after().filter((t) => t.grantIndex === 0)).toEqual([]);
    expect(h.server.hub.stats().streams).toBeGreaterThan(0);
    ac.abort();
    await c.done;
  });

  it("tells an open stream of a revoked token of its session that it did not mint, naming it", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const c = collect(s.runtime.watchSession({ grants: grants() }, { signal: ac.signal }));
    await c.until(() => c.of("tokenIssued").length >= 2, "the first tokens");
    // A token the runtime holds from elsewhere (IssueToken here; a lost stream after a resume).
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    expect(c.of("tokenIssued").map((t) => t.token!.tokenId)).not.toContain(token!.tokenId);
    await h.orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId }, reason: "leaked" });
    await c.until(() => c.of("tokensRevoked").length > 0, "revocation");
    expect(c.of("tokensRevoked")[0]!.tokenIds).toContain(token!.tokenId);
    ac.abort();
    await c.done;
  });

  it("EndSession pushes session-ended and closes the stream cleanly", async () => {
    const s = await startSalesSession(h);
    const c = collect(s.runtime.watchSession({ grants: grants() }));
    await c.until(() => c.of("tokenIssued").length >= 2, "the first tokens");
    await h.orchestrator.endSession({ sessionId: s.sessionId, reason: "task complete" });
    await c.done;
    expect(c.error).toBeUndefined();
    expect(c.messages.at(-1)!.event.case).toBe("sessionEnded");
    expect(c.of("sessionEnded")[0]!.reason).toBe("task complete");
  });

  it("a session held by two streams: both get the events", async () => {
    const s = await startSalesSession(h);
    const a = collect(s.runtime.watchSession({ grants: grants() }));
    const b = collect(h.client(s.sessionCredential, "grpc").watchSession({ grants: [grants()[1]!] }));
    await a.until(() => a.of("tokenIssued").length >= 2, "the first tokens");
    await b.until(() => b.of("tokenIssued").length >= 1, "the first token");
    await h.orchestrator.revoke({ target: { case: "resource", value: "calendar" }, reason: "calendar off" });
    await a.until(() => a.of("tokensRevoked").length > 0, "the revocation");
    await b.until(() => b.of("tokensRevoked").length > 0, "the revocation");
    expect(a.of("tokensRevoked")[0]!.grantIndexes).toEqual([1]);
    expect(b.of("tokensRevoked")[0]!.grantIndexes).toEqual([0]);
    await h.orchestrator.endSession({ sessionId: s.sessionId });
    await Promise.all([a.done, b.done]);
  });

  it("resume after a forced disconnect replays a revocation made during the gap, then sends fresh tokens", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const first = collect(s.runtime.watchSession({ grants: grants() }, { signal: ac.signal }));
    await first.until(() => first.of("tokenIssued").length >= 2, "the first tokens");
    const held = first.of("tokenIssued").map((t) => t.token!.tokenId);
    const last = first.messages.at(-1)!.resumeToken;
    ac.abort();
    await first.done;

    // Revoking the calendar token also withdraws the calendar grant from the session.
    const calendarToken = first.of("tokenIssued").find((t) => t.grantIndex === 1)!.token!.tokenId;
    await h.orchestrator.revoke({ target: { case: "tokenId", value: calendarToken }, reason: "while away" });

    const again = collect(s.runtime.watchSession({ grants: grants(), resumeToken: last }));
    await again.until(() => again.of("tokensRevoked").length >= 1 && again.of("tokenIssued").length >= 1, "the replayed revocation and a fresh token");
    const kinds = again.messages.map((m) => m.event.case);
    // Replay first, then fresh tokens.
    expect(kinds[0]).toBe("tokensRevoked");
    const [tokenRev] = again.of("tokensRevoked");
    expect(tokenRev!.tokenIds).toEqual([calendarToken]);
    expect(tokenRev!.grantIndexes).toEqual([1]);
    // The calendar grant stays stopped as on the lost stream; salesforce gets a fresh token.
    const fresh = again.of("tokenIssued");
    expect(fresh.map((t) => t.grantIndex)).toEqual([0]);
    expect(held).not.toContain(fresh[0]!.token!.tokenId);
    expect(again.messages[0]!.resumeToken).not.toBe(last);
    await h.orchestrator.endSession({ sessionId: s.sessionId });
    await again.done;
  });

  it("a slow reader is cut off with RESOURCE_EXHAUSTED at the stall bound", async () => {
    // A short stall bound of its own: the other tests' streams must not be cut off when this
    // loaded machine holds a reader back for a second.
    const own = await startHarness({ settings: { heartbeatIntervalMs: 500, streamStallTimeoutMs: 1000 } });
    try {
      const slow = await startSalesSession(own, { ttlSeconds: 3 });
      const stalled = stalledWatch(own, slow.sessionCredential);
      // Reset with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED) once its stall outlasts the bound.
      expect(await stalled.closed).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      stalled.session.close();
    } finally {
      await own.close();
    }
  });

  it("a slow reader does not hold back a fast one", async () => {
    // The shared server's stall bound (the default, 30 s) outlasts this test: were the fast
    // stream held back by the stalled one, it would hear nothing until the stalled one was
    // cut off, and the waits below would fail.
    const slow = await startSalesSession(h, { ttlSeconds: 3 });
    const fast = await startSalesSession(h);
    const streamsBefore = h.server.hub.stats().streams;
    const stalled = stalledWatch(h, slow.sessionCredential);
    const c = collect(fast.runtime.watchSession({ grants: grants() }));
    await c.until(() => c.of("tokenIssued").length >= 2, "the first tokens");
    await h.orchestrator.revoke({ target: { case: "sessionId", value: fast.sessionId }, reason: "fast path" });
    await c.done;
    expect(c.error).toBeUndefined();
    expect(c.of("sessionEnded")).toHaveLength(1);
    // The stalled stream is still open, still stalled: nothing waited for it.
    expect(stalled.isClosed()).toBe(false);
    stalled.session.destroy();
    await waitFor(() => h.server.hub.stats().streams === streamsBefore, "the server to let go of both streams");
  });

  it("cancelling frees every timer, listener and registration of the stream", async () => {
    const baseline = h.server.hub.stats();
    const listenersBefore = h.revocations.listenerCount;
    const s = await startSalesSession(h);
    const streams = Array.from({ length: 5 }, () => {
      const ac = new AbortController();
      return { ac, c: collect(s.runtime.watchSession({ grants: grants(3) }, { signal: ac.signal })) };
    });
    for (const { c } of streams) await c.until(() => c.of("tokenIssued").length >= 2, "the first tokens");
    const during = h.server.hub.stats();
    expect(during.streams).toBe(baseline.streams + 5);
    // Per stream: a heartbeat, a session-expiry timer and one renewal per grant.
    expect(during.timers).toBeGreaterThanOrEqual(baseline.timers + 5 * 4);
    for (const { ac } of streams) ac.abort();
    for (const { c } of streams) await c.done;
    await waitFor(() => h.server.hub.stats().streams === baseline.streams, "the cancelled streams to unregister");
    const after = h.server.hub.stats();
    expect(after.streams).toBe(baseline.streams);
    expect(after.sessions).toBe(baseline.sessions);
    expect(after.timers).toBe(baseline.timers);
    // The hub listens to revocations once, whatever the number of streams.
    expect(h.revocations.listenerCount).toBe(listenersBefore);
  });

  it("clips tokens to the session's end and closes the stream when the session expires", async () => {
    const s = await startSalesSession(h, { maxDurationSeconds: 3 });
    const c = collect(s.runtime.watchSession({ grants: grants() }));
    await c.done;
    const tokens = c.of("tokenIssued");
    expect(tokens.length).toBe(2);
    for (const t of tokens) expect(Number(t.token!.expiresAt!.seconds)).toBeLessThanOrEqual(Number(s.expiresAt!.seconds));
    expect(c.of("sessionEnded")[0]!.reason).toBe("expired");
    expect(c.error).toBeUndefined();
  }, 10_000);

  it("tokens on the stream verify against the served JWKS, carrying the session, user and agent", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const c = collect(s.runtime.watchSession({ grants: grants() }, { signal: ac.signal }));
    await c.until(() => c.of("tokenIssued").length >= 2, "the first tokens");
    const jwks = jose.createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`));
    for (const t of c.of("tokenIssued")) {
      const { payload, protectedHeader } = await jose.jwtVerify(t.token!.accessToken, jwks, { issuer: "https://capvend.local", audience: t.token!.resource, typ: "at+jwt" });
      expect(protectedHeader.kid).toBe(h.keyRing.current().kid);
      expect(payload.sid).toBe(s.sessionId);
      expect(payload.jti).toBe(t.token!.tokenId);
      expect(payload.sub).toBe("user:alice");
      expect(payload.act).toEqual({ sub: "agent:sales-bot" });
    }
    ac.abort();
    await c.done;
  });
});

describe("WatchSession bad input", () => {
  it("refuses an unknown or ended session's credential with UNAUTHENTICATED", async () => {
    const s = await startSalesSession(h);
    await h.orchestrator.endSession({ sessionId: s.sessionId });
    const e = await errorOf(s.runtime.watchSession({ grants: grants() }));
    expect(e.code).toBe(Code.Unauthenticated);
    const forged = h.client(`ses_${"A".repeat(22)}.${"B".repeat(43)}`);
    expect((await errorOf(forged.watchSession({ grants: grants() }))).code).toBe(Code.Unauthenticated);
  });

  it("refuses a grant the session lacks, or policy denies, naming it", async () => {
    const s = await startSalesSession(h);
    const e = await errorOf(s.runtime.watchSession({ grants: [grants()[0]!, { resource: "warehouse", scopes: ["read"] }] }));
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.rawMessage).toContain("grants[1]");
    expect(e.rawMessage).toContain("warehouse");
    // The report bot's warehouse tokens are capped at 900 s by policy: a one-hour grant is denied.
    const res = await h.orchestrator.startSession({ agentId: "report-bot", grants: [{ resource: "warehouse", scopes: ["read"] }] });
    const d = await errorOf(h.client(res.sessionCredential).watchSession({ grants: [{ resource: "warehouse", scopes: ["read"], ttl: { seconds: 3600n } }] }));
    expect(d.code).toBe(Code.PermissionDenied);
    expect(reasonOf(d)).toBe("SCOPE_DENIED");
    expect(d.rawMessage).toContain('scope "read"');
  });

  it("refuses zero grants and duplicate grants with INVALID_ARGUMENT", async () => {
    const s = await startSalesSession(h);
    const before = h.server.hub.stats();
    const zero = await errorOf(s.runtime.watchSession({ grants: [] }));
    expect(zero.code).toBe(Code.InvalidArgument);
    expect(zero.rawMessage).toContain("grants");
    const dup = await errorOf(s.runtime.watchSession({ grants: [grants()[0]!, grants()[0]!] }));
    expect(dup.code).toBe(Code.InvalidArgument);
    expect(dup.rawMessage).toContain("duplicate");
    // Nothing was left registered by the refused calls.
    expect(h.server.hub.stats()).toEqual(before);
  });

  it("refuses resume tokens that are garbage, altered, of another session, too old or ahead of the feed, each with its reason", async () => {
    const s = await startSalesSession(h);
    const other = await startSalesSession(h);
    const owner = { id: s.sessionId, credentialHash: parseSessionCredential(s.sessionCredential)!.secretHash };
    const refused = async (resumeToken: string) => {
      const e = await errorOf(s.runtime.watchSession({ grants: grants(), resumeToken }));
      return { code: e.code, reason: reasonOf(e), message: e.rawMessage };
    };

    const garbage = await refused("not-a-token");
    expect(garbage).toMatchObject({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT" });
    expect(garbage.message).toMatch(/^resume_token: is not a resume token/);

    // A real token of the other session, and one of this session with a byte changed.
    const c = collect(other.runtime.watchSession({ grants: grants() }));
    await c.until(() => c.messages.length > 0, "a first message");
    const before = h.server.hub.stats();
    const foreign = await refused(c.messages[0]!.resumeToken);
    expect(foreign).toMatchObject({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT" });
    expect(foreign.message).toContain("not issued for this session");
    const good = encodeResumeToken(owner, { feedPosition: h.revocations.lastSeq, issuedAtMs: Date.now() });
    const altered = good.slice(0, 5) + (good[5] === "A" ? "B" : "A") + good.slice(6);
    expect((await refused(altered)).code).toBe(Code.InvalidArgument);

    const old = await refused(encodeResumeToken(owner, { feedPosition: 0, issuedAtMs: Date.now() - 400 * 86_400_000 }));
    expect(old).toMatchObject({ code: Code.FailedPrecondition, reason: "RESUME_TOKEN_EXPIRED" });

    const ahead = await refused(encodeResumeToken(owner, { feedPosition: h.revocations.lastSeq + 1000, issuedAtMs: Date.now() }));
    expect(ahead).toMatchObject({ code: Code.Unavailable, reason: "RESUME_AHEAD" });
    expect(ahead.message).toContain("resume_token");
    // Nothing was left registered by the refused calls; the well-formed token resumes.
    expect(h.server.hub.stats()).toEqual(before);
    const ok = collect(s.runtime.watchSession({ grants: grants(), resumeToken: good }));
    await ok.until(() => ok.of("tokenIssued").length >= 2, "the first tokens");
    expect(ok.error).toBeUndefined();
    await h.orchestrator.endSession({ sessionId: s.sessionId });
    await h.orchestrator.endSession({ sessionId: other.sessionId });
    await Promise.all([ok.done, c.done]);
  });
});

describe("draining", () => {
  it("tells each stream to reconnect, then ends it with UNAVAILABLE", async () => {
    const own = await startHarness();
    try {
      const s = await startSalesSession(own);
      const c = collect(s.runtime.watchSession({ grants: grants() }));
      await c.until(() => c.of("tokenIssued").length >= 2, "the first tokens");
      const closing = own.server.close(5000);
      await c.done;
      await closing;
      expect(c.messages.at(-1)!.event.case).toBe("reconnect");
      expect(c.error?.code).toBe(Code.Unavailable);
    } finally {
      await own.close();
    }
  });
});


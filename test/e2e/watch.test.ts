import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchSessionRequestSchema, type WatchSessionResponse } from "../../src/gen/capvend/v1/vending_pb.js";
import { reasonOf } from "../../src/errors.js";
import { parseSessionCredential } from "../../src/auth/credentials.js";
import { encodeResumeToken } from "../../src/streams/resume-token.js";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ settings: { heartbeatIntervalMs: 500, streamStallTimeoutMs: 1000 } });
});
afterAll(async () => {
  await h?.close();
});

/** Reads a server stream in the background, keeping every message; `until` waits for a predicate. */
function collect(stream: AsyncIterable<WatchSessionResponse>) {
  const messages: WatchSessionResponse[] = [];
  const arrivals: number[] = [];
  let error: ConnectError | undefined;
  let ended = false;
  const done = (async () => {
    try {
      for await (const m of stream) {
        messages.push(m);
        arrivals.push(Date.now());
      }
    } catch (err) {
      error = ConnectError.from(err);
    } finally {
      ended = true;
    }
  })();
  return {
    messages,
    arrivals,
    done,
    get error() {
      return error;
    },
    get ended() {
      return ended;
    },
    of<K extends NonNullable<WatchSessionResponse["event"]["case"]>>(kind: K) {
      return messages.filter((m) => m.event.case === kind).map((m) => m.event.value as Extract<WatchSessionResponse["event"], { case: K }>["value"]);
    },
    async until(pred: () => boolean, timeoutMs = 10_000, what = "condition") {
      const deadline = Date.now() + timeoutMs;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${messages.map((m) => m.event.case).join(",")} ${error ?? ""}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

const grants = (ttlSeconds?: number) => [
  { resource: "salesforce", scopes: ["read"], ttl: ttlSeconds ? { seconds: BigInt(ttlSeconds) } : undefined },
  { resource: "calendar", scopes: ["read"], ttl: ttlSeconds ? { seconds: BigInt(ttlSeconds) } : undefined },
];

async function errorOf(stream: AsyncIterable<unknown>): Promise<ConnectError> {
  try {
    for await (const _ of stream) void _;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the stream to fail");
}

describe("WatchSession over a real HTTP/2 server", () => {
  it("sends a token per grant at once, then renews a 3-second token before expiry several times in a row", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const c = collect(s.runtime.watchSession({ grants: grants(3) }, { signal: ac.signal }));
    await c.until(() => c.of("tokenIssued").length >= 2, 5000, "first tokens");
    const first = c.of("tokenIssued");
    expect(new Set(first.map((t) => t.grantIndex))).toEqual(new Set([0, 1]));
    expect(first.every((t) => t.replacesTokenId === "")).toBe(true);

    await c.until(() => c.of("tokenIssued").filter((t) => t.grantIndex === 0).length >= 4, 12_000, "3 renewals");
    const sf = c.messages
      .map((m, i) => ({ m, at: c.arrivals[i]! }))
      .filter(({ m }) => m.event.case === "tokenIssued" && m.event.value.grantIndex === 0)
      .map(({ m, at }) => ({ t: (m.event.value as { token: { tokenId: string; expiresAt: { seconds: bigint } }; replacesTokenId: string }), at }));
    for (let i = 1; i < sf.length; i++) {
      // Each renewal arrives while the token it replaces is still valid, and names it.
      expect(sf[i]!.at).toBeLessThan(Number(sf[i - 1]!.t.token.expiresAt.seconds) * 1000);
      expect(sf[i]!.t.replacesTokenId).toBe(sf[i - 1]!.t.token.tokenId);
    }
    // Every event carries an opaque resume token.
    expect(c.messages.every((m) => /^[A-Za-z0-9_-]{42}$/.test(m.resumeToken))).toBe(true);
    // Heartbeats flow on a quiet stream too (interval 500 ms in this harness).
    expect(c.of("heartbeat").length).toBeGreaterThan(0);
    ac.abort();
    await c.done;
  });

  it("pushes a revocation within 100 ms and stops renewing that grant", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const c = collect(s.runtime.watchSession({ grants: grants() }, { signal: ac.signal }));
    await c.until(() => c.of("tokenIssued").length >= 2);
    const sfToken = c.of("tokenIssued").find((t) => t.grantIndex === 0)!.token!;
    const sent = Date.now();
    await h.orchestrator.revoke({ target: { case: "tokenId", value: sfToken.tokenId }, reason: "compromised" });
    await c.until(() => c.of("tokensRevoked").length > 0, 2000, "revocation");
    const latency = c.arrivals[c.messages.findIndex((m) => m.event.case === "tokensRevoked")]! - sent;
    expect(latency).toBeLessThan(100);
    const ev = c.of("tokensRevoked")[0]!;
    expect(ev.tokenIds).toEqual([sfToken.tokenId]);
    expect(ev.grantIndexes).toEqual([0]);
    expect(ev.reason).toBe("compromised");
    expect(h.server.hub.stats().streams).toBeGreaterThan(0);
    ac.abort();
    await c.done;
  });

  it("tells an open stream of a revoked token of its session that it did not mint, naming it", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const c = collect(s.runtime.watchSession({ grants: grants() }, { signal: ac.signal }));
    await c.until(() => c.of("tokenIssued").length >= 2);
    // A token the runtime holds from elsewhere (IssueToken here; a lost stream after a resume).
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    expect(c.of("tokenIssued").map((t) => t.token!.tokenId)).not.toContain(token!.tokenId);
    await h.orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId }, reason: "leaked" });
    await c.until(() => c.of("tokensRevoked").length > 0, 10_000, "revocation");
    expect(c.of("tokensRevoked")[0]!.tokenIds).toContain(token!.tokenId);
    ac.abort();
    await c.done;
  });

  it("EndSession pushes session-ended and closes the stream cleanly", async () => {
    const s = await startSalesSession(h);
    const c = collect(s.runtime.watchSession({ grants: grants() }));
    await c.until(() => c.of("tokenIssued").length >= 2);
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
    await a.until(() => a.of("tokenIssued").length >= 2);
    await b.until(() => b.of("tokenIssued").length >= 1);
    await h.orchestrator.revoke({ target: { case: "resource", value: "calendar" }, reason: "calendar off" });
    await a.until(() => a.of("tokensRevoked").length > 0);
    await b.until(() => b.of("tokensRevoked").length > 0);
    expect(a.of("tokensRevoked")[0]!.grantIndexes).toEqual([1]);
    expect(b.of("tokensRevoked")[0]!.grantIndexes).toEqual([0]);
    await h.orchestrator.endSession({ sessionId: s.sessionId });
    await Promise.all([a.done, b.done]);
  });

  it("resume after a forced disconnect replays a revocation made during the gap, then sends fresh tokens", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const first = collect(s.runtime.watchSession({ grants: grants() }, { signal: ac.signal }));
    await first.until(() => first.of("tokenIssued").length >= 2);
    const held = first.of("tokenIssued").map((t) => t.token!.tokenId);
    const last = first.messages.at(-1)!.resumeToken;
    ac.abort();
    await first.done;

    // Revoking the calendar token also withdraws the calendar grant from the session.
    const calendarToken = first.of("tokenIssued").find((t) => t.grantIndex === 1)!.token!.tokenId;
    await h.orchestrator.revoke({ target: { case: "tokenId", value: calendarToken }, reason: "while away" });

    const again = collect(s.runtime.watchSession({ grants: grants(), resumeToken: last }));
    await again.until(() => again.of("tokensRevoked").length >= 1 && again.of("tokenIssued").length >= 1);
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

  it("a slow reader does not hold back a fast one, and is cut off with RESOURCE_EXHAUSTED", async () => {
    const slow = await startSalesSession(h, { ttlSeconds: 3 });
    const fast = await startSalesSession(h);
    // A raw HTTP/2 gRPC call that stops reading: a tiny flow-control window and no reads.
    const url = new URL(h.url);
    const session = http2.connect(url, { settings: { initialWindowSize: 64 } });
    const body = toBinary(WatchSessionRequestSchema, create(WatchSessionRequestSchema, { grants: grants(3) }));
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    Buffer.from(body).copy(frame, 5);
    const req = session.request({
      ":method": "POST",
      ":path": "/capvend.v1.VendingService/WatchSession",
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${slow.sessionCredential}`,
    });
    req.end(frame);
    req.pause();
    const closed = new Promise<number>((resolve) => req.on("close", () => resolve(req.rstCode)));
    req.on("error", () => undefined);

    const c = collect(fast.runtime.watchSession({ grants: grants() }));
    await c.until(() => c.of("tokenIssued").length >= 2);
    const sent = Date.now();
    await h.orchestrator.revoke({ target: { case: "sessionId", value: fast.sessionId }, reason: "fast path" });
    await c.done;
    expect(c.of("sessionEnded")).toHaveLength(1);
    expect(Date.now() - sent).toBeLessThan(1000);

    // The slow one is reset with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED) within the stall bound.
    const rst = await closed;
    expect(rst).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.close();
  });

  it("cancelling frees every timer, listener and registration of the stream", async () => {
    const baseline = h.server.hub.stats();
    const listenersBefore = h.revocations.listenerCount;
    const s = await startSalesSession(h);
    const streams = Array.from({ length: 5 }, () => {
      const ac = new AbortController();
      return { ac, c: collect(s.runtime.watchSession({ grants: grants(3) }, { signal: ac.signal })) };
    });
    for (const { c } of streams) await c.until(() => c.of("tokenIssued").length >= 2);
    const during = h.server.hub.stats();
    expect(during.streams).toBe(baseline.streams + 5);
    // Per stream: a heartbeat, a session-expiry timer and one renewal per grant.
    expect(during.timers).toBeGreaterThanOrEqual(baseline.timers + 5 * 4);
    for (const { ac } of streams) ac.abort();
    for (const { c } of streams) await c.done;
    const deadline = Date.now() + 2000;
    while (h.server.hub.stats().streams !== baseline.streams && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
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

  it("tokens on the stream verify against the JWKS", async () => {
    const s = await startSalesSession(h);
    const ac = new AbortController();
    const c = collect(s.runtime.watchSession({ grants: grants() }, { signal: ac.signal }));
    await c.until(() => c.of("tokenIssued").length >= 2);
    const jwks = jose.createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`));
    for (const t of c.of("tokenIssued")) {
      const { payload } = await jose.jwtVerify(t.token!.accessToken, jwks, { audience: t.token!.resource });
      expect(payload.sid).toBe(s.sessionId);
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
    await c.until(() => c.messages.length > 0);
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
    await ok.until(() => ok.of("tokenIssued").length >= 2);
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
      await c.until(() => c.of("tokenIssued").length >= 2);
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


/**
 * Grant rules on one replica: a revocation withdraws the grants of sessions created before
 * it (IssueToken and new streams get GRANT_REVOKED), sessions started after it are granted
 * afresh, and a grant's TTL caps what its tokens may ask for (TTL_EXCEEDS_GRANT).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorInfoOf, reasonOf } from "../../src/errors.js";
import type { WatchSessionResponse } from "../../src/gen/capvend/v1/vending_pb.js";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";
import { collect } from "../helpers/stream-collector.js";

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.close();
});

/** The error a call ends with, or undefined when it succeeds. */
async function failure(call: Promise<unknown>): Promise<ConnectError | undefined> {
  return call.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
}

/** The error a WatchSession call ends with before its first message; fails the test if a message comes first. */
async function streamFailure(stream: AsyncIterable<WatchSessionResponse>): Promise<ConnectError> {
  try {
    for await (const m of stream) throw new Error(`expected a refusal, got a ${m.event.case} event`);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith("expected a refusal")) throw e;
    return ConnectError.from(e);
  }
  throw new Error("expected a refusal, the stream ended cleanly");
}

/** The first tokens a stream sends, then it is closed. */
async function firstTokens(stream: AsyncIterable<WatchSessionResponse>, count: number): Promise<WatchSessionResponse[]> {
  const out: WatchSessionResponse[] = [];
  for await (const m of stream) {
    if (m.event.case === "tokenIssued") out.push(m);
    if (out.length >= count) break;
  }
  return out;
}

const GRANTS = [
  { resource: "salesforce", scopes: ["read"] },
  { resource: "calendar", scopes: ["read"] },
];

describe("a revocation withdraws grants", () => {
  it("by resource: IssueToken and a new WatchSession of an earlier session are refused; a later session is granted afresh", async () => {
    const s = await startSalesSession(h);
    expect((await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] })).token?.resource).toBe("salesforce");

    await h.orchestrator.revoke({ target: { case: "resource", value: "salesforce" }, reason: "kill switch" });

    const issued = await failure(s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] }));
    expect(issued?.code).toBe(Code.PermissionDenied);
    expect(reasonOf(issued)).toBe("GRANT_REVOKED");
    expect(errorInfoOf(issued)?.metadata.resource).toBe("salesforce");

    const watched = await streamFailure(s.runtime.watchSession({ grants: GRANTS }));
    expect(watched.code).toBe(Code.PermissionDenied);
    expect(reasonOf(watched)).toBe("GRANT_REVOKED");
    expect(errorInfoOf(watched)?.metadata).toMatchObject({ grantIndex: "0", resource: "salesforce" });

    // The other grant of the same session is untouched.
    expect((await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token?.resource).toBe("calendar");

    // A session started after the revocation is granted the resource again.
    const later = await startSalesSession(h);
    const { token } = await later.runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
    expect(token?.resource).toBe("salesforce");
    const streamed = await firstTokens(later.runtime.watchSession({ grants: GRANTS }), 2);
    expect(streamed.map((m) => (m.event.case === "tokenIssued" ? m.event.value.grantIndex : -1)).sort()).toEqual([0, 1]);
    await h.orchestrator.endSession({ sessionId: later.sessionId });
    await h.orchestrator.endSession({ sessionId: s.sessionId });
  });

  it("by token id: the grant that token was issued under, in its own session only", async () => {
    const s = await startSalesSession(h);
    const other = await startSalesSession(h);
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    await h.orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId }, reason: "leaked" });

    const again = await failure(s.runtime.issueToken({ resource: "calendar", scopes: ["read"] }));
    expect(reasonOf(again)).toBe("GRANT_REVOKED");
    expect((await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] })).token?.resource).toBe("salesforce");
    expect((await other.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token?.resource).toBe("calendar");
    await h.orchestrator.endSession({ sessionId: s.sessionId });
    await h.orchestrator.endSession({ sessionId: other.sessionId });
  });

  it("a live stream stops the withdrawn grant and tells the runtime, while its other grant renews on", async () => {
    const s = await startSalesSession(h);
    const c = collect((signal) => s.runtime.watchSession({ grants: GRANTS }, { signal }));
    await c.until(() => c.of("tokenIssued").length >= 2, "the first tokens");
    // A token of the session minted outside the stream: revoking it withdraws the stream's grant too.
    const { token } = await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] });
    await h.orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId }, reason: "leaked elsewhere" });
    await c.until(() => c.of("tokensRevoked").length > 0, "the revocation");
    expect(c.of("tokensRevoked")[0]!.grantIndexes).toEqual([0]);
    c.stop();
    await c.done;
    await h.orchestrator.endSession({ sessionId: s.sessionId });
  });
});

describe("a grant's TTL is a cap", () => {
  it("refuses IssueToken and WatchSession asking for more than the grant's ttl, and honours what fits", async () => {
    const s = await startSalesSession(h, { ttlSeconds: 60 });
    const tooLong = await failure(s.runtime.issueToken({ resource: "salesforce", scopes: ["read"], ttl: { seconds: 3600n } }));
    expect(tooLong?.code).toBe(Code.InvalidArgument);
    expect(reasonOf(tooLong)).toBe("TTL_EXCEEDS_GRANT");
    expect(errorInfoOf(tooLong)?.metadata).toMatchObject({ field: "ttl", resource: "salesforce" });
    expect(tooLong?.rawMessage).toContain("60s");

    const fits = (await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"], ttl: { seconds: 30n } })).token!;
    const c = jose.decodeJwt(fits.accessToken);
    // The issuer and the minter read the clock one after the other: a second boundary between
    // the two readings shortens the stated lifetime by one second.
    expect(c.exp! - c.iat!).toBeGreaterThanOrEqual(29);
    expect(c.exp! - c.iat!).toBeLessThanOrEqual(30);
    const unset = (await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] })).token!;
    const u = jose.decodeJwt(unset.accessToken);
    expect(u.exp! - u.iat!).toBeGreaterThanOrEqual(59);
    expect(u.exp! - u.iat!).toBeLessThanOrEqual(60);

    const watched = await streamFailure(
      s.runtime.watchSession({ grants: [{ resource: "calendar", scopes: ["read"] }, { resource: "salesforce", scopes: ["read"], ttl: { seconds: 3600n } }] }),
    );
    expect(watched.code).toBe(Code.InvalidArgument);
    expect(reasonOf(watched)).toBe("TTL_EXCEEDS_GRANT");
    expect(errorInfoOf(watched)?.metadata).toMatchObject({ field: "grants[1].ttl", grantIndex: "1" });
    await h.orchestrator.endSession({ sessionId: s.sessionId });
  });
});

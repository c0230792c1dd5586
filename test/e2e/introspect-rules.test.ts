/**
 * Introspect, tightened: callers are authorized before any token is read (no oracle),
 * resource servers learn only about their own audiences, and a token signed by a published
 * key is active only when its claims agree with its session, its grants, the longest token
 * lifetime and its key's retirement.
 */
import type { KeyObject } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../../src/auth/credentials.js";
import { reasonOf } from "../../src/errors.js";
import type { AccessTokenClaims } from "../../src/tokens/claims.js";
import { newJti } from "../../src/tokens/jti.js";
import { GATEWAY_TOKEN, startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

const PROD_TOKEN = "prod-orchestrator-token-0123456789abcdef";
const BLIND_GATEWAY_TOKEN = "blind-gateway-token-0123456789abcdef";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    orchestrators: { prod: PROD_TOKEN },
    settings: {
      // The demo gateway fronts the calendar only; "blind-gateway" has no audiences at all.
      resourceServerHashes: new Map([["blind-gateway", sha256Hex(BLIND_GATEWAY_TOKEN)]]),
      resourceServerAudiences: new Map([["demo-gateway", new Set(["calendar"])]]),
    },
  });
});

afterAll(async () => {
  await h?.close();
});

async function failure(call: Promise<unknown>): Promise<ConnectError | undefined> {
  return call.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
}

/** Signs `claims` as capvend would, with `key` under `kid`: what an insider holding a signing key could do. */
async function forge(claims: AccessTokenClaims, key: KeyObject, kid: string): Promise<string> {
  return new jose.SignJWT({ ...claims }).setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid }).sign(key);
}

/** A genuine token's claims (decoded, not verified), to alter. */
function claimsOf(jwt: string): AccessTokenClaims {
  return jose.decodeJwt(jwt) as unknown as AccessTokenClaims;
}

/** Flips one character of the signature. */
function tamper(jwt: string): string {
  const last = jwt.at(-2) === "A" ? "B" : "A";
  return `${jwt.slice(0, -2)}${last}${jwt.at(-1)}`;
}

describe("Introspect decides who may ask before it reads the token", () => {
  it("gives an orchestrator without the introspect permission the same PERMISSION_DENIED for good, tampered and garbage tokens", async () => {
    const s = await startSalesSession(h);
    const good = (await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!.accessToken;
    const prod = h.client(PROD_TOKEN);
    const answers = [];
    for (const token of [good, tamper(good), "x.y.z", "", "A".repeat(9000)]) {
      const e = await failure(prod.introspect({ token }));
      answers.push({ code: e?.code, reason: reasonOf(e), message: e?.rawMessage });
    }
    expect(answers[0]).toMatchObject({ code: Code.PermissionDenied, reason: "ACTION_DENIED" });
    // Nothing tells the good token from the others: the answer never depended on it.
    for (const a of answers) expect(a).toEqual(answers[0]);
    // The permitted orchestrator learns it is active.
    expect((await h.orchestrator.introspect({ token: good })).active).toBe(true);
  });

  it("refuses a resource server with no audiences whatever the token", async () => {
    const s = await startSalesSession(h);
    const good = (await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!.accessToken;
    for (const token of [good, tamper(good)]) {
      const e = await failure(h.client(BLIND_GATEWAY_TOKEN).introspect({ token }));
      expect(e?.code).toBe(Code.PermissionDenied);
      expect(e?.rawMessage).toContain("CAPVEND_RESOURCE_SERVER_AUDIENCES");
    }
  });

  it("tells a resource server about its own audiences' tokens only: another resource's token is inactive with nothing else", async () => {
    const s = await startSalesSession(h);
    const calendar = (await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!.accessToken;
    const salesforce = (await s.runtime.issueToken({ resource: "salesforce", scopes: ["read"] })).token!.accessToken;
    const gateway = h.client(GATEWAY_TOKEN);
    const own = await gateway.introspect({ token: calendar });
    expect(own).toMatchObject({ active: true, aud: "calendar", sid: s.sessionId });
    const foreign = await gateway.introspect({ token: salesforce });
    expect(foreign.active).toBe(false);
    expect([foreign.aud, foreign.sub, foreign.sid, foreign.jti, foreign.scope, foreign.clientId]).toEqual(["", "", "", "", "", ""]);
    expect(foreign.exp).toBeUndefined();
    // The orchestrator, which has no audience limit, sees it.
    expect((await h.orchestrator.introspect({ token: salesforce })).active).toBe(true);
  });
});

describe("Introspect cross-checks a validly signed token's claims", () => {
  it("answers inactive for another session's sid, widened scopes, an ungranted aud or an exp a year out; the same forger's honest token is active", async () => {
    const s = await startSalesSession(h);
    const bob = await h.orchestrator.startSession({ agentId: "sales-bot", userId: "bob", grants: [{ resource: "calendar", scopes: ["read"] }] });
    const genuine = (await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!.accessToken;
    const key = h.keyRing.current();
    const base = claimsOf(genuine);
    const now = Math.floor(Date.now() / 1000);
    const honest = { ...base, jti: newJti(s.sessionId, "calendar", Date.now()), iat: now, nbf: now, exp: now + 300 };

    // Control: the forging itself yields an active token, so each inactive below is a check at work.
    expect((await h.orchestrator.introspect({ token: await forge(honest, key.privateKey, key.kid) })).active).toBe(true);

    const cases: Record<string, AccessTokenClaims> = {
      "sid of another session": { ...honest, sid: bob.sessionId },
      "sid of another session, with a jti made for it": { ...honest, sid: bob.sessionId, jti: newJti(bob.sessionId, "calendar", Date.now()) },
      "widened scopes": { ...honest, scope: "read write" },
      "ungranted aud": { ...honest, aud: "warehouse", jti: newJti(s.sessionId, "warehouse", Date.now()) },
      "exp a year out": { ...honest, exp: now + 365 * 24 * 3600 },
      "another agent": { ...honest, client_id: "report-bot", act: { sub: "agent:report-bot" } },
    };
    for (const [what, claims] of Object.entries(cases)) {
      const answer = await h.orchestrator.introspect({ token: await forge(claims, key.privateKey, key.kid) });
      expect({ what, active: answer.active }).toEqual({ what, active: false });
    }
    await h.orchestrator.endSession({ sessionId: bob.sessionId });
  });

  it("answers inactive for a token signed by a retired key after its retirement; one it signed before stays active", async () => {
    const s = await startSalesSession(h);
    const before = (await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!.accessToken;
    const old = h.keyRing.current();
    const stolen = old.privateKey;
    await new Promise((r) => setTimeout(r, 1100)); // the retirement falls in a later second than `before`
    await h.keyRing.rotate();
    expect(h.keyRing.retiredAt(old.kid)).toBeDefined();
    expect(h.keyRing.jwks().keys.map((k) => k.kid)).toContain(old.kid);

    expect((await h.orchestrator.introspect({ token: before })).active).toBe(true);
    await new Promise((r) => setTimeout(r, 1100)); // a whole second after the retirement
    const now = Math.floor(Date.now() / 1000);
    const late = { ...claimsOf(before), jti: newJti(s.sessionId, "calendar", Date.now()), iat: now, nbf: now, exp: now + 300 };
    expect((await h.orchestrator.introspect({ token: await forge(late, stolen, old.kid) })).active).toBe(false);
    // Tokens of the new key are fine.
    const after = (await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!.accessToken;
    expect((await h.orchestrator.introspect({ token: after })).active).toBe(true);
  });
});

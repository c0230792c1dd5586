import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, importJWK, jwtVerify } from "jose";
import { inspect } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { JTI_PATTERN } from "../../src/tokens/claims.js";
import { createMinter } from "../../src/tokens/mint.js";
import { ISSUER, MAX_TTL_MS, input, tokenRig } from "./fixtures.js";

const rig = tokenRig();
afterEach(() => rig.cleanup());

describe.each(["EdDSA", "ES256"] as const)("mint with %s", (alg) => {
  it.each([
    ["for a user", "alice", "user:alice"],
    ["for the agent itself", undefined, "agent:sales-bot"],
  ])("writes the fixed header and claims %s", async (_, userId, sub) => {
    const { ring, minter, clock } = await rig.make(alg);
    clock.advance(1234); // not on a second boundary: iat floors
    const expiresAtMs = clock.now() + 300_500;
    const token = minter.mint(input(clock, { userId, expiresAtMs }));
    const iat = Math.floor(clock.now() / 1000);

    expect(decodeProtectedHeader(token.jwt)).toStrictEqual({ alg, typ: "at+jwt", kid: ring.current().kid });
    const expected = {
      iss: ISSUER,
      sub,
      act: { sub: "agent:sales-bot" },
      client_id: "sales-bot",
      sid: "ses_123",
      aud: "salesforce",
      scope: "read write",
      jti: token.jti,
      iat,
      nbf: iat,
      exp: Math.floor(expiresAtMs / 1000),
    };
    expect(decodeJwt(token.jwt)).toStrictEqual(expected);
    expect(token.claims).toStrictEqual(expected);
    // Key order is part of the fixed format.
    expect(Object.keys(decodeJwt(token.jwt))).toEqual(Object.keys(expected));
    expect(token.jti).toMatch(JTI_PATTERN);
    expect(token.kid).toBe(ring.current().kid);
    expect(token.issuedAtMs).toBe(iat * 1000);
    expect(token.expiresAtMs).toBe(expected.exp * 1000);
    // JWS signatures for both algs are 64 raw bytes (ES256 as r||s, not DER).
    expect(Buffer.from(token.jwt.split(".")[2]!, "base64url")).toHaveLength(64);
  });

  it("is accepted by jose.jwtVerify with typ, issuer and audience checks", async () => {
    const { ring, minter, clock } = await rig.make(alg);
    const token = minter.mint(input(clock));
    const options = { typ: "at+jwt", issuer: ISSUER, audience: "salesforce", algorithms: [alg], currentDate: new Date(clock.now()) };
    const viaSet = await jwtVerify(token.jwt, createLocalJWKSet(ring.jwks() as never), options);
    expect(viaSet.payload).toStrictEqual(token.claims);
    expect(viaSet.protectedHeader.kid).toBe(token.kid);
    const viaKey = await jwtVerify(token.jwt, await importJWK(ring.current().publicJwk as never, alg), options);
    expect(viaKey.payload.jti).toBe(token.jti);
    // The checks are live: the wrong audience is refused.
    await expect(jwtVerify(token.jwt, createLocalJWKSet(ring.jwks() as never), { ...options, audience: "github" })).rejects.toMatchObject({
      code: "ERR_JWT_CLAIM_VALIDATION_FAILED",
      claim: "aud",
    });
  });

  it("signs with the new key after a rotation", async () => {
    const { ring, minter, clock } = await rig.make(alg);
    const before = minter.mint(input(clock));
    const fresh = await ring.rotate();
    const after = minter.mint(input(clock));
    expect(after.kid).toBe(fresh.kid);
    expect(before.kid).not.toBe(fresh.kid);
    expect(decodeProtectedHeader(after.jwt).kid).toBe(fresh.kid);
    const set = createLocalJWKSet(ring.jwks() as never);
    for (const t of [before, after]) {
      await expect(jwtVerify(t.jwt, set, { typ: "at+jwt", issuer: ISSUER, currentDate: new Date(clock.now()) })).resolves.toBeDefined();
    }
  });
});

describe("mint", () => {
  it("gives every token a distinct jti (10k mints)", async () => {
    const { minter, clock } = await rig.make();
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const { jti } = minter.mint(input(clock));
      expect(jti).toMatch(JTI_PATTERN);
      seen.add(jti);
    }
    expect(seen.size).toBe(10_000);
  });

  it("keeps scopes in the given order", async () => {
    const { minter, clock } = await rig.make();
    expect(minter.mint(input(clock, { scopes: ["write", "admin:repo", "read"] })).claims.scope).toBe("write admin:repo read");
  });

  it("keeps the token itself out of JSON, inspect, String and spreads", async () => {
    const { minter, clock } = await rig.make();
    const token = minter.mint(input(clock));
    const signature = token.jwt.split(".")[2]!;
    for (const text of [
      JSON.stringify(token),
      JSON.stringify({ token }),
      inspect(token, { showHidden: true, depth: Infinity, getters: true }),
      String(token),
      JSON.stringify({ ...token }),
    ]) {
      expect(text).not.toContain(signature);
      expect(text).not.toContain(token.jwt);
    }
    expect(JSON.parse(JSON.stringify(token))).toMatchObject({ jti: token.jti, kid: token.kid });
    expect(String(token)).toBe(`MintedToken(${token.jti})`);
  });

  it("allows expiry up to the key ring's maximum TTL, and not beyond", async () => {
    const { minter, clock } = await rig.make();
    expect(minter.mint(input(clock, {}, MAX_TTL_MS)).expiresAtMs).toBe(clock.now() + MAX_TTL_MS);
    expect(() => minter.mint(input(clock, {}, MAX_TTL_MS + 1))).toThrow(RangeError);
  });

  it("refuses an expiry less than a second away", async () => {
    const { minter, clock } = await rig.make();
    expect(() => minter.mint(input(clock, {}, 999))).toThrow("expiresAtMs must be at least one second after now");
    expect(() => minter.mint(input(clock, {}, -5000))).toThrow(RangeError);
    expect(minter.mint(input(clock, {}, 1000)).claims.exp).toBe(clock.now() / 1000 + 1);
  });

  it.each([
    [{ agentId: "" }, /agentId must be a non-empty string/],
    [{ userId: "" }, /userId must be a non-empty string/],
    [{ sessionId: undefined as unknown as string }, /sessionId must be a non-empty string/],
    [{ resource: "" }, /resource must be a non-empty string/],
    [{ scopes: [] }, /scopes must be a non-empty array/],
    [{ scopes: ["read", "read write"] }, /scopes\[1\] is not an RFC 6749 scope token/],
    [{ scopes: ['say"hi'] }, /scopes\[0\] is not an RFC 6749 scope token/],
    [{ expiresAtMs: Number.NaN }, /expiresAtMs must be a finite number/],
  ])("refuses bad input %#", async (overrides, message) => {
    const { minter, clock } = await rig.make();
    expect(() => minter.mint(input(clock, overrides))).toThrow(message);
  });

  it("refuses an empty issuer", async () => {
    const { ring, clock } = await rig.make();
    expect(() => createMinter({ keyRing: ring, issuer: "", clock })).toThrow("issuer must be a non-empty string");
  });
});

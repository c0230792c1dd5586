import { sign } from "node:crypto";
import { inspect } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import type { SigningKey } from "../../src/keys/signing-key.js";
import { createVerifier, type VerifyErrorCode } from "../../src/tokens/verify.js";
import { CapvendError } from "../../src/errors.js";
import { ISSUER, MAX_TTL_MS, input, tokenRig } from "./fixtures.js";

const rig = tokenRig();
afterEach(() => rig.cleanup());

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** Signs arbitrary header and payload (a string is used verbatim) with a ring key, as an attacker with the key could not. */
function signRaw(key: SigningKey, header: unknown, payload: unknown): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const sig =
    key.alg === "ES256"
      ? sign("sha256", Buffer.from(input), { key: key.privateKey, dsaEncoding: "ieee-p1363" })
      : sign(null, Buffer.from(input), key.privateKey);
  return `${input}.${sig.toString("base64url")}`;
}

/** Asserts a CapvendError with `code` whose message and rendering never quote the token. */
async function expectRefused(promise: Promise<unknown>, code: VerifyErrorCode, jwt?: string): Promise<CapvendError> {
  const err = await promise.then(
    () => expect.fail(`expected ${code}, the token was accepted`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CapvendError);
  const e = err as CapvendError;
  expect(e.errorCode).toBe(code);
  if (typeof jwt === "string") {
    const parts = jwt.split(".").filter((p) => p.length >= 12);
    for (const text of [e.message, String(e), JSON.stringify(e), inspect(e, { depth: 5 })]) {
      if (jwt.length >= 12) expect(text).not.toContain(jwt);
      for (const part of parts) expect(text).not.toContain(part);
    }
  }
  return e;
}

describe.each(["EdDSA", "ES256"] as const)("verify %s tokens", (alg) => {
  it("accepts a minted token and returns its claims", async () => {
    const { ring, minter, clock } = await rig.make(alg);
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    for (const userId of ["alice", undefined]) {
      const token = minter.mint(input(clock, { userId }));
      expect(await verifier.verify(token.jwt)).toStrictEqual(token.claims);
    }
  });

  it("refuses a tampered payload or signature as bad_signature", async () => {
    const { ring, minter, clock } = await rig.make(alg);
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    const { jwt, claims } = minter.mint(input(clock));
    const [h, , s] = jwt.split(".");
    const widened = `${h}.${b64({ ...claims, scope: "read write admin" })}.${s}`;
    await expectRefused(verifier.verify(widened), "token_bad_signature", widened);
    // Flip a character in the middle of the signature (the last one may carry padding bits).
    const mid = Math.floor(s!.length / 2);
    const flipped = `${h}.${jwt.split(".")[1]}.${s!.slice(0, mid)}${s![mid] === "A" ? "B" : "A"}${s!.slice(mid + 1)}`;
    await expectRefused(verifier.verify(flipped), "token_bad_signature", flipped);
  });

  it("refuses a token signed by another key under this ring's kid as bad_signature", async () => {
    const { ring, clock } = await rig.make(alg);
    const other = await rig.make(alg, clock);
    const forged = other.minter.mint(input(clock)).jwt;
    const [, p, s] = forged.split(".");
    const relabelled = `${b64({ alg, typ: "at+jwt", kid: ring.current().kid })}.${p}.${s}`;
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    await expectRefused(verifier.verify(relabelled), "token_bad_signature", relabelled);
    await expectRefused(verifier.verify(forged), "token_unknown_key", forged);
  });

  it("times: not_yet_valid before nbf, valid until exp, expired at exp", async () => {
    const { ring, minter, clock } = await rig.make(alg);
    const verifierClock = new ManualClock(clock.now() - 1000);
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock: verifierClock });
    const token = minter.mint(input(clock, {}, 60_000));
    await expectRefused(verifier.verify(token.jwt), "token_not_yet_valid", token.jwt);
    verifierClock.advance(1000);
    await expect(verifier.verify(token.jwt)).resolves.toMatchObject({ jti: token.jti });
    verifierClock.advance(60_000 - 1);
    await expect(verifier.verify(token.jwt)).resolves.toMatchObject({ jti: token.jti });
    verifierClock.advance(1);
    expect(verifierClock.now()).toBe(token.expiresAtMs);
    await expectRefused(verifier.verify(token.jwt), "token_expired", token.jwt);
  });
});

describe("verify", () => {
  it("refuses another issuer's token as wrong_issuer", async () => {
    const { ring, minter, clock } = await rig.make();
    const verifier = createVerifier({ keyRing: ring, issuer: "https://other.example", clock });
    const { jwt } = minter.mint(input(clock));
    await expectRefused(verifier.verify(jwt), "token_wrong_issuer", jwt);
  });

  it("refuses a token whose typ is not at+jwt as wrong_type", async () => {
    const { ring, minter, clock } = await rig.make();
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    const { claims, kid } = minter.mint(input(clock));
    for (const header of [{ alg: "EdDSA", typ: "JWT", kid }, { alg: "EdDSA", kid }]) {
      const jwt = signRaw(ring.current(), header, claims);
      await expectRefused(verifier.verify(jwt), "token_wrong_type", jwt);
    }
    // RFC 8725's media-type spelling is the same type.
    await expect(verifier.verify(signRaw(ring.current(), { alg: "EdDSA", typ: "application/at+jwt", kid }, claims))).resolves.toBeDefined();
  });

  it("refuses unknown or mismatched keys as unknown_key", async () => {
    const { ring, minter, clock } = await rig.make();
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    const { jwt } = minter.mint(input(clock));
    const [, p, s] = jwt.split(".");
    for (const header of [
      { alg: "EdDSA", typ: "at+jwt", kid: "no-such-key" },
      // The right kid with another alg: the JWKS entry says EdDSA, so no key matches.
      { alg: "ES256", typ: "at+jwt", kid: ring.current().kid },
    ]) {
      const forged = `${b64(header)}.${p}.${s}`;
      await expectRefused(verifier.verify(forged), "token_unknown_key", forged);
    }
  });

  it("refuses algorithms it does not sign with as bad_signature", async () => {
    const { ring, minter, clock } = await rig.make();
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    const { jwt } = minter.mint(input(clock));
    const [, p, s] = jwt.split(".");
    for (const alg of ["none", "HS256", "RS256", "Ed25519"]) {
      const forged = `${b64({ alg, typ: "at+jwt", kid: ring.current().kid })}.${p}.${s}`;
      await expectRefused(verifier.verify(forged), "token_bad_signature", forged);
    }
  });

  it.each([
    ["missing sid", (c: Record<string, unknown>) => ({ ...c, sid: undefined })],
    ["missing exp", (c: Record<string, unknown>) => ({ ...c, exp: undefined })],
    ["aud as an array", (c: Record<string, unknown>) => ({ ...c, aud: ["salesforce"] })],
    ["act not naming client_id", (c: Record<string, unknown>) => ({ ...c, act: { sub: "agent:someone-else" } })],
    ["sub neither user nor the agent", (c: Record<string, unknown>) => ({ ...c, sub: "agent:someone-else" })],
    ["jti of the wrong shape", (c: Record<string, unknown>) => ({ ...c, jti: "1234" })],
    ["scope not a string", (c: Record<string, unknown>) => ({ ...c, scope: ["read"] })],
    ["iat not a number", (c: Record<string, unknown>) => ({ ...c, iat: "now" })],
    ["nbf fractional", (c: Record<string, unknown>) => ({ ...c, nbf: (c.nbf as number) - 0.5 })],
  ])("refuses a signed token with %s as wrong_claims", async (_, edit) => {
    const { ring, minter, clock } = await rig.make();
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    const { claims, kid } = minter.mint(input(clock));
    const jwt = signRaw(ring.current(), { alg: "EdDSA", typ: "at+jwt", kid }, edit({ ...claims }));
    await expectRefused(verifier.verify(jwt), "token_wrong_claims", jwt);
  });

  it("refuses malformed input as token_malformed, with nothing but CapvendError", async () => {
    const { ring, minter, clock } = await rig.make();
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    const { jwt, kid, claims } = minter.mint(input(clock));
    const [h, p, s] = jwt.split(".");
    const cases: unknown[] = [
      "",
      "abc",
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}`,
      `${h}..${s}`,
      `${h}.${p}.`,
      `${h}.${p}.${s}=`,
      `${h}.${p}.${s} `,
      `${h}.${p}+/.${s}`,
      `${h}.${p}.${s}é`,
      `${b64("not json")}.${p}.${s}`,
      `${b64([1, 2])}.${p}.${s}`,
      `${b64("null")}.${p}.${s}`,
      `${b64({ alg: "EdDSA", typ: "at+jwt" })}.${p}.${s}`, // no kid
      `${b64({ alg: "EdDSA", typ: "at+jwt", kid: 7 })}.${p}.${s}`,
      signRaw(ring.current(), { alg: "EdDSA", typ: "at+jwt", kid }, "this is not json"),
      signRaw(ring.current(), { alg: "EdDSA", typ: "at+jwt", kid }, [claims]),
      signRaw(ring.current(), { alg: "EdDSA", typ: "at+jwt", kid, crit: ["exp"] }, claims),
      signRaw(ring.current(), { alg: "EdDSA", typ: "at+jwt", kid, b64: false, crit: ["b64"] }, claims),
      `${jwt}${"A".repeat(8 * 1024)}`,
      undefined,
      42,
      { jwt },
    ];
    for (const bad of cases) {
      await expectRefused(verifier.verify(bad as string), "token_malformed", typeof bad === "string" ? bad : undefined);
    }
  });

  it("applies maxTokenBytes: 8 KiB by default, configurable", async () => {
    const { ring, minter, clock } = await rig.make();
    const { jwt } = minter.mint(input(clock));
    const tight = createVerifier({ keyRing: ring, issuer: ISSUER, clock, maxTokenBytes: jwt.length - 1 });
    const e = await expectRefused(tight.verify(jwt), "token_malformed", jwt);
    expect(e.rawMessage).toBe(`token is longer than ${jwt.length - 1} bytes`);
    await expect(createVerifier({ keyRing: ring, issuer: ISSUER, clock, maxTokenBytes: jwt.length }).verify(jwt)).resolves.toBeDefined();
    const e2 = await expectRefused(createVerifier({ keyRing: ring, issuer: ISSUER, clock }).verify("a".repeat(8193)), "token_malformed");
    expect(e2.rawMessage).toBe("token is longer than 8192 bytes");
    expect(() => createVerifier({ keyRing: ring, issuer: ISSUER, clock, maxTokenBytes: 0 })).toThrow(RangeError);
  });

  it("survives random mutations of a valid token with CapvendError only", async () => {
    const { ring, minter, clock } = await rig.make();
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    const { jwt } = minter.mint(input(clock));
    const alphabet = "ABCxyz019-_.=+/ \u0000é{}\"";
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const seen = new Set<VerifyErrorCode>();
    for (let i = 0; i < 1500; i++) {
      let t = jwt;
      for (let m = 0, edits = 1 + rand(4); m < edits; m++) {
        const at = rand(t.length + 1);
        const ch = alphabet[rand(alphabet.length)]!;
        const op = rand(3);
        t = op === 0 ? t.slice(0, at) + ch + t.slice(at + 1) : op === 1 ? t.slice(0, at) + ch + t.slice(at) : t.slice(0, at) + t.slice(at + 1);
      }
      if (t === jwt) continue;
      const err = await verifier.verify(t).then(
        () => undefined,
        (e: unknown) => e,
      );
      // A mutation can land on a non-significant bit of the last signature char and still verify.
      if (err === undefined) continue;
      expect(err).toBeInstanceOf(CapvendError);
      expect((err as Error).message).not.toContain(t);
      seen.add((err as CapvendError).errorCode as VerifyErrorCode);
    }
    expect(seen).toContain("token_malformed");
    expect(seen).toContain("token_bad_signature");
  });
});

describe("verify across rotation", () => {
  it("accepts old tokens until retiredAt + maxTokenTtl; after prune their key is gone", async () => {
    const { ring, minter, clock } = await rig.make();
    const verifier = createVerifier({ keyRing: ring, issuer: ISSUER, clock });
    const old = minter.mint(input(clock, {}, MAX_TTL_MS));
    await ring.rotate();
    const fresh = minter.mint(input(clock, {}, MAX_TTL_MS));
    expect(fresh.kid).not.toBe(old.kid);
    await expect(verifier.verify(old.jwt)).resolves.toMatchObject({ jti: old.jti });
    await expect(verifier.verify(fresh.jwt)).resolves.toMatchObject({ jti: fresh.jti });

    clock.advance(MAX_TTL_MS - 1000);
    await expect(verifier.verify(old.jwt)).resolves.toMatchObject({ jti: old.jti });

    clock.advance(1000);
    expect(await ring.prune()).toEqual([old.kid]);
    expect(ring.jwks().keys.map((k) => k.kid)).not.toContain(old.kid);
    await expectRefused(verifier.verify(old.jwt), "token_unknown_key", old.jwt);
  });

  it("verifies against any JWKS source, e.g. the union of two replicas' keys", async () => {
    const clock = new ManualClock();
    const a = await rig.make("EdDSA", clock);
    const b = await rig.make("ES256", clock);
    let replicas = [a.ring];
    // A fresh object on every call, as a remote source would return.
    const union = { jwks: () => ({ keys: replicas.flatMap((r) => r.jwks().keys.map((k) => ({ ...k }))) }) };
    const verifier = createVerifier({ keyRing: union, issuer: ISSUER, clock });
    const fromA = a.minter.mint(input(clock));
    const fromB = b.minter.mint(input(clock));
    await expect(verifier.verify(fromA.jwt)).resolves.toMatchObject({ jti: fromA.jti });
    await expectRefused(verifier.verify(fromB.jwt), "token_unknown_key", fromB.jwt);
    replicas = [a.ring, b.ring];
    await expect(verifier.verify(fromB.jwt)).resolves.toMatchObject({ jti: fromB.jti });
  });

  it("treats a corrupt published key as unknown_key", async () => {
    const { ring, minter, clock } = await rig.make();
    const corrupt = { jwks: () => ({ keys: ring.jwks().keys.map((k) => ({ ...k, x: "AAAA" })) }) };
    const { jwt } = minter.mint(input(clock));
    await expectRefused(createVerifier({ keyRing: corrupt, issuer: ISSUER, clock }).verify(jwt), "token_unknown_key", jwt);
  });
});

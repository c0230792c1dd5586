import { generateKeyPairSync, randomBytes, randomUUID, createHash, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { REDACTED, isSecretKey, looksSecret, redact, registerBearerTokenHashes } from "../../src/security/redact.js";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");

function b64url(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString("base64url");
}

/** A real compact JWS signed with Ed25519, shaped like a capvend token. */
function makeJwt(): string {
  const header = b64url({ alg: "EdDSA", typ: "at+jwt", kid: "kid_test" });
  const payload = b64url({
    iss: "https://capvend.local",
    sub: "user:alice",
    act: { sub: "agent:sales-bot" },
    sid: "ses_abc",
    aud: "salesforce",
    scope: "read write",
    jti: "tok_0123456789",
    iat: 1764300000,
    exp: 1764300900,
  });
  const sig = sign(null, Buffer.from(`${header}.${payload}`), privateKey).toString("base64url");
  return `${header}.${payload}.${sig}`;
}

function credential(): string {
  return `ses_${randomBytes(12).toString("base64url")}.${randomBytes(32).toString("base64url")}`;
}

describe("looksSecret: secrets", () => {
  it("flags a compact JWS and one embedded in text", () => {
    const jwt = makeJwt();
    expect(looksSecret(jwt)).toBe(true);
    expect(looksSecret(`Bearer ${jwt}`)).toBe(true);
    expect(looksSecret(`calling https://api.example.com?access_token=${jwt}&x=1`)).toBe(true);
    expect(looksSecret(JSON.stringify({ headers: { authorization: `Bearer ${jwt}` } }))).toBe(true);
  });

  it("flags an unsigned JWT and a JWT whose header has whitespace", () => {
    const header = Buffer.from('{ "alg": "none" }').toString("base64url");
    expect(looksSecret(`${header}.${b64url({ sub: "x" })}.`)).toBe(true);
    const nl = Buffer.from('{\n"alg":"EdDSA"}').toString("base64url");
    expect(nl.startsWith("ew")).toBe(true);
    expect(looksSecret(`${nl}.${b64url({ sub: "x" })}.c2ln`)).toBe(true);
  });

  it("flags session credentials, alone and embedded", () => {
    for (let i = 0; i < 50; i++) {
      const c = credential();
      expect(looksSecret(c)).toBe(true);
      expect(looksSecret(`session credential=${c};`)).toBe(true);
    }
  });

  it("flags generated orchestrator tokens, alone and embedded, by their cvo_ structure", () => {
    for (let i = 0; i < 50; i++) {
      const t = `cvo_${randomBytes(32).toString("base64url")}`;
      expect(looksSecret(t)).toBe(true);
      expect(looksSecret(`Bearer ${t}`)).toBe(true);
    }
    // A prefix in the middle of an id is not the start of a token.
    expect(looksSecret(`xcvo_${randomBytes(32).toString("base64url")}`)).toBe(false);
  });

  it("flags configured bearer tokens by their sha256, whatever they look like", () => {
    const token = "plain-words-are-a-poor-but-possible-token";
    expect(looksSecret(`header was Bearer ${token} and more`)).toBe(false);
    registerBearerTokenHashes([{ sha256Hex: createHash("sha256").update(token).digest("hex"), length: token.length }]);
    expect(looksSecret(`header was Bearer ${token} and more`)).toBe(true);
    expect(looksSecret(token)).toBe(true);
    // Only the token itself: a longer run that contains it is another string.
    expect(looksSecret(`${token}x`)).toBe(false);
    const onlyHash = "only-the-hash-of-this-one-is-configured";
    registerBearerTokenHashes([{ sha256Hex: createHash("sha256").update(onlyHash).digest("hex") }]);
    // Unknown length: only the thorough check (the audit sink's) hashes every run.
    expect(looksSecret(`auth=${onlyHash};`, true)).toBe(true);
    expect(looksSecret(`auth=${onlyHash};`)).toBe(false);
  });

  it("flags PEM private keys but not public keys", () => {
    const pem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    expect(looksSecret(pem)).toBe(true);
    expect(looksSecret(`key loaded: ${pem.replace(/\n/g, "\\n")}`)).toBe(true);
    expect(looksSecret("-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----")).toBe(true);
    expect(looksSecret("-----BEGIN EC PRIVATE KEY-----")).toBe(true);
    expect(looksSecret("-----BEGIN OPENSSH PRIVATE KEY-----")).toBe(true);
    // An RSA public key in PEM has no 43-char runs (lines are 64 chars).
    const rsaPub = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "pem", type: "spki" }).toString();
    expect(looksSecret(rsaPub)).toBe(false);
  });

  it("flags private JWKs, also when escaped inside a string", () => {
    const jwk = privateKey.export({ format: "jwk" });
    expect(jwk.d).toBeTypeOf("string");
    expect(looksSecret(JSON.stringify(jwk))).toBe(true);
    expect(looksSecret(JSON.stringify({ msg: JSON.stringify(jwk) }))).toBe(true);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
    expect(looksSecret(JSON.stringify(rsa))).toBe(true);
    expect(looksSecret(JSON.stringify({ kty: "oct", k: randomBytes(24).toString("base64url") }))).toBe(true);
  });

  it("passes ids by structure: OIDC pairwise subs, key ids, thumbprints and public coordinates", () => {
    // 43-char base64url values that are identifiers, not secrets: the filter goes by structure.
    for (let i = 0; i < 2000; i++) {
      const pairwise = createHash("sha256").update(`pairwise-${i}`).digest("base64url");
      expect(pairwise).toHaveLength(43);
      if (looksSecret(pairwise)) throw new Error(`took an id for a secret: ${pairwise}`);
    }
    const x = publicKey.export({ format: "jwk" }).x!;
    expect(looksSecret(x)).toBe(false);
    expect(looksSecret(`key.added ${x}`)).toBe(false);
  });
});

describe("looksSecret: not secrets", () => {
  const sha = createHash("sha256").update("x").digest("hex");
  const notSecrets = [
    "",
    "token.issued",
    "session.started",
    randomUUID(),
    `${randomUUID()}.${randomUUID()}`,
    `tok_${randomBytes(16).toString("base64url")}`,
    `tok_${randomBytes(29).toString("base64url")}`.slice(0, 43),
    `ses_${randomBytes(16).toString("base64url")}`,
    `ses_${randomBytes(29).toString("base64url")}`.slice(0, 43),
    "2026-01-01T00:00:00.000Z",
    "2026-01-01T12:34:56.789+02:00",
    sha,
    `sha256:${sha}`,
    "policy-allow-sales-bot-read",
    "allow-sales-bot-to-read-salesforce-accounts",
    "getOpportunitiesForSalesforceAccountHandler",
    "https://capvend.local/.well-known/jwks.json",
    "https://api.eu-west-1.amazonaws.com/v1/accounts/1234567890?limit=100&offset=200",
    "api.eu-west-1.amazonaws.com",
    "1.2.3",
    "v20.20.2",
    "10.0.0.1:4222",
    "alice@example.com",
    "/var/lib/capvend/audit/audit-000001.jsonl",
    "read write admin:users",
    "salesforce",
    "user:alice",
    "agent:sales-bot",
    "Policy permit(principal, action, resource) when { context.ttl_seconds <= 900 };",
    JSON.stringify({ decision: "allow", policy_ids: ["p1", "p2"], d: "short" }),
    JSON.stringify({ kty: "OKP", crv: "Ed25519", kid: "kid_abc", use: "sig" }),
    "a.b.c",
    "eyes.on.the.prize",
    "everything.is.fine.really",
    "-----BEGIN PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----",
    "00000000000000000000000000000000000000000000000000000000000000000",
    "traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  ];

  it.each(notSecrets.map((s) => [s]))("does not flag %j", (s) => {
    expect(looksSecret(s)).toBe(false);
  });

  it("does not flag a dotted base64url string whose first part is not a JWS header", () => {
    const notHeader = Buffer.from('{"typ":"JWT"}').toString("base64url"); // no "alg"
    expect(looksSecret(`${notHeader}.${b64url({ sub: "x" })}.abc`)).toBe(false);
    const notJson = Buffer.from('{"alg" is here but broken').toString("base64url");
    expect(looksSecret(`${notJson}.e30.abc`)).toBe(false);
  });
});

describe("redact", () => {
  it("replaces secret strings and drops secret-named keys at any depth, leaving the input alone", () => {
    const jwt = makeJwt();
    const cred = credential();
    const input = {
      msg: "issued",
      jti: "tok_123",
      Authorization: `Bearer ${jwt}`,
      nested: {
        ACCESS_TOKEN: "whatever",
        "session-credential": cred,
        privateKey: "x",
        d: "y",
        Password: "hunter2",
        secret: 1,
        token: "tok_1",
        note: `leaked ${cred}`,
        list: ["ok", jwt, { client_secret: "s", keep: 2 }],
      },
      count: 3,
      flag: true,
      none: null,
    };
    const snapshot = structuredClone(input);
    const out = redact(input);
    expect(out).toEqual({
      msg: "issued",
      jti: "tok_123",
      nested: { note: REDACTED, list: ["ok", REDACTED, { keep: 2 }] },
      count: 3,
      flag: true,
      none: null,
    });
    expect(input).toEqual(snapshot);
    expect(out.nested).not.toBe(input.nested);
  });

  it("redacts top-level strings and passes other primitives", () => {
    expect(redact(makeJwt())).toBe(REDACTED);
    expect(redact("hello")).toBe("hello");
    expect(redact(42)).toBe(42);
    expect(redact(undefined)).toBe(undefined);
  });

  it("copies Dates as JSON, Errors as plain objects, and survives cycles", () => {
    const jwt = makeJwt();
    const err = new Error(`bad token ${jwt}`);
    const cyclic: Record<string, unknown> = { name: "loop", when: new Date(0), err };
    cyclic.self = cyclic;
    const out = redact(cyclic) as Record<string, unknown>;
    expect(out.when).toBe("1970-01-01T00:00:00.000Z");
    expect(out.self).toBe(out);
    const e = out.err as Record<string, unknown>;
    expect(e.name).toBe("Error");
    expect(e.message).toBe(REDACTED);
    expect(String(e.stack)).not.toContain(jwt);
  });

  it("matches secret key names case- and separator-insensitively, and only those", () => {
    for (const k of ["authorization", "AUTHORIZATION", "access_token", "accessToken", "session_credential", "private_key", "Private-Key", "d", "D", "password", "secret", "token"]) {
      expect(isSecretKey(k), k).toBe(true);
    }
    for (const k of ["jti", "session_id", "token_id", "scopes", "agent_id", "dd", "description", "tokens_issued"]) {
      expect(isSecretKey(k), k).toBe(false);
    }
  });
});

describe("public key ids", () => {
  it("keeps thumbprint kids and 43-char ids under any key, but still drops a JWT or credential", () => {
    const kid = createHash("sha256").update("k").digest("base64url");
    const secret = randomBytes(32).toString("base64url");
    expect(redact({ kid, x: kid, user_id: kid })).toEqual({ kid, x: kid, user_id: kid });
    expect(redact({ kid: `ses_${"a".repeat(22)}.${secret}` }).kid).toBe("[REDACTED]");
    expect(redact({ user_id: makeJwt() }).user_id).toBe("[REDACTED]");
  });
});

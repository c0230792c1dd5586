import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import * as jose from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator, type Authenticator, type AuthenticatorOptions } from "../../src/auth/authenticator.js";
import { newSessionCredential, newSessionId, sha256Hex } from "../../src/auth/credentials.js";
import { ManualClock } from "../../src/clock.js";
import { reasonOf } from "../../src/errors.js";
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import type { SessionRecord, SessionStore } from "../../src/backends/types.js";
import { MemorySessionStore } from "../../src/backends/memory/memory-session-store.js";

const ORCH_TOKEN = "orchestrator-secret-token-0123456789";
const GATEWAY_TOKEN = "gateway-secret-token-0123456789abcd";
const HOUR = 3_600_000;
const OIDC_ISSUER = "https://idp.example.com";
const OIDC_AUDIENCE = "capvend";
type SigningKey = Awaited<ReturnType<typeof jose.generateKeyPair>>["privateKey"];

interface Env {
  clock: ManualClock;
  sessions: MemorySessionStore;
  revocations: MemoryRevocationList;
  auth: Authenticator;
}

const opened: Env[] = [];
async function setup(extra: Partial<AuthenticatorOptions> = {}): Promise<Env> {
  const clock = new ManualClock();
  const sessions = new MemorySessionStore(clock);
  const revocations = new MemoryRevocationList(clock);
  const auth = await createAuthenticator({
    clock,
    sessions,
    revocations,
    orchestratorHashes: new Map([["dev", sha256Hex(ORCH_TOKEN)]]),
    resourceServerHashes: new Map([["demo-gateway", sha256Hex(GATEWAY_TOKEN)]]),
    ...extra,
  });
  const env = { clock, sessions, revocations, auth };
  opened.push(env);
  return env;
}

afterEach(async () => {
  for (const e of opened.splice(0)) {
    await e.sessions.close();
    await e.revocations.close();
  }
});

async function addSession(env: Env, over: Partial<SessionRecord> = {}) {
  const id = newSessionId();
  const { credential, hash } = newSessionCredential(id);
  const record: SessionRecord = {
    id,
    agentId: "sales-bot",
    userId: "alice",
    grants: [{ resource: "calendar", scopes: ["read"] }],
    labels: {},
    credentialHash: hash,
    startedBy: "dev",
    createdAt: env.clock.now(),
    expiresAt: env.clock.now() + HOUR,
    ...over,
  };
  await env.sessions.create(record);
  return { id, credential, record };
}

/** The ConnectError an authenticate call rejects with; checks it never quotes `secret`. */
async function refusal(auth: Authenticator, header: string | null, secret?: string) {
  let err: unknown;
  try {
    await auth.authenticate(header);
  } catch (e) {
    err = e;
  }
  expect(err, "expected authenticate to reject").toBeInstanceOf(ConnectError);
  const e = err as ConnectError;
  for (const s of [secret, header].filter((x): x is string => !!x && x.length >= 8)) {
    expect(e.message).not.toContain(s);
    expect(e.rawMessage).not.toContain(s);
  }
  return { code: e.code, reason: reasonOf(e) ?? null, message: e.rawMessage, cause: e.cause };
}

describe("bearer parsing", () => {
  it.each<[string, string | null, string]>([
    ["no header", null, "MISSING_CREDENTIAL"],
    ["an empty header", "", "MISSING_CREDENTIAL"],
    ["a Basic header", `Basic ${Buffer.from("u:p").toString("base64")}`, "MISSING_CREDENTIAL"],
    ["Bearer without credential", "Bearer", "MISSING_CREDENTIAL"],
    ["Bearer with two words", `Bearer ${ORCH_TOKEN} extra`, "MISSING_CREDENTIAL"],
    ["the credential without a scheme", ORCH_TOKEN, "MISSING_CREDENTIAL"],
    ["an unknown token", "Bearer not-a-known-token-at-all", "UNKNOWN_CREDENTIAL"],
    ["a JWT-shaped token with OIDC off", "Bearer aaaa.bbbb.cccc", "UNKNOWN_CREDENTIAL"],
  ])("%s → UNAUTHENTICATED %s", async (_what, header, reason) => {
    const env = await setup();
    const r = await refusal(env.auth, header, ORCH_TOKEN);
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.reason).toBe(reason);
  });

  it("accepts the scheme in any case and extra spaces", async () => {
    const env = await setup();
    for (const h of [`bearer ${ORCH_TOKEN}`, `BEARER ${ORCH_TOKEN}`, `Bearer   ${ORCH_TOKEN}  `]) {
      expect(await env.auth.authenticate(h)).toEqual({ kind: "orchestrator", id: "dev", via: "token" });
    }
  });
});

describe("static credentials", () => {
  it("an orchestrator token maps to its orchestrator", async () => {
    const env = await setup();
    expect(await env.auth.authenticate(`Bearer ${ORCH_TOKEN}`)).toEqual({ kind: "orchestrator", id: "dev", via: "token" });
  });

  it("a resource-server token maps to its resource server", async () => {
    const env = await setup();
    expect(await env.auth.authenticate(`Bearer ${GATEWAY_TOKEN}`)).toEqual({ kind: "resource_server", id: "demo-gateway" });
  });

  it("a token that differs by one character is unknown", async () => {
    const env = await setup();
    const r = await refusal(env.auth, `Bearer ${ORCH_TOKEN.slice(0, -1)}X`);
    expect(r.reason).toBe("UNKNOWN_CREDENTIAL");
  });

  it("refuses a configuration where a resource server shares an orchestrator's token", async () => {
    await expect(
      createAuthenticator({
        clock: new ManualClock(),
        sessions: new MemorySessionStore(new ManualClock()),
        revocations: new MemoryRevocationList(new ManualClock()),
        orchestratorHashes: new Map([["dev", sha256Hex(ORCH_TOKEN)]]),
        resourceServerHashes: new Map([["gw", sha256Hex(ORCH_TOKEN)]]),
      }),
    ).rejects.toThrow(/shares its token hash/);
  });
});

describe("session credentials", () => {
  it("a live session's credential is the session principal", async () => {
    const env = await setup();
    const s = await addSession(env);
    const p = await env.auth.authenticate(`Bearer ${s.credential}`);
    expect(p.kind).toBe("session");
    expect(p.id).toBe(s.id);
    if (p.kind === "session") expect(p.session.agentId).toBe("sales-bot");
  });

  it("an unknown session → UNAUTHENTICATED unknown_credential", async () => {
    const env = await setup();
    const { credential } = newSessionCredential(newSessionId());
    const r = await refusal(env.auth, `Bearer ${credential}`, credential.split(".")[1]);
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.reason).toBe("UNKNOWN_CREDENTIAL");
  });

  it("the right session id with the wrong secret → unknown_credential, and the session is not named", async () => {
    const env = await setup();
    const s = await addSession(env);
    const forged = newSessionCredential(s.id).credential;
    const r = await refusal(env.auth, `Bearer ${forged}`, forged.split(".")[1]);
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.reason).toBe("UNKNOWN_CREDENTIAL");
    // No oracle: the same answer as for an unknown session.
    expect(r.message).not.toContain(s.id);
  });

  it("an ended session → UNAUTHENTICATED session_ended", async () => {
    const env = await setup();
    const s = await addSession(env);
    await env.sessions.end(s.id, "done", env.clock.now());
    const r = await refusal(env.auth, `Bearer ${s.credential}`, s.credential.split(".")[1]);
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.reason).toBe("SESSION_ENDED");
    expect(r.message).toContain("ended");
  });

  it("an ended session with the wrong secret is still just unknown_credential", async () => {
    const env = await setup();
    const s = await addSession(env);
    await env.sessions.end(s.id, "done", env.clock.now());
    const r = await refusal(env.auth, `Bearer ${newSessionCredential(s.id).credential}`);
    expect(r.reason).toBe("UNKNOWN_CREDENTIAL");
  });

  it("an expired session → session_ended; one ms before expiry it still works", async () => {
    const env = await setup();
    const s = await addSession(env, { expiresAt: env.clock.now() + 10_000 });
    env.clock.advance(9_999);
    expect((await env.auth.authenticate(`Bearer ${s.credential}`)).id).toBe(s.id);
    env.clock.advance(1);
    const r = await refusal(env.auth, `Bearer ${s.credential}`);
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.reason).toBe("SESSION_ENDED");
    expect(r.message).toContain("expired");
  });

  it.each<["agent_id" | "user_id" | "session_id", (s: SessionRecord) => string]>([
    ["agent_id", (s) => s.agentId],
    ["user_id", (s) => s.userId!],
    ["session_id", (s) => s.id],
  ])("a session revoked by %s → session_ended naming the revocation", async (kind, value) => {
    const env = await setup();
    const s = await addSession(env);
    env.clock.advance(5);
    const now = env.clock.now();
    await env.revocations.publish({ id: "rev_test", kind, value: value(s.record), reason: "r", revokedAt: now, expiresAt: now + HOUR, by: "orchestrator:dev" });
    const r = await refusal(env.auth, `Bearer ${s.credential}`);
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.reason).toBe("SESSION_ENDED");
    expect(r.message).toContain("rev_test");
  });

  it("an agent revocation does not touch a session started after it", async () => {
    const env = await setup();
    const now = env.clock.now();
    await env.revocations.publish({ id: "rev_a", kind: "agent_id", value: "sales-bot", reason: "r", revokedAt: now, expiresAt: now + HOUR, by: "orchestrator:dev" });
    env.clock.advance(1);
    const s = await addSession(env);
    expect((await env.auth.authenticate(`Bearer ${s.credential}`)).id).toBe(s.id);
  });

  it("a session store that fails → UNAVAILABLE session_store_unavailable", async () => {
    const clock = new ManualClock();
    const broken: SessionStore = {
      create: async () => {},
      addCredential: async () => undefined,
      get: async () => {
        throw new Error("store down");
      },
      end: async () => undefined,
      delete: async () => {},
      countStartedBy: async () => 0,
      close: async () => {},
    };
    const revocations = new MemoryRevocationList(clock);
    const auth = await createAuthenticator({ clock, sessions: broken, revocations, orchestratorHashes: new Map(), resourceServerHashes: new Map() });
    const { credential } = newSessionCredential(newSessionId());
    const r = await refusal(auth, `Bearer ${credential}`, credential.split(".")[1]);
    expect(r.code).toBe(Code.Unavailable);
    expect(r.reason).toBe("SESSION_STORE_UNAVAILABLE");
    await revocations.close();
  });
});

describe("OIDC bearer JWTs", () => {
  let dir: string;
  let jwksFile: string;
  let key: SigningKey;
  let otherKey: SigningKey;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "capvend-oidc-"));
    const pair = await jose.generateKeyPair("ES256");
    key = pair.privateKey;
    otherKey = (await jose.generateKeyPair("ES256")).privateKey;
    const jwk = { ...(await jose.exportJWK(pair.publicKey)), kid: "idp-1", alg: "ES256", use: "sig" };
    jwksFile = path.join(dir, "jwks.json");
    await writeFile(jwksFile, JSON.stringify({ keys: [jwk] }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const oidcSetup = () => setup({ oidc: { issuer: OIDC_ISSUER, audience: OIDC_AUDIENCE, jwksFile } });

  async function jwt(
    clock: ManualClock,
    over: { iss?: string; aud?: string; sub?: string | null; expInSec?: number | null; signWith?: SigningKey; kid?: string } = {},
  ): Promise<string> {
    const nowSec = Math.floor(clock.now() / 1000);
    const b = new jose.SignJWT({}).setProtectedHeader({ alg: "ES256", kid: over.kid ?? "idp-1" }).setIssuedAt(nowSec);
    b.setIssuer(over.iss ?? OIDC_ISSUER).setAudience(over.aud ?? OIDC_AUDIENCE);
    if (over.sub !== null) b.setSubject(over.sub ?? "ci-pipeline");
    if (over.expInSec !== null) b.setExpirationTime(nowSec + (over.expInSec ?? 300));
    return b.sign(over.signWith ?? key);
  }

  it("accepts a JWT from the configured issuer: orchestrator named by sub, via oidc", async () => {
    const env = await oidcSetup();
    const token = await jwt(env.clock);
    expect(await env.auth.authenticate(`Bearer ${token}`)).toEqual({ kind: "orchestrator", id: "ci-pipeline", via: "oidc" });
  });

  it("static tokens still work next to OIDC", async () => {
    const env = await oidcSetup();
    expect((await env.auth.authenticate(`Bearer ${ORCH_TOKEN}`)).kind).toBe("orchestrator");
  });

  it.each<[string, (clock: ManualClock) => Promise<string>]>([
    ["a wrong issuer", (c) => jwt(c, { iss: "https://evil.example.com" })],
    ["a wrong audience", (c) => jwt(c, { aud: "someone-else" })],
    ["an expired token", (c) => jwt(c, { expInSec: -10 })],
    [
      "a token that expires while held",
      async (c) => {
        const t = await jwt(c, { expInSec: 60 });
        c.advance(61_000);
        return t;
      },
    ],
    ["no exp", (c) => jwt(c, { expInSec: null })],
    ["no sub", (c) => jwt(c, { sub: null })],
    ["a signature by another key", (c) => jwt(c, { signWith: otherKey })],
    ["an unknown kid", (c) => jwt(c, { kid: "idp-2" })],
  ])("rejects %s with UNAUTHENTICATED, never quoting the JWT", async (_what, make) => {
    const env = await oidcSetup();
    const token = await make(env.clock);
    const r = await refusal(env.auth, `Bearer ${token}`, token);
    expect(r.code).toBe(Code.Unauthenticated);
    expect(r.reason).toBe("UNKNOWN_CREDENTIAL");
    expect(r.message).toMatch(/bearer JWT was not accepted/);
    // Not in the message, and not in the cause kept for the log either.
    for (const part of token.split(".")) expect(r.message).not.toContain(part);
    expect(String(r.cause)).not.toContain(token);
  });

  it("a JWT with a forged 'none' algorithm is refused", async () => {
    const env = await oidcSetup();
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const nowSec = Math.floor(env.clock.now() / 1000);
    const token = `${b64({ alg: "none", typ: "JWT" })}.${b64({ iss: OIDC_ISSUER, aud: OIDC_AUDIENCE, sub: "x", exp: nowSec + 60 })}.AAAA`;
    const r = await refusal(env.auth, `Bearer ${token}`, token);
    expect(r.reason).toBe("UNKNOWN_CREDENTIAL");
  });

  it("a JWKS file that is not JSON fails at start", async () => {
    const bad = path.join(dir, "bad.json");
    await writeFile(bad, "not json");
    await expect(
      setup({ oidc: { issuer: OIDC_ISSUER, audience: OIDC_AUDIENCE, jwksFile: bad } }),
    ).rejects.toThrow(/CAPVEND_OIDC_JWKS_FILE/);
  });
});

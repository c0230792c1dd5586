import { readFile } from "node:fs/promises";
import * as jose from "jose";
import type { Clock } from "../clock.js";
import { capvendError } from "../errors.js";
import type { RevocationList, SessionStore } from "../backends/types.js";
import { digestsEqual, parseSessionCredential, sha256Hex } from "./credentials.js";
import type { Principal } from "./principal.js";

export interface AuthenticatorOptions {
  clock: Clock;
  sessions: SessionStore;
  revocations: Pick<RevocationList, "sessionRevocation">;
  /** Orchestrator id → sha256 hex of its bearer token. */
  orchestratorHashes: ReadonlyMap<string, string>;
  /** Resource server id → sha256 hex of its bearer token. */
  resourceServerHashes: ReadonlyMap<string, string>;
  /** Trusted OIDC issuer whose JWTs authenticate orchestrators (sub = orchestrator id). */
  oidc?: { issuer: string; audience: string; jwksUrl?: string; jwksFile?: string };
}

/** Turns a bearer credential into a Principal, or throws UNAUTHENTICATED. */
export interface Authenticator {
  authenticate(authorization: string | null): Promise<Principal>;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export async function createAuthenticator(opts: AuthenticatorOptions): Promise<Authenticator> {
  // Static bearer tokens are looked up by hash: one map from digest to principal.
  const byHash = new Map<string, Principal>();
  for (const [id, hash] of opts.orchestratorHashes) byHash.set(hash, { kind: "orchestrator", id, via: "token" });
  for (const [id, hash] of opts.resourceServerHashes) {
    if (byHash.has(hash)) throw new Error(`resource server "${id}" shares its token hash with another caller`);
    byHash.set(hash, { kind: "resource_server", id });
  }

  let oidcKeys: jose.JWTVerifyGetKey | undefined;
  if (opts.oidc?.jwksUrl) oidcKeys = jose.createRemoteJWKSet(new URL(opts.oidc.jwksUrl));
  else if (opts.oidc?.jwksFile) {
    const text = await readFile(opts.oidc.jwksFile, "utf8");
    let jwks: jose.JSONWebKeySet;
    try {
      jwks = JSON.parse(text) as jose.JSONWebKeySet;
    } catch {
      throw new Error(`CAPVEND_OIDC_JWKS_FILE: ${opts.oidc.jwksFile} is not JSON`);
    }
    oidcKeys = jose.createLocalJWKSet(jwks);
  }

  async function authenticateSession(sessionId: string, secretHash: string): Promise<Principal> {
    let session;
    try {
      session = await opts.sessions.get(sessionId);
    } catch (err) {
      throw capvendError("SESSION_STORE_UNAVAILABLE", "the session store is unavailable; retry", {}, err);
    }
    if (!session || !(digestsEqual(session.credentialHash, secretHash) || session.retryCredentialHashes?.some((h) => digestsEqual(h, secretHash)))) {
      throw capvendError("UNKNOWN_CREDENTIAL", "unknown session credential");
    }
    const now = opts.clock.now();
    if (session.endedAt !== undefined) throw capvendError("SESSION_ENDED", `session ${session.id} has ended`, { sessionId: session.id });
    if (session.expiresAt <= now) throw capvendError("SESSION_ENDED", `session ${session.id} has expired`, { sessionId: session.id });
    const revoked = opts.revocations.sessionRevocation({
      sessionId: session.id,
      agentId: session.agentId,
      userId: session.userId,
      createdAt: session.createdAt,
    });
    if (revoked) throw capvendError("SESSION_ENDED", `session ${session.id} was revoked (${revoked.id})`, { sessionId: session.id });
    return { kind: "session", id: session.id, session };
  }

  async function authenticateOidc(bearer: string): Promise<Principal> {
    try {
      const { payload } = await jose.jwtVerify(bearer, oidcKeys!, {
        issuer: opts.oidc!.issuer,
        audience: opts.oidc!.audience,
        currentDate: new Date(opts.clock.now()),
        requiredClaims: ["sub", "exp"],
      });
      return { kind: "orchestrator", id: payload.sub!, via: "oidc" };
    } catch (err) {
      // jose's messages name claims, never the token; keep the detail for the log only.
      throw capvendError("UNKNOWN_CREDENTIAL", "the bearer JWT was not accepted (issuer, audience, expiry or signature)", {}, err);
    }
  }

  return {
    async authenticate(authorization) {
      if (!authorization) throw capvendError("MISSING_CREDENTIAL", 'missing "authorization: Bearer <credential>" header');
      const m = /^Bearer +(\S+) *$/i.exec(authorization);
      if (!m) throw capvendError("MISSING_CREDENTIAL", 'the authorization header must be "Bearer <credential>"');
      const bearer = m[1]!;
      const session = parseSessionCredential(bearer);
      if (session) return authenticateSession(session.sessionId, session.secretHash);
      const known = byHash.get(sha256Hex(bearer));
      if (known) return known;
      if (oidcKeys && JWT_SHAPE.test(bearer)) return authenticateOidc(bearer);
      throw capvendError("UNKNOWN_CREDENTIAL", "unknown credential");
    },
  };
}

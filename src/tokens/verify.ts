import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import type { JsonWebKey } from "node:crypto";
import type { Clock } from "../clock.js";
import { type CapvendError, fault, isFaultError, type Fault } from "../errors.js";
import type { KeyRing } from "../keys/key-ring.js";
import { SIGNING_ALGS } from "../keys/signing-key.js";
import {
  ACCESS_TOKEN_TYPE,
  AGENT_SUBJECT_PREFIX,
  JTI_PATTERN,
  REQUIRED_CLAIMS,
  USER_SUBJECT_PREFIX,
  type AccessTokenClaims,
} from "./claims.js";

/**
 * Why a token was refused: the `token_*` faults of `CapvendError` (src/errors.ts), a closed
 * union callers may switch on exhaustively.
 */
export type VerifyErrorCode = Extract<Fault, `token_${string}`>;

/** A refused token: a `CapvendError` whose message says why, never quoting the token or its claims. */
function refused(code: VerifyErrorCode, message: string, options: { cause?: unknown } = {}): CapvendError {
  return fault(code, message, options);
}

/** Verifies capvend access tokens. */
export interface Verifier {
  /** Resolves the token's claims, or rejects with a `CapvendError` carrying a `VerifyErrorCode` (and nothing else). */
  verify(jwt: string): Promise<AccessTokenClaims>;
}

/** Largest token accepted by default, in bytes; larger input is `malformed` before any parsing. */
export const DEFAULT_MAX_TOKEN_BYTES = 8 * 1024;

/** Options for `createVerifier`. */
export interface VerifierOptions {
  /** Source of public keys, asked on every call: the local key ring, or the union of replicas'. */
  keyRing: Pick<KeyRing, "jwks"> | { jwks(): { keys: JsonWebKey[] } };
  /** Expected `iss`. */
  issuer: string;
  /** Time for exp/nbf checks. No clock tolerance: tokens come from this service's own clocks. */
  clock: Clock;
  /** Default `DEFAULT_MAX_TOKEN_BYTES` (8 KiB). */
  maxTokenBytes?: number;
}

const B64URL = /^[A-Za-z0-9_-]+$/;
const ACCEPTED_ALGS: string[] = [...SIGNING_ALGS];

/**
 * Creates a verifier over jose's `jwtVerify`: signature against the key ring's current JWKS
 * (so keys retired by rotation, and other replicas' keys once they are in it, work), then
 * `typ: at+jwt`, issuer, time window and the shape of every capvend claim.
 */
export function createVerifier(opts: VerifierOptions): Verifier {
  const { keyRing, issuer, clock } = opts;
  if (typeof issuer !== "string" || issuer === "") throw new TypeError("issuer must be a non-empty string");
  const maxTokenBytes = opts.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES;
  if (!Number.isSafeInteger(maxTokenBytes) || maxTokenBytes <= 0) {
    throw new RangeError(`maxTokenBytes must be a positive integer, got ${maxTokenBytes}`);
  }

  // jose's key set imports each JWK once and caches it; rebuild it only when the JWKS changes.
  // Identity first (the key ring returns the same object until it changes), then content,
  // for sources that return a fresh object each call.
  let cache: { source: object; fingerprint: string; keySet: ReturnType<typeof createLocalJWKSet> } | undefined;
  const keySet = (): ReturnType<typeof createLocalJWKSet> => {
    const jwks = keyRing.jwks();
    if (cache?.source === jwks) return cache.keySet;
    const fingerprint = JSON.stringify(jwks.keys);
    if (cache?.fingerprint === fingerprint) {
      cache.source = jwks;
    } else {
      cache = { source: jwks, fingerprint, keySet: createLocalJWKSet(jwks as JSONWebKeySet) };
    }
    return cache.keySet;
  };

  // Errors while finding the key are the JWKS's story, not the token's: a kid that is not
  // published, or a published key that will not import (a corrupt entry from a replica).
  const resolveKey: JWTVerifyGetKey = async (header, token) => {
    try {
      return await keySet()(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
        throw refused("token_unknown_key", "token key is not in the JWKS");
      }
      throw refused("token_unknown_key", "token key is in the JWKS but unusable", { cause: err });
    }
  };

  return {
    async verify(jwt: string): Promise<AccessTokenClaims> {
      precheck(jwt, maxTokenBytes);
      let payload: unknown;
      try {
        ({ payload } = await jwtVerify(jwt, resolveKey, {
          algorithms: ACCEPTED_ALGS,
          typ: ACCESS_TOKEN_TYPE,
          issuer,
          requiredClaims: [...REQUIRED_CLAIMS],
          currentDate: new Date(clock.now()),
        }));
      } catch (err) {
        throw toVerifyError(err);
      }
      return checkClaims(payload as Record<string, unknown>);
    },
  };
}

/** Cheap structural checks before jose, so hostile input is refused without decoding much. */
function precheck(jwt: unknown, maxTokenBytes: number): void {
  if (typeof jwt !== "string") throw refused("token_malformed", "token is not a string");
  // Valid tokens are ASCII (checked below), so length in chars is length in bytes.
  if (jwt.length > maxTokenBytes) {
    throw refused("token_malformed", `token is longer than ${maxTokenBytes} bytes`);
  }
  const parts = jwt.split(".");
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) {
    throw refused("token_malformed", "token is not three base64url parts (a compact JWS)");
  }
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, "base64url").toString("utf8"));
  } catch {
    throw refused("token_malformed", "token header is not base64url JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw refused("token_malformed", "token header is not a JSON object");
  }
  const { kid } = header as { kid?: unknown };
  // Every capvend token names its key; without a kid the JWKS lookup would be a guess.
  if (typeof kid !== "string" || kid === "") {
    throw refused("token_malformed", 'token header has no "kid"');
  }
}

function toVerifyError(err: unknown): CapvendError {
  if (isFaultError(err) && err.errorCode.startsWith("token_")) return err;
  if (err instanceof errors.JWTExpired) return refused("token_expired", "token has expired");
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === "typ") return refused("token_wrong_type", `token type is not ${ACCESS_TOKEN_TYPE}`);
    if (err.reason === "check_failed" && err.claim === "iss") {
      return refused("token_wrong_issuer", "token was issued by another issuer");
    }
    if (err.reason === "check_failed" && err.claim === "nbf") {
      return refused("token_not_yet_valid", "token is not valid yet (nbf)");
    }
    return refused(
      "token_wrong_claims",
      err.reason === "missing" ? `token lacks the "${err.claim}" claim` : `token claim "${err.claim}" is invalid`,
    );
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return refused("token_bad_signature", "token signature does not verify");
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return refused("token_bad_signature", `token is not signed with ${SIGNING_ALGS.join(" or ")}`);
  }
  // With algorithms pinned above, what is left unsupported is a "crit" extension we don't know.
  if (err instanceof errors.JOSENotSupported) {
    return refused("token_malformed", "token uses an unsupported JWS extension");
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) {
    return refused("token_malformed", "token is not a well-formed JWT");
  }
  // Anything else is a surprise from the library; the input gets the blame, the cause is kept
  // for debugging (jose's messages do not quote tokens).
  return refused("token_malformed", "token could not be verified", { cause: err });
}

/** jose checked presence and times; this checks types and capvend's own invariants. */
function checkClaims(p: Record<string, unknown>): AccessTokenClaims {
  const bad = (claim: string) => refused("token_wrong_claims", `token claim "${claim}" is invalid`);
  for (const claim of ["sub", "client_id", "sid", "aud", "scope"] as const) {
    if (typeof p[claim] !== "string" || p[claim] === "") throw bad(claim);
  }
  if (typeof p.jti !== "string" || !JTI_PATTERN.test(p.jti)) throw bad("jti");
  const act = p.act as { sub?: unknown } | null;
  // The actor is always the agent named by client_id; sub is that agent or a user.
  if (typeof act !== "object" || act === null || act.sub !== `${AGENT_SUBJECT_PREFIX}${p.client_id}`) {
    throw bad("act");
  }
  const sub = p.sub as string;
  if (sub !== act.sub && !(sub.startsWith(USER_SUBJECT_PREFIX) && sub.length > USER_SUBJECT_PREFIX.length)) {
    throw bad("sub");
  }
  for (const claim of ["iat", "nbf", "exp"] as const) {
    if (!Number.isInteger(p[claim])) throw bad(claim);
  }
  return p as unknown as AccessTokenClaims;
}

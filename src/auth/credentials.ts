import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { sha256Hex } from "../security/sha256.js";

/** Session ids look like `ses_` + 22 base64url characters (128 random bits). */
export function newSessionId(): string {
  return "ses_" + randomBytes(16).toString("base64url");
}

/**
 * The session id for a StartSession request_id: the same for every attempt of one
 * orchestrator's request, so that the store's atomic create lets only one attempt open a
 * session, on any replica. 128 bits of sha256 over both, shaped like a random session id.
 */
export function sessionIdForRequest(orchestratorId: string, requestId: string): string {
  return "ses_" + createHash("sha256").update("capvend StartSession request_id\0").update(orchestratorId).update("\0").update(requestId.toLowerCase()).digest().subarray(0, 16).toString("base64url");
}

/** Revocation ids look like `rev_` + 22 base64url characters. */
export function newRevocationId(): string {
  return "rev_" + randomBytes(16).toString("base64url");
}

/** sha256 hex: how bearer secrets are stored and compared. */
export { sha256Hex };

const HEX = /^(?:[0-9a-fA-F]{2})+$/;

/**
 * Compares two hex digests in constant time. Anything that is not whole, non-empty hex is
 * unequal: Buffer.from(s, "hex") would otherwise stop silently at the first bad character
 * (or drop an odd last digit), making different strings compare equal on a shared prefix.
 */
export function digestsEqual(a: string, b: string): boolean {
  if (!HEX.test(a) || !HEX.test(b)) return false;
  const x = Buffer.from(a, "hex");
  const y = Buffer.from(b, "hex");
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/**
 * A session credential is `<session id>.<secret>`, the secret 256 random bits in
 * base64url. The id half lets any replica find the session; only the secret's hash is
 * stored.
 */
export function newSessionCredential(sessionId: string): { credential: string; hash: string } {
  const secret = randomBytes(32).toString("base64url");
  return { credential: `${sessionId}.${secret}`, hash: sha256Hex(secret) };
}

const SESSION_CREDENTIAL = /^(ses_[A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

/** Splits a bearer into session id and secret hash, or undefined when it is not a session credential. */
export function parseSessionCredential(bearer: string): { sessionId: string; secretHash: string } | undefined {
  const m = SESSION_CREDENTIAL.exec(bearer);
  return m ? { sessionId: m[1]!, secretHash: sha256Hex(m[2]!) } : undefined;
}

/** A new random orchestrator bearer token: `cvo_` + 256 random bits in base64url. */
export function newOrchestratorToken(): string {
  return "cvo_" + randomBytes(32).toString("base64url");
}

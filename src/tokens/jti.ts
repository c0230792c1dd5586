import { createHash, randomFillSync } from "node:crypto";

/** Random bytes per jti; with the 6-byte time stamp they make 16 bytes (22 base64url chars). */
const JTI_RANDOM_BYTES = 10;
const JTI_TIME_BYTES = 6;
/** Characters of the session tag inside a jti (96 bits of the session id's sha256). */
export const SESSION_TAG_CHARS = 16;
// One getrandom call per 256 ids: crypto.randomBytes(16) per token costs about 3 µs, 7% of
// an Ed25519 signature; slicing a refilled pool costs 0.15 µs (the same trick as randomUUID).
const POOL_BYTES = 16 * 256;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/**
 * The tag of a session inside its tokens' ids: 16 base64url characters of sha256(session
 * id). It lets any replica route a revocation by token id to that session's streams (and
 * replay it to a resuming runtime) without a token index; it reveals nothing but which
 * session a token belongs to, which `sid` says anyway.
 */
export function sessionTag(sessionId: string): string {
  return createHash("sha256").update(sessionId).digest("base64url").slice(0, SESSION_TAG_CHARS);
}

const body = Buffer.alloc(JTI_TIME_BYTES + JTI_RANDOM_BYTES);

/**
 * A new token id: `tok_` + the session tag (16 chars) + 22 base64url chars of 16 bytes:
 * the mint time in ms (6 bytes, big-endian, like a UUIDv7) and 80 random bits. The time
 * lets a revocation "everything issued up to T" be judged to the millisecond, where the
 * token's iat only has whole seconds.
 */
export function newJti(sessionId: string, nowMs: number): string {
  if (offset + JTI_RANDOM_BYTES > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  body.writeUIntBE(Math.max(0, Math.floor(nowMs)), 0, JTI_TIME_BYTES);
  pool.copy(body, JTI_TIME_BYTES, offset, offset + JTI_RANDOM_BYTES);
  offset += JTI_RANDOM_BYTES;
  return `tok_${sessionTag(sessionId)}${body.toString("base64url")}`;
}

/** The mint time (ms since epoch) a capvend jti carries, or undefined for anything else. */
export function issuedAtMsOfJti(jti: string): number | undefined {
  if (sessionTagOfJti(jti) === undefined) return undefined;
  return Buffer.from(jti.slice(4 + SESSION_TAG_CHARS), "base64url").readUIntBE(0, JTI_TIME_BYTES);
}

/** The session tag a jti carries, or undefined when the string is not a capvend jti. */
export function sessionTagOfJti(jti: string): string | undefined {
  return /^tok_[A-Za-z0-9_-]{38}$/.test(jti) ? jti.slice(4, 4 + SESSION_TAG_CHARS) : undefined;
}

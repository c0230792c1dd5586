import { createHash, randomFillSync } from "node:crypto";

/** Random bytes per jti; with the 6-byte time stamp they make 16 bytes (22 base64url chars). */
const JTI_RANDOM_BYTES = 10;
const JTI_TIME_BYTES = 6;
/** Characters of the session tag inside a jti (96 bits of the session id's sha256). */
export const SESSION_TAG_CHARS = 16;
/** Characters of the grant tag inside a jti (36 bits of the resource's sha256). */
export const GRANT_TAG_CHARS = 6;
/** Characters of the time-and-random body that ends every jti (16 bytes in base64url). */
const BODY_CHARS = 22;
/** A capvend jti: `tok_`, session tag, optional grant tag (absent in ids minted before it existed), body. */
const JTI_SHAPE = /^tok_[A-Za-z0-9_-]{38}(?:[A-Za-z0-9_-]{6})?$/;
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
  return cachedTag(sessionTags, SESSION_TAG_CACHE, sessionId, SESSION_TAG_CHARS);
}
// Every token names its session's tag, and a session mints again and again (each renewal of
// each of its streams): hashing its id once saves a sha256 per token. Sized for a replica's
// streams (the default CAPVEND_MAX_STREAMS); past that it starts over, which costs only hashes.
const SESSION_TAG_CACHE = 20_000;
const sessionTags = new Map<string, string>();

/**
 * The tag of a grant (a resource) inside its tokens' ids: 6 base64url characters of
 * sha256(resource). With the session tag it lets any replica tell, from a revoked token's
 * id alone, which grant of which session the revocation withdraws; the resource itself is
 * in the token's `aud` anyway. 36 bits keep the grants of one session (at most 64) apart.
 */
export function grantTag(resource: string): string {
  return cachedTag(grantTags, GRANT_TAG_CACHE, resource, GRANT_TAG_CHARS);
}
// Resources are few and named again and again: hashing each once keeps minting cheap.
const GRANT_TAG_CACHE = 1024;
const grantTags = new Map<string, string>();

/** The first `chars` base64url characters of sha256(`value`), remembered in `cache` (cleared once it holds `max`). */
function cachedTag(cache: Map<string, string>, max: number, value: string, chars: number): string {
  let tag = cache.get(value);
  if (tag === undefined) {
    tag = createHash("sha256").update(value).digest("base64url").slice(0, chars);
    if (cache.size >= max) cache.clear();
    cache.set(value, tag);
  }
  return tag;
}

const body = Buffer.alloc(JTI_TIME_BYTES + JTI_RANDOM_BYTES);

/**
 * A new token id: `tok_` + the session tag (16 chars) + the grant tag (6 chars) + 22
 * base64url chars of 16 bytes: the mint time in ms (6 bytes, big-endian, like a UUIDv7)
 * and 80 random bits. The time lets a revocation "everything issued up to T" be judged to
 * the millisecond, where the token's iat only has whole seconds.
 */
export function newJti(sessionId: string, resource: string, nowMs: number): string {
  if (offset + JTI_RANDOM_BYTES > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  body.writeUIntBE(Math.max(0, Math.floor(nowMs)), 0, JTI_TIME_BYTES);
  pool.copy(body, JTI_TIME_BYTES, offset, offset + JTI_RANDOM_BYTES);
  offset += JTI_RANDOM_BYTES;
  return `tok_${sessionTag(sessionId)}${grantTag(resource)}${body.toString("base64url")}`;
}

/** The mint time (ms since epoch) a capvend jti carries, or undefined for anything else. */
export function issuedAtMsOfJti(jti: string): number | undefined {
  if (sessionTagOfJti(jti) === undefined) return undefined;
  return Buffer.from(jti.slice(-BODY_CHARS), "base64url").readUIntBE(0, JTI_TIME_BYTES);
}

/** The session tag a jti carries, or undefined when the string is not a capvend jti. */
export function sessionTagOfJti(jti: string): string | undefined {
  return JTI_SHAPE.test(jti) ? jti.slice(4, 4 + SESSION_TAG_CHARS) : undefined;
}

/** The grant tag a jti carries, or undefined when it has none (not a capvend jti, or an older one). */
export function grantTagOfJti(jti: string): string | undefined {
  if (!JTI_SHAPE.test(jti) || jti.length !== 4 + SESSION_TAG_CHARS + GRANT_TAG_CHARS + BODY_CHARS) return undefined;
  return jti.slice(4 + SESSION_TAG_CHARS, 4 + SESSION_TAG_CHARS + GRANT_TAG_CHARS);
}

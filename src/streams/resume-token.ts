import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Resume tokens: where a WatchSession stream stands, handed to the runtime on every event
 * and back on reconnect, on any replica. Clients treat them as opaque strings.
 *
 * Inside (base64url, 42 characters): a version byte, the revocation-feed position the stream
 * had applied when it sent the event (the JetStream sequence with NATS, so a position means
 * the same on every replica), the time the event was sent (ms), and a MAC over those and
 * the session id, keyed with the session's credential hash. Any replica can check it from
 * the shared session record; a token of another session, or an altered one, fails the MAC.
 * The MAC makes tokens unforgeable by anyone but the session's own runtime, which gains
 * nothing by forging one (it can always resume from any position it saw). Not secret: it
 * carries no credential and names nothing but a feed position and a time.
 */

/** What a resume token says. */
export interface ResumePoint {
  /** Revocation-feed position already applied: resuming replays what comes after it. */
  feedPosition: number;
  /** When the event that carried the token was sent, ms since epoch. */
  issuedAtMs: number;
}

/** The session a token belongs to: its id and credential hash (the MAC key). */
export interface ResumeTokenOwner {
  id: string;
  credentialHash: string;
}

const VERSION = 1;
const BODY_BYTES = 1 + 8 + 6;
const MAC_BYTES = 16;
const TOKEN_BYTES = BODY_BYTES + MAC_BYTES;
/** Length of every resume token this version writes, in characters. */
export const RESUME_TOKEN_LENGTH = Math.ceil((TOKEN_BYTES * 4) / 3);
const BASE64URL = /^[A-Za-z0-9_-]+$/;

function mac(owner: ResumeTokenOwner, body: Buffer): Buffer {
  return createHmac("sha256", owner.credentialHash).update("capvend resume token\0").update(owner.id).update("\0").update(body).digest().subarray(0, MAC_BYTES);
}

/** The token for a stream position of `owner`'s session. */
export function encodeResumeToken(owner: ResumeTokenOwner, point: ResumePoint): string {
  const body = Buffer.alloc(BODY_BYTES);
  body.writeUInt8(VERSION, 0);
  body.writeBigUInt64BE(BigInt(point.feedPosition), 1);
  body.writeUIntBE(point.issuedAtMs, 9, 6);
  return Buffer.concat([body, mac(owner, body)]).toString("base64url");
}

/** Why a token was not accepted. */
export type ResumeTokenProblem = "malformed" | "not_this_session";

/**
 * Reads a token of `owner`'s session. "malformed": not a token of a version this server
 * writes (garbage, truncated); "not_this_session": well formed but issued for another
 * session, or altered.
 */
export function decodeResumeToken(owner: ResumeTokenOwner, token: string): { ok: true; point: ResumePoint } | { ok: false; problem: ResumeTokenProblem } {
  if (token.length !== RESUME_TOKEN_LENGTH || !BASE64URL.test(token)) return { ok: false, problem: "malformed" };
  const bytes = Buffer.from(token, "base64url");
  if (bytes.length !== TOKEN_BYTES || bytes.readUInt8(0) !== VERSION) return { ok: false, problem: "malformed" };
  const body = bytes.subarray(0, BODY_BYTES);
  if (!timingSafeEqual(mac(owner, body), bytes.subarray(BODY_BYTES))) return { ok: false, problem: "not_this_session" };
  const position = body.readBigUInt64BE(1);
  if (position > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, problem: "malformed" };
  return { ok: true, point: { feedPosition: Number(position), issuedAtMs: body.readUIntBE(9, 6) } };
}

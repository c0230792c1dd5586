/**
 * The access token's shape: RFC 9068 (JWT access tokens) with the RFC 8693 actor claim.
 * Times are NumericDate (whole seconds since the epoch).
 */
export interface AccessTokenClaims {
  /** Issuer URL, e.g. `https://capvend.local`. */
  iss: string;
  /** `user:<user_id>` when the agent acts for a user, else `agent:<agent_id>`. */
  sub: string;
  /** The actor: always the agent. */
  act: { sub: string };
  /** The agent id (RFC 9068 `client_id`). */
  client_id: string;
  /** The session the token belongs to. */
  sid: string;
  /** The one resource the token is for. */
  aud: string;
  /** Space-separated scopes. */
  scope: string;
  /** `tok_` and 44 base64url chars (38 in ids minted before grant tags); the only name a token goes by in logs and audit records. */
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
}

/** The JWS `typ` header of every capvend access token (RFC 9068 §2.1). */
export const ACCESS_TOKEN_TYPE = "at+jwt";

/** Claims every capvend access token carries; a token missing one is rejected. */
export const REQUIRED_CLAIMS = [
  "iss",
  "sub",
  "act",
  "client_id",
  "sid",
  "aud",
  "scope",
  "jti",
  "iat",
  "nbf",
  "exp",
] as const satisfies readonly (keyof AccessTokenClaims)[];

/** Prefix of a user subject. */
export const USER_SUBJECT_PREFIX = "user:";
/** Prefix of an agent subject (and of every actor). */
export const AGENT_SUBJECT_PREFIX = "agent:";

/**
 * Shape of a token id: `tok_` + session tag (16) + grant tag (6) + 16 bytes of time and
 * randomness (22), all base64url; ids from before grant tags lack the 6 and stay accepted.
 */
export const JTI_PATTERN = /^tok_[A-Za-z0-9_-]{38}(?:[A-Za-z0-9_-]{6})?$/;

/** `sub` for a token: the user when there is one, else the agent. */
export function subjectFor(agentId: string, userId?: string): string {
  return userId === undefined ? `${AGENT_SUBJECT_PREFIX}${agentId}` : `${USER_SUBJECT_PREFIX}${userId}`;
}

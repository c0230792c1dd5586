/**
 * Secret detection shared by the audit sink, the logger and the span processor: capvend must
 * never emit a token, a session credential or a key, so everything that leaves the process
 * as text goes through `looksSecret` / `redact` first.
 *
 * This runs on every log line and span: the key detectors sit behind cheap substring checks,
 * and the token-shaped ones share a single pass over the string.
 */

import { createHash } from "node:crypto";

/** Replacement for a value that looks like a secret. */
export const REDACTED = "[REDACTED]";

// The shortest thing we detect is an unsigned JWT whose header is `{"alg":""}` (14 chars of
// base64url plus two dots); anything shorter is never a secret.
const MIN_SECRET_LENGTH = 16;
// The secret half of a session credential and of an orchestrator token: 256 bits, unpadded base64url.
const SECRET_256_LENGTH = 43;
/** Prefix of capvend's generated orchestrator bearer tokens (`cvo_` + 43 base64url chars). */
export const ORCHESTRATOR_TOKEN_PREFIX = "cvo_";

const PEM_PRIVATE_RE = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----/;
// Tolerates one level of JSON-in-a-string escaping (`{\"d\":\"...\"}`).
const JWK_D_RE = /\\?"d\\?"\s*:\s*\\?"[A-Za-z0-9_-]{16,}/;
const JWK_K_RE = /\\?"k\\?"\s*:\s*\\?"[A-Za-z0-9_-]{16,}/;

/**
 * True when a string holds a secret capvend must never emit, alone or embedded in a longer
 * string. Detection is by structure, never by length or randomness, so identifiers of any
 * shape (an OIDC pairwise `sub`, a key id, an RFC 7638 thumbprint, a sha256 digest) pass:
 * - a compact JWS/JWT (or JWE): base64url parts joined by dots whose header decodes to a JSON
 *   object with `"alg"`;
 * - a session credential `ses_<id>.<43-char base64url secret>`;
 * - a generated orchestrator token `cvo_<43-char base64url secret>`;
 * - a configured bearer token (see `registerBearerTokenHashes`: matched by its sha256). Tokens
 *   of unknown length (configured only by hash) are looked for only when `thorough` is set,
 *   as the audit sink does: that hashes every run of 16 to 128 token characters, too dear for
 *   every log line and span attribute.
 * - a PEM private key block (`-----BEGIN … PRIVATE KEY-----`);
 * - a private JWK: JSON with a `"d"` member, or a symmetric (`"kty"` … `"k"`) one.
 */
export function looksSecret(value: string, thorough = false): boolean {
  if (value.length < MIN_SECRET_LENGTH) return false;
  if (value.includes("PRIVATE KEY") && PEM_PRIVATE_RE.test(value)) return true;
  if (value.includes('"') && hasPrivateJwk(value)) return true;
  if (value.includes(".")) {
    if (value.includes("ses_") && hasCredential(value)) return true;
    if (hasJws(value)) return true;
  }
  if (value.includes(ORCHESTRATOR_TOKEN_PREFIX) && hasOrchestratorToken(value)) return true;
  if (thorough && unknownLengthBearers) return hasKnownBearer(value, true);
  return bearerLengths.size > 0 && hasKnownBearer(value, false);
}

// sha256 hex digests of the configured bearer tokens, and the lengths those tokens have:
// only runs of one of those lengths are hashed, so the check costs nothing for most text.
const bearerHashes = new Set<string>();
const bearerLengths = new Set<number>();
let unknownLengthBearers = false;

/**
 * Makes `looksSecret` (and so the audit sink, the logger and the span processor) treat the
 * configured bearer tokens as secrets wherever they appear. Only their sha256 digests are
 * known (that is all the configuration holds), so a token is recognised by hashing runs of
 * bearer characters (RFC 6750 b64token) of the lengths given here. Process-wide and additive:
 * a replica registers its orchestrator and resource-server tokens once at start.
 */
export function registerBearerTokenHashes(tokens: Iterable<{ sha256Hex: string; length?: number }>): void {
  for (const t of tokens) {
    bearerHashes.add(t.sha256Hex.toLowerCase());
    if (t.length !== undefined) bearerLengths.add(t.length);
    else unknownLengthBearers = true;
  }
}

// Tokens configured only by hash have an unknown length: every run from 16 to this many
// characters is hashed. Longer configured tokens must be registered with their length.
const MAX_BEARER_LENGTH_UNKNOWN = 128;

function isBearerChar(c: number): boolean {
  // RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" then "="*.
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46 || c === 95 || c === 126 || c === 43 || c === 47;
}

function hasKnownBearer(value: string, anyLength: boolean): boolean {
  const n = value.length;
  let i = 0;
  while (i < n) {
    while (i < n && !isBearerChar(value.charCodeAt(i))) i++;
    const s = i;
    while (i < n && isBearerChar(value.charCodeAt(i))) i++;
    // Then the b64token's optional "=" padding: the run is tried without and with it.
    let e = i;
    while (e < n && value.charCodeAt(e) === 61) e++;
    for (const end of e > i ? [i, e] : [i]) {
      const len = end - s;
      const tryIt = anyLength ? len <= MAX_BEARER_LENGTH_UNKNOWN : bearerLengths.has(len);
      if (len >= MIN_SECRET_LENGTH && tryIt && bearerHashes.has(createHash("sha256").update(value.slice(s, end)).digest("hex"))) return true;
    }
    i = e;
  }
  return false;
}

function hasPrivateJwk(value: string): boolean {
  if (value.includes('d"') || value.includes('d\\"')) {
    if (JWK_D_RE.test(value)) return true;
  }
  if (value.includes("kty") && (value.includes('k"') || value.includes('k\\"'))) {
    if (JWK_K_RE.test(value)) return true;
  }
  return false;
}

const B64URL = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") B64URL[c.charCodeAt(0)] = 1;
const DOT = 0x2e;

function isB64(c: number): boolean {
  return c < 128 && B64URL[c] === 1;
}

/** End (exclusive) of the base64url run starting at `i`. */
function runEnd(value: string, i: number): number {
  while (i < value.length && isB64(value.charCodeAt(i))) i++;
  return i;
}

// Hand-written scans rather than regexes with look-arounds: those cost ~5 ns per character
// of every long log line; these jump between native indexOf hits.

/** `ses_<id>.<43 base64url chars>`, the secret not followed by more base64url. */
function hasCredential(value: string): boolean {
  for (let k = value.indexOf("ses_"); k !== -1; k = value.indexOf("ses_", k + 1)) {
    const idEnd = runEnd(value, k + 4);
    if (idEnd === k + 4 || value.charCodeAt(idEnd) !== DOT) continue;
    if (runEnd(value, idEnd + 1) - (idEnd + 1) === SECRET_256_LENGTH) return true;
  }
  return false;
}

/** `cvo_<43 base64url chars>`, the prefix starting a run. */
function hasOrchestratorToken(value: string): boolean {
  const p = ORCHESTRATOR_TOKEN_PREFIX;
  for (let k = value.indexOf(p); k !== -1; k = value.indexOf(p, k + 1)) {
    if (k > 0 && isB64(value.charCodeAt(k - 1))) continue;
    if (runEnd(value, k + p.length) - (k + p.length) === SECRET_256_LENGTH) return true;
  }
  return false;
}

/** A run starting "ey"/"ew" (what `{` encodes to), then `.payload.`, whose header has "alg". */
function hasJws(value: string): boolean {
  for (const prefix of ["ey", "ew"]) {
    for (let k = value.indexOf(prefix); k !== -1; k = value.indexOf(prefix, k + 1)) {
      if (k > 0 && isB64(value.charCodeAt(k - 1))) continue;
      const dot = runEnd(value, k + 2);
      if (dot - k >= 14 && value.charCodeAt(dot) === DOT && isCompactJws(value, k, dot)) return true;
      k = dot - 1;
    }
  }
  return false;
}

function isCompactJws(value: string, start: number, dot: number): boolean {
  if (value.charCodeAt(runEnd(value, dot + 1)) !== DOT) return false;
  const text = Buffer.from(value.slice(start, dot), "base64url").toString("utf8");
  if (!text.includes('"alg"')) return false;
  try {
    const header: unknown = JSON.parse(text);
    return typeof header === "object" && header !== null && !Array.isArray(header) && "alg" in header;
  } catch {
    return false;
  }
}

// Compared after lower-casing and removing "-" and "_", so `Authorization`, `access-token`,
// `privateKey` and `SESSION_CREDENTIAL` all match.
const SECRET_KEYS = new Set([
  "authorization",
  "proxyauthorization",
  "accesstoken",
  "refreshtoken",
  "idtoken",
  "sessioncredential",
  "token",
  "privatekey",
  "d",
  "password",
  "secret",
  "clientsecret",
  "apikey",
  "cookie",
  "setcookie",
]);
const keyVerdicts = new Map<string, boolean>();
const MAX_CACHED_KEYS = 4096;

/** True for an object key whose value is a secret by name, whatever it holds. */
export function isSecretKey(key: string): boolean {
  const cached = keyVerdicts.get(key);
  if (cached !== undefined) return cached;
  const verdict = SECRET_KEYS.has(key.toLowerCase().replace(/[-_]/g, ""));
  if (keyVerdicts.size < MAX_CACHED_KEYS) keyVerdicts.set(key, verdict);
  return verdict;
}

/**
 * Deep-copies a JSON-like value, replacing every string that `looksSecret` with `REDACTED`
 * and dropping keys named like secrets (authorization, access_token, refresh_token, id_token,
 * session_credential, token, private_key, d, password, secret, client_secret, api_key,
 * cookie; case, "-" and "_" ignored). Objects with `toJSON` (Date, Buffer) are copied as
 * their JSON form; an Error becomes `{ name, message, stack, …own fields }`, redacted;
 * cycles are kept as cycles. The input is never modified.
 */
export function redact<T>(value: T): T {
  return redactValue(value, new WeakMap()) as T;
}

function redactValue(value: unknown, seen: WeakMap<object, unknown>): unknown {
  if (typeof value === "string") return looksSecret(value) ? REDACTED : value;
  if (typeof value !== "object" || value === null) return value;
  const done = seen.get(value);
  if (done !== undefined) return done;

  if (Array.isArray(value)) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (const item of value) out.push(redactValue(item, seen));
    return out;
  }

  const out: Record<string, unknown> = {};
  seen.set(value, out);
  if (value instanceof Error) {
    out.name = value.name;
    out.message = redactValue(value.message, seen);
    if (value.stack !== undefined) out.stack = redactValue(value.stack, seen);
    if (value.cause !== undefined) out.cause = redactValue(value.cause, seen);
  } else {
    const proto: unknown = Object.getPrototypeOf(value);
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (proto !== Object.prototype && proto !== null && typeof toJSON === "function") {
      const json: unknown = toJSON.call(value);
      const copy = redactValue(json, seen);
      seen.set(value, copy);
      return copy;
    }
  }
  for (const key of Object.keys(value)) {
    if (isSecretKey(key)) continue;
    const v = (value as Record<string, unknown>)[key];
    out[key] = redactValue(v, seen);
  }
  return out;
}

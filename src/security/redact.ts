/**
 * Secret detection shared by the audit sink, the logger and the span processor: capvend must
 * never emit a token, a session credential or a key, so everything that leaves the process
 * as text goes through `looksSecret` / `redact` first.
 *
 * This runs on every log line and span: the key detectors sit behind cheap substring checks,
 * and the token-shaped ones share a single pass over the string.
 */

/** Replacement for a value that looks like a secret. */
export const REDACTED = "[REDACTED]";

// The shortest thing we detect is an unsigned JWT whose header is `{"alg":""}` (14 chars of
// base64url plus two dots); anything shorter is never a secret.
const MIN_SECRET_LENGTH = 16;
// A 256-bit secret in unpadded base64url.
const SECRET_256_LENGTH = 43;

const PEM_PRIVATE_RE = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----/;
// Tolerates one level of JSON-in-a-string escaping (`{\"d\":\"...\"}`).
const JWK_D_RE = /\\?"d\\?"\s*:\s*\\?"[A-Za-z0-9_-]{16,}/;
const JWK_K_RE = /\\?"k\\?"\s*:\s*\\?"[A-Za-z0-9_-]{16,}/;

/**
 * True when a string looks like a secret capvend must never emit, alone or embedded in a
 * longer string:
 * - a compact JWS/JWT (or JWE): base64url parts joined by dots whose header decodes to a JSON
 *   object with `"alg"`;
 * - a session credential `ses_<id>.<43-char base64url secret>`;
 * - a bare 43-char base64url run that looks random (mixed case, many character-class changes,
 *   a final character a 32-byte encoding can end with). Form alone cannot tell a 256-bit
 *   secret from a 32-byte public value (an Ed25519 `x`, a SHA-256 thumbprint), so those are
 *   flagged too; identifiers that must survive should carry a prefix (`kid_…`, `tok_…`);
 * - a PEM private key block (`-----BEGIN … PRIVATE KEY-----`);
 * - a private JWK: JSON with a `"d"` member, or a symmetric (`"kty"` … `"k"`) one.
 */
export function looksSecret(value: string): boolean {
  if (value.length < MIN_SECRET_LENGTH) return false;
  if (value.includes("PRIVATE KEY") && PEM_PRIVATE_RE.test(value)) return true;
  if (value.includes('"') && hasPrivateJwk(value)) return true;
  if (value.includes(".")) {
    if (value.includes("ses_") && hasCredential(value)) return true;
    if (hasJws(value)) return true;
  }
  return value.length >= SECRET_256_LENGTH && hasBareSecret(value);
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

/**
 * A run of exactly 43 base64url chars that looks random. Probes every 43rd character: any
 * such run contains exactly one probe, so text without long runs costs a few reads per probe.
 */
function hasBareSecret(value: string): boolean {
  const n = value.length;
  for (let i = SECRET_256_LENGTH - 1; i < n; ) {
    if (!isB64(value.charCodeAt(i))) {
      i += SECRET_256_LENGTH;
      continue;
    }
    let s = i;
    while (s > 0 && isB64(value.charCodeAt(s - 1))) s--;
    const e = runEnd(value, i + 1);
    if (e - s === SECRET_256_LENGTH && looksRandom256(value, s)) return true;
    // The next run starts after `e`; the first probe at or beyond `e` falls inside it if it is long enough.
    i += SECRET_256_LENGTH * Math.max(1, Math.ceil((e - i) / SECRET_256_LENGTH));
  }
  return false;
}

// Characters a canonical unpadded base64url encoding of 32 bytes can end with: the last
// character carries 4 data bits and two zero bits.
const LAST_CHAR_OF_32_BYTES = new Set("AEIMQUYcgkosw048".split("").map((c) => c.charCodeAt(0)));
// Of 10^6 random 32-byte secrets one had fewer than 12 class changes (upper, lower, digit,
// "-"/"_"); a 43-char camelCase identifier has about 10.
const MIN_CLASS_CHANGES = 12;

function looksRandom256(value: string, start: number): boolean {
  const end = start + SECRET_256_LENGTH;
  if (!LAST_CHAR_OF_32_BYTES.has(value.charCodeAt(end - 1))) return false;
  // Prefixed capvend identifiers are ids by construction, never secrets.
  if (value.startsWith("tok_", start) || value.startsWith("ses_", start)) return false;
  let upper = 0;
  let lower = 0;
  let changes = 0;
  let prevClass = -1;
  for (let i = start; i < end; i++) {
    const c = value.charCodeAt(i);
    const cls = c >= 65 && c <= 90 ? 0 : c >= 97 && c <= 122 ? 1 : c >= 48 && c <= 57 ? 2 : 3;
    if (cls === 0) upper++;
    else if (cls === 1) lower++;
    if (prevClass !== -1 && cls !== prevClass) changes++;
    prevClass = cls;
  }
  return upper > 0 && lower > 0 && changes >= MIN_CLASS_CHANGES;
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
    // Key ids and public JWK coordinates are random-looking base64url by design (RFC 7638
    // thumbprints): without this they would be redacted from every key-rotation log line.
    // Only a plain base64url value passes: a JWT or a session credential (both dotted) never does.
    out[key] = PUBLIC_ID_KEYS.has(key) && typeof v === "string" && PUBLIC_ID.test(v) ? v : redactValue(v, seen);
  }
  return out;
}

const PUBLIC_ID_KEYS = new Set(["kid", "x", "y"]);
const PUBLIC_ID = /^[A-Za-z0-9_-]{1,88}$/;

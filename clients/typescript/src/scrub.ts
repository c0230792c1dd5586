/** What a scrubbed secret is replaced with. */
export const REDACTED = "[redacted]";

/**
 * Compact JWS/JWT: a base64url JSON header (always starts `eyJ`, i.e. `{"`), payload and
 * signature. Session credentials: `ses_` id, a dot, a base64url secret.
 */
const TOKEN_SHAPES = [/eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}/g, /\bses_[A-Za-z0-9]{8,}\.[A-Za-z0-9_-]{16,}/g];
/** An Authorization value, whatever its shape. */
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;

/**
 * Replaces token-shaped substrings of `text` (JWTs, session credentials, Authorization
 * values, and any of `known` secrets verbatim) with REDACTED.
 */
export function scrubText(text: string, known: Iterable<string> = []): string {
  let out = text;
  for (const secret of known) if (secret.length >= 8 && out.includes(secret)) out = out.split(secret).join(REDACTED);
  for (const re of TOKEN_SHAPES) out = out.replace(re, REDACTED);
  return out.replace(BEARER, (_m, scheme: string) => `${scheme} ${REDACTED}`);
}

/**
 * A copy of `value` with every string scrubbed (see scrubText), through arrays, plain
 * objects, Maps and Sets, cycles kept. Other objects (class instances, Responses) are
 * returned as they are: their fields are not data the tool produced.
 */
export function scrubValue<T>(value: T, known: Iterable<string> = [], seen = new Map<object, unknown>()): T {
  const secrets = [...known];
  const walk = (v: unknown): unknown => {
    if (typeof v === "string") return scrubText(v, secrets);
    if (typeof v !== "object" || v === null) return v;
    if (seen.has(v)) return seen.get(v);
    if (Array.isArray(v)) {
      const out: unknown[] = [];
      seen.set(v, out);
      for (const item of v) out.push(walk(item));
      return out;
    }
    if (v instanceof Map) {
      const out = new Map();
      seen.set(v, out);
      for (const [k, item] of v) out.set(walk(k), walk(item));
      return out;
    }
    if (v instanceof Set) {
      const out = new Set();
      seen.set(v, out);
      for (const item of v) out.add(walk(item));
      return out;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    const out: Record<string, unknown> = {};
    seen.set(v, out);
    for (const [k, item] of Object.entries(v)) out[k] = walk(item);
    return out;
  };
  return walk(value) as T;
}

/**
 * An error safe to let out of a tool: the same error with message, stack and (nested)
 * cause scrubbed when it is an Error that can be changed, else a new Error carrying the
 * scrubbed text. Non-Error throwables are scrubbed as values.
 */
export function scrubError(err: unknown, known: Iterable<string> = [], depth = 0): unknown {
  const secrets = [...known];
  if (!(err instanceof Error)) return scrubValue(err, secrets);
  try {
    err.message = scrubText(err.message, secrets);
    if (err.stack !== undefined) err.stack = scrubText(err.stack, secrets);
    if (err.cause !== undefined && depth < 8) err.cause = scrubError(err.cause, secrets, depth + 1);
    for (const key of Object.keys(err)) {
      if (key === "cause") continue;
      const v = (err as unknown as Record<string, unknown>)[key];
      (err as unknown as Record<string, unknown>)[key] = scrubValue(v, secrets);
    }
    return err;
  } catch {
    const copy = new Error(scrubText(err.message, secrets));
    copy.name = err.name;
    return copy;
  }
}

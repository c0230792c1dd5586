/**
 * Cedar decisions remembered per policy version. A Cedar decision is a pure function of the
 * policies and entities in force and of the request (principal, action, resource, context),
 * and a session asks the same questions again and again: the same agent, resource, scope and
 * session id, with the same labels and TTL. Evaluating one costs about 70 µs; looking one up,
 * about 1 µs.
 */
import { EntityValue, type AuthorizationRequest, type ContextValue, type Decision } from "./engine.js";

/** Entries kept before the oldest are dropped. */
export const DEFAULT_DECISION_CACHE_ENTRIES = 50_000;

/** What the cache wraps: a decider that says which version of the policies it runs. */
export interface VersionedDecider {
  authorize(req: AuthorizationRequest): Decision;
  /** Changes whenever the policies or entities in force change (a reload). */
  readonly state: { readonly version: number };
}

/** A decider that remembers its answers; `stats` for benchmarks and tests. */
export interface CachingDecider {
  authorize(req: AuthorizationRequest): Decision;
  readonly stats: { hits: number; misses: number; size: number; version: number };
}

/**
 * Wraps `decider` so a request asked before under the same policy version gets the same
 * decision without evaluating it again. The whole cache is dropped the moment the version
 * changes (a policy or entity reload), before the next decision, so a swap takes effect at
 * once. Decisions are returned as stored: callers must not modify them.
 */
export function cacheDecisions(decider: VersionedDecider, maxEntries = DEFAULT_DECISION_CACHE_ENTRIES): CachingDecider {
  let version = decider.state.version;
  let entries = new Map<string, Decision>();
  const stats = { hits: 0, misses: 0, size: 0, version };
  return {
    authorize(req) {
      const current = decider.state.version;
      if (current !== version) {
        version = current;
        entries = new Map();
        stats.version = current;
      }
      const key = requestKey(req);
      const known = entries.get(key);
      if (known) {
        stats.hits++;
        return known;
      }
      stats.misses++;
      const decision = decider.authorize(req);
      // A reload may have landed while deciding: keep only what the current version decided.
      if (decider.state.version === version) {
        if (entries.size >= maxEntries) entries.delete(entries.keys().next().value!);
        entries.set(key, decision);
      }
      stats.size = entries.size;
      return decision;
    },
    get stats() {
      return { ...stats, size: entries.size };
    },
  };
}

/** An unambiguous key: every string is length-prefixed, record keys are sorted. */
export function requestKey(req: AuthorizationRequest): string {
  let k = `${part(req.principal.type)}${part(req.principal.id)}${part(req.action)}${part(req.resource.type)}${part(req.resource.id)}`;
  if (req.context) k += valueKey(req.context);
  return k;
}

const part = (s: string) => `${s.length}:${s}`;

function valueKey(v: ContextValue | undefined): string {
  switch (typeof v) {
    case "string":
      return `s${part(v)}`;
    case "number":
      return `n${v};`;
    case "boolean":
      return v ? "T" : "F";
    case "undefined":
      return "u";
  }
  if (v instanceof EntityValue) return `e${part(v.type)}${part(v.id)}`;
  if (Array.isArray(v)) {
    let out = `[${v.length};`;
    for (const x of v) out += valueKey(x);
    return out;
  }
  const rec = v as Readonly<Record<string, ContextValue>>;
  const keys = Object.keys(rec).sort();
  let out = `{${keys.length};`;
  for (const key of keys) out += part(key) + valueKey(rec[key]);
  return out;
}

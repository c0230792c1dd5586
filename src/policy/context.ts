import type { CedarValueJson, Context } from "@cedar-policy/cedar-wasm/nodejs";

/** A Cedar entity uid: `Agent::"sales-bot"` is `{ type: "Agent", id: "sales-bot" }`. */
export interface EntityRef {
  type: string;
  id: string;
}

/**
 * An entity reference used as a context value (`context.user`).
 *
 * It is a class, not a plain `{ type, id }` record, so that untrusted JSON (labels sent by a
 * caller) can never be mistaken for an entity reference: only code that calls
 * `entityValue()` makes one.
 */
export class EntityValue implements EntityRef {
  readonly type: string;
  readonly id: string;

  constructor(type: string, id: string) {
    this.type = type;
    this.id = id;
    Object.freeze(this);
  }
}

/** Tags an entity uid for use inside a request context: `{ user: entityValue("User", "alice") }`. */
export function entityValue(type: string, id: string): EntityValue {
  return new EntityValue(type, id);
}

/**
 * A value in a request context. Numbers are Cedar `Long`s, so they must be safe integers;
 * records and lists nest.
 */
export type ContextValue = string | number | boolean | EntityValue | readonly ContextValue[] | ContextRecord;

export interface ContextRecord {
  readonly [key: string]: ContextValue;
}

/** A context value Cedar cannot take; the request is denied with this message. */
export class ContextError extends Error {
  override readonly name = "ContextError";
}

// Cedar's JSON reads a record with either key as an escape, never as data, so a caller-chosen
// label named like this would be misread.
const RESERVED_KEYS = new Set(["__entity", "__extn"]);

/**
 * Converts a context to Cedar's JSON form and appends every entity reference in it to
 * `refs`, so the caller can pass those entities (and their ancestors) along.
 *
 * @throws ContextError when a value cannot be represented in Cedar.
 */
export function toCedarContext(context: Readonly<Record<string, ContextValue>>, refs: EntityRef[]): Context {
  const out: Context = {};
  for (const key of Object.keys(context)) {
    out[key] = toCedarValue(context[key], refs, key, 0);
  }
  return out;
}

const MAX_DEPTH = 32;

function toCedarValue(v: unknown, refs: EntityRef[], path: string, depth: number): CedarValueJson {
  if (depth > MAX_DEPTH) throw new ContextError(`context.${path}: nested too deeply`);
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      if (!Number.isSafeInteger(v)) throw new ContextError(`context.${path}: ${v} is not an integer Cedar can hold`);
      return v;
    case "object": {
      if (v === null) break;
      if (v instanceof EntityValue) {
        refs.push(v);
        return { __entity: { type: v.type, id: v.id } };
      }
      if (Array.isArray(v)) return v.map((x, i) => toCedarValue(x, refs, `${path}[${i}]`, depth + 1));
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) break;
      const rec: { [k: string]: CedarValueJson } = {};
      for (const k of Object.keys(v)) {
        if (RESERVED_KEYS.has(k)) throw new ContextError(`context.${path}: the key ${JSON.stringify(k)} is reserved by Cedar`);
        rec[k] = toCedarValue((v as Record<string, unknown>)[k], refs, `${path}.${k}`, depth + 1);
      }
      return rec;
    }
    default:
      break;
  }
  throw new ContextError(`context.${path}: ${v === null ? "null" : typeof v} is not a Cedar value`);
}

import { create, type DescField, type DescMessage, type Message, type MessageShape } from "@bufbuild/protobuf";
import { isReflectList, isReflectMessage, pathToString, reflect, type Path, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { createValidator, type Violation } from "@bufbuild/protovalidate";
import { invalidArgument, type CapvendError } from "../errors.js";

/**
 * Enforces the buf.validate (protovalidate) rules declared in proto/capvend/v1: required
 * fields, lengths, counts, formats, the identifier profile and RFC 6749 scope-tokens. The
 * contract is the one source of truth for them; limits that depend on the server's
 * configuration (the maximum TTL and session duration) stay in validate.ts.
 *
 * Built once per server: the validator compiles each message's rules on first use and
 * caches them. Stops at the first violation (`failFast`), which is all a refusal reports and
 * saves checking the rest. Durations are checked apart and their verdicts remembered (see
 * `check`). Patterns run on the platform's RegExp (`u` flag) instead of the
 * RE2 port protovalidate-es uses by default: the contract's patterns are RE2 syntax that
 * means the same in JavaScript, none backtracks badly, and every input is bounded by the
 * message size limit; it makes an IssueToken check several times cheaper.
 */
export interface ContractValidator {
  /** Throws INVALID_ARGUMENT naming the first field that breaks a rule of the contract. */
  check<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): void;
}

export function createContractValidator(): ContractValidator {
  const compiled = new Map<string, RegExp>();
  const options = {
    regexMatch(pattern: string, against: string) {
      let re = compiled.get(pattern);
      if (!re) compiled.set(pattern, (re = new RegExp(pattern, "u")));
      return re.test(against);
    },
  };
  const validator = createValidator({ ...options, failFast: true });
  // Probes see every violation: their other (empty) fields break rules that do not count.
  const prober = createValidator(options);
  const durationVerdicts = new Map<string, Violation | null>();

  const fail = (schema: DescMessage, message: unknown, result: ReturnType<typeof validator.validate>) => {
    if (result.kind === "error") throw result.error; // a rule that cannot be evaluated is a fault in the contract, not bad input
    if (result.kind === "invalid") throw refusal(schema, message, result.violations[0]!);
  };

  return {
    check(schema, message) {
      // protovalidate evaluates Duration rules in CEL, several times dearer than everything
      // else a request holds together, and requests carry few distinct durations. So the
      // message is checked without its durations, and the durations on their own in a probe
      // of the same shape, whose verdict is remembered per distinct set of durations. Same
      // validator, same rules: only the work is split.
      const durations: string[] = [];
      const stripped = withoutDurations(schema, message as Message, durations);
      fail(schema, message, validator.validate(schema, stripped as never));
      if (durations.length === 0) return;
      const key = `${schema.typeName} ${durations.join(" ")}`;
      let verdict = durationVerdicts.get(key);
      if (verdict === undefined) {
        const probe = onlyDurations(schema, message as Message);
        const result = prober.validate(schema, probe as never);
        if (result.kind === "error") throw result.error;
        verdict = result.violations?.find((v) => v.ruleId.startsWith("duration.")) ?? null;
        if (durationVerdicts.size >= DURATION_VERDICTS) durationVerdicts.clear();
        durationVerdicts.set(key, verdict);
      }
      if (verdict) throw refusal(schema, message, verdict);
    },
  };
}

/** Distinct duration sets remembered; the map starts afresh when full. */
const DURATION_VERDICTS = 1024;

const isDuration = (f: DescField) => f.fieldKind === "message" && f.message.typeName === "google.protobuf.Duration";

/**
 * A shallow copy of `msg` with every Duration field (also inside repeated messages) unset,
 * appending each one removed to `out` as "path=seconds:nanos".
 */
function withoutDurations(schema: DescMessage, msg: Message, out: string[], prefix = ""): Message {
  let copy: Record<string, unknown> | undefined;
  for (const f of schema.fields) {
    const value = (msg as unknown as Record<string, unknown>)[f.localName];
    if (isDuration(f)) {
      if (value === undefined) continue;
      const d = value as { seconds: bigint; nanos: number };
      out.push(`${prefix}${f.number}=${d.seconds}:${d.nanos}`);
      (copy ??= { ...msg })[f.localName] = undefined;
    } else if (f.fieldKind === "list" && f.listKind === "message" && Array.isArray(value)) {
      const before = out.length;
      const items = value.map((item: Message, i: number) => withoutDurations(f.message, item, out, `${prefix}${f.number}[${i}].`));
      if (out.length > before) (copy ??= { ...msg })[f.localName] = items;
    }
  }
  return (copy ?? msg) as Message;
}

/** A message of the same shape holding only `msg`'s Duration fields (also inside repeated messages). */
function onlyDurations(schema: DescMessage, msg: Message): Message {
  const init: Record<string, unknown> = {};
  for (const f of schema.fields) {
    const value = (msg as unknown as Record<string, unknown>)[f.localName];
    if (isDuration(f) && value !== undefined) init[f.localName] = value;
    else if (f.fieldKind === "list" && f.listKind === "message" && Array.isArray(value)) {
      init[f.localName] = value.map((item: Message) => onlyDurations(f.message, item));
    }
  }
  return create(schema, init as never) as Message;
}

/** Field names whose string values follow the identifier profile. */
const IDENTIFIER_FIELDS = new Set(["agent_id", "user_id", "resource", "session_id", "token_id"]);

/** A violation as capvend's INVALID_ARGUMENT: the field path first, then the rule in plain words. */
function refusal(schema: DescMessage, message: unknown, v: Violation): CapvendError {
  // Map keys in the path are caller input: escape anything that could forge a log line.
  const field = escapeUnprintable(pathToString(v.field));
  const last = lastFieldName(v.field);
  const value = valueAt(reflect(schema, message as never), v.field);
  const n = firstNumber(v.message);
  switch (v.ruleId) {
    case "required":
      return field === "target"
        ? invalidArgument(field, "set one of token_id, session_id, agent_id, user_id, resource")
        : invalidArgument(field, "must not be empty");
    case "string.max_bytes":
      return invalidArgument(field, `must be at most ${n} bytes`);
    case "string.max_len":
      return invalidArgument(field, `must be at most ${n} characters`);
    case "string.not_in":
      return invalidArgument(field, `${v.forKey ? "key " : ""}must not be "." or ".."`);
    case "string.uuid":
      return invalidArgument(field, "must be a UUID, e.g. 0b7f4a2e-6c1d-4f3a-9e8b-2d5c7a1f0e94");
    case "string.pattern":
      if (v.forKey) return invalidArgument(field, 'key must be 1 to 64 characters of A-Z a-z 0-9 _ . - (not "." or "..")');
      if (value === "") return invalidArgument(field, "must not be empty");
      if (last === "scopes") {
        return invalidArgument(field, 'must be an RFC 6749 scope-token: printable ASCII without whitespace, " or \\');
      }
      if (last !== undefined && IDENTIFIER_FIELDS.has(last)) {
        return invalidArgument(
          field,
          "must not contain control characters, zero-width or bidirectional format characters, or line separators, nor start or end with white space",
        );
      }
      return invalidArgument(field, "must not contain control characters, zero-width or bidirectional format characters, or line separators");
    case "string.in":
      return invalidArgument(field, v.message);
    case "repeated.min_items":
      return invalidArgument(field, last === "grants" ? "must contain at least one grant" : n === 1 ? "must name at least one scope" : `must name at least ${n} scopes`);
    case "repeated.max_items":
      return invalidArgument(field, last === "grants" ? `must contain at most ${n} grants` : `must name at most ${n} scopes`);
    case "repeated.unique": {
      const dup = firstDuplicate(value);
      return dup ? invalidArgument(`${field}[${dup.index}]`, `duplicate scope "${dup.value}"`) : invalidArgument(field, "must not repeat an item");
    }
    case "map.max_pairs":
      return invalidArgument(field, `must have at most ${n} entries`);
    case "duration.gte":
      return invalidArgument(field, "must be at least 1s");
    case "capvend.grants.unique_resources": {
      const resources = isReflectList(value) ? [...value].map((g) => (isReflectMessage(g) ? String(g.get(g.desc.field.resource!)) : "")) : [];
      const dup = firstDuplicate(resources);
      return dup
        ? invalidArgument(`${field}[${dup.index}].resource`, `duplicate grant for resource "${dup.value}"`)
        : invalidArgument(field, "must hold one grant per resource");
    }
    default:
      return invalidArgument(field, v.message);
  }
}

/** Control, format and separator characters as \uXXXX escapes (lone surrogates too). */
function escapeUnprintable(text: string): string {
  return text.replace(/[\p{Cc}\p{Cf}\p{Co}\p{Zl}\p{Zp}]|[\uD800-\uDFFF]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function lastFieldName(path: Path): string | undefined {
  for (let i = path.length - 1; i >= 0; i--) {
    const p = path[i]!;
    if (p.kind === "field") return p.name;
  }
  return undefined;
}

/** The value a violation's path points at (a scalar, a ReflectList or a ReflectMessage). */
function valueAt(root: ReflectMessage, path: Path): unknown {
  let cur: unknown = root;
  for (const p of path) {
    if (p.kind === "field" && isReflectMessage(cur)) cur = cur.get(p);
    else if (p.kind === "list_sub" && isReflectList(cur)) cur = cur.get(p.index);
    else if (p.kind === "map_sub" && cur && typeof (cur as { get?: unknown }).get === "function") cur = (cur as { get(k: unknown): unknown }).get(p.key);
    else if (p.kind === "oneof" && isReflectMessage(cur)) return undefined;
    else return undefined;
  }
  return cur;
}

function firstDuplicate(list: unknown): { index: number; value: string } | undefined {
  const items = isReflectList(list) ? [...list] : Array.isArray(list) ? list : [];
  const seen = new Set<unknown>();
  for (let i = 0; i < items.length; i++) {
    if (seen.has(items[i])) return { index: i, value: String(items[i]) };
    seen.add(items[i]);
  }
  return undefined;
}

function firstNumber(text: string): number | undefined {
  const m = /\d+/.exec(text);
  return m ? Number(m[0]) : undefined;
}

import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
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
 * saves checking the rest. Patterns run on the platform's RegExp (`u` flag) instead of the
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
  const validator = createValidator({
    failFast: true,
    regexMatch(pattern, against) {
      let re = compiled.get(pattern);
      if (!re) compiled.set(pattern, (re = new RegExp(pattern, "u")));
      return re.test(against);
    },
  });
  return {
    check(schema, message) {
      const result = validator.validate(schema, message);
      if (result.kind === "valid") return;
      if (result.kind === "error") {
        // A rule the validator cannot evaluate is a fault in the contract, not bad input.
        throw result.error;
      }
      throw refusal(schema, message, result.violations[0]!);
    },
  };
}

/** Field names whose string values follow the identifier profile. */
const IDENTIFIER_FIELDS = new Set(["agent_id", "user_id", "resource", "session_id", "token_id"]);

/** A violation as capvend's INVALID_ARGUMENT: the field path first, then the rule in plain words. */
function refusal(schema: DescMessage, message: unknown, v: Violation): CapvendError {
  const field = pathToString(v.field);
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
      return invalidArgument(field, 'must not be "." or ".."');
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
      return invalidArgument(field, last === "grants" ? "must contain at least one grant" : `must name at least ${n} scope${n === 1 ? "" : "s"}`);
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

import { join } from "node:path";

import { policySetTextToParts, policyToJson, type DetailedError } from "@cedar-policy/cedar-wasm/nodejs";

import { EntityStore } from "./entity-store.js";
import { formatLocation, oneLine, PolicyLoadError, type SourceLocation } from "./errors.js";
import { readPolicyHead } from "./policy-head.js";
import { ENTITIES_FILE, POLICY_FILE_SUFFIX, policyVersionOf, readPolicyFiles, type PolicyFiles } from "./policy-set.js";
import { SourceText } from "./source-position.js";
import { splitPolicies } from "./split-policies.js";

export { ENTITIES_FILE, POLICY_FILE_SUFFIX } from "./policy-set.js";

/** One static policy, with the id decisions will name it by. */
export interface LoadedPolicy {
  /** `@id("…")` when the policy has one, else `<file name>:<line>` of its start. */
  id: string;
  effect: "permit" | "forbid";
  /** The policy's Cedar text, as written. */
  text: string;
  /** Where it starts: its first annotation, or its effect keyword. */
  where: Required<SourceLocation>;
}

/** Everything a policy set holds, parsed and checked, not yet handed to Cedar. */
export interface PolicyDirectory {
  policies: LoadedPolicy[];
  entities: EntityStore;
  /** The set's content hash (see `policyVersionOf`). */
  version: string;
}

/**
 * Reads and checks a policy directory: every `*.cedar` file directly inside it (in name
 * order; dot files are editor debris and skipped) and `entities.json` if present.
 *
 * @throws PolicyLoadError naming the file, line and column of the first problem
 */
export async function readPolicyDirectory(dir: string): Promise<PolicyDirectory> {
  return parsePolicySet(await readPolicyFiles(dir), dir);
}

/**
 * Parses and checks a policy set given as files. `origin` is where the files came from (a
 * directory, or a label like `nats:capvend_policy`); errors name `<origin>/<file>`.
 *
 * @throws PolicyLoadError naming the file, line and column of the first problem
 */
export function parsePolicySet(set: PolicyFiles, origin: string): PolicyDirectory {
  const names = Object.keys(set.files).sort();
  const policyNames = names.filter((n) => n.endsWith(POLICY_FILE_SUFFIX));
  if (policyNames.length === 0) {
    throw new PolicyLoadError("no_policies", { file: origin }, `no ${POLICY_FILE_SUFFIX} policy files in the policy directory`);
  }
  const policies: LoadedPolicy[] = [];
  const seen = new Map<string, Required<SourceLocation>>();
  for (const name of policyNames) {
    for (const policy of parsePolicyFile(join(origin, name), name, set.files[name]!)) {
      const first = seen.get(policy.id);
      if (first) {
        throw new PolicyLoadError(
          "duplicate_policy_id",
          policy.where,
          `duplicate policy id ${JSON.stringify(policy.id)}, already used at ${formatLocation(first)}`,
        );
      }
      seen.set(policy.id, policy.where);
      policies.push(policy);
    }
  }
  if (policies.length === 0) {
    throw new PolicyLoadError("no_policies", { file: origin }, `the ${POLICY_FILE_SUFFIX} files hold no policies`);
  }
  const entitiesText = set.files[ENTITIES_FILE];
  const entities = entitiesText === undefined ? EntityStore.empty() : EntityStore.parse(entitiesText, join(origin, ENTITIES_FILE));
  return { policies, entities, version: policyVersionOf(set) };
}

/**
 * Parses one `.cedar` file into policies with their ids. Cedar checks the file as a whole
 * (so errors carry its positions); the file is then cut into policies, and the cut must
 * agree with Cedar's count.
 *
 * @param path the file's path, named in errors
 * @param name the file's name, used in generated ids
 */
export function parsePolicyFile(path: string, name: string, text: string): LoadedPolicy[] {
  const source = new SourceText(text);
  const slices = splitPolicies(text);
  const parts = policySetTextToParts(text);
  if (parts.type === "failure") {
    const located = locatedError(path, source, parts.errors);
    if (located) throw located;
  }
  if (parts.type === "failure" || parts.policy_templates.length > 0) {
    // No position from Cedar, or a template: find the policy Cedar will not take as static.
    for (const slice of slices) {
      const json = policyToJson(slice.text);
      if (json.type === "failure") {
        throw new PolicyLoadError("policy_syntax", { file: path, ...source.positionOfIndex(slice.start) }, describe(json.errors[0]));
      }
    }
    const detail = parts.type === "failure" ? describe(parts.errors[0]) : "templates are not supported; write static policies";
    throw new PolicyLoadError("policy_syntax", { file: path }, detail);
  }
  if (parts.policies.length !== slices.length) {
    // Our cut and Cedar's parse disagree: refuse rather than drop or merge a policy.
    throw new PolicyLoadError(
      "policy_syntax",
      { file: path },
      `cannot tell where each policy starts (Cedar counts ${parts.policies.length}, found ${slices.length})`,
    );
  }

  const parsed = slices.map((slice) => {
    const at = source.positionOfIndex(slice.start);
    const where = { file: path, line: at.line, column: at.column };
    const head = readPolicyHead(slice.text);
    if (head && !(head.annotations.has("id") && head.annotations.get("id") === undefined)) {
      return { slice, where, effect: head.effect, annotatedId: head.annotations.get("id") };
    }
    // An escaped @id (or a head we could not read): let Cedar decode it.
    const json = policyToJson(slice.text);
    if (json.type === "failure") throw new PolicyLoadError("policy_syntax", where, describe(json.errors[0]));
    return { slice, where, effect: json.json.effect, annotatedId: json.json.annotations?.["id"] };
  });

  // Two policies on one line would share `file:line`; such policies get the column too.
  const perLine = new Map<number, number>();
  for (const p of parsed) perLine.set(p.where.line, (perLine.get(p.where.line) ?? 0) + 1);

  return parsed.map(({ slice, where, effect, annotatedId }): LoadedPolicy => {
    if (annotatedId !== undefined && annotatedId.trim() === "") {
      throw new PolicyLoadError("policy_syntax", where, "@id must not be empty");
    }
    const id = annotatedId ?? (perLine.get(where.line)! > 1 ? `${name}:${where.line}:${where.column}` : `${name}:${where.line}`);
    return { id, effect, text: slice.text, where };
  });
}

function locatedError(path: string, source: SourceText, errors: readonly DetailedError[]): PolicyLoadError | undefined {
  const first = errors[0];
  const span = first?.sourceLocations?.[0];
  if (!first || !span) return undefined;
  const at = source.positionOfByteOffset(span.start);
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : "";
  return new PolicyLoadError("policy_syntax", { file: path, ...at }, describe(first, span.label) + more);
}

const CEDAR_PREFIX = /^failed to parse polic(?:y|ies) from string: /;

function describe(error: DetailedError | undefined, label?: string | null): string {
  if (!error) return "rejected by Cedar";
  let s = oneLine(error.message).replace(CEDAR_PREFIX, "");
  if (label) s += `: ${label}`;
  if (error.help) s += ` (${error.help})`;
  return s;
}

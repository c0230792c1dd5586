import { checkParseEntities, type EntityJson, type EntityUidJson } from "@cedar-policy/cedar-wasm/nodejs";

import type { EntityRef } from "./context.js";
import { oneLine, PolicyLoadError } from "./errors.js";
import { outlineJson } from "./json-outline.js";
import { SourceText } from "./source-position.js";

/**
 * The entities of a policy directory (`entities.json`, Cedar's JSON entity format), indexed
 * so a decision can be handed only the entities it needs.
 *
 * Cedar parses the entities of every call, so passing the whole file would make each
 * decision cost grow with the directory. Each entity's ancestor closure is computed once at
 * load; a decision then concatenates a few precomputed lists.
 */
export class EntityStore {
  /** type → id → the entity followed by all its ancestors that are defined in the file. */
  readonly #closures: Map<string, Map<string, readonly EntityJson[]>>;
  readonly size: number;

  private constructor(closures: Map<string, Map<string, readonly EntityJson[]>>, size: number) {
    this.#closures = closures;
    this.size = size;
  }

  /** No entities: every principal and resource stands alone. */
  static empty(): EntityStore {
    return new EntityStore(new Map(), 0);
  }

  /**
   * Parses and indexes the text of an entities file.
   *
   * @param file the path to name in errors
   * @throws PolicyLoadError (`entities_invalid`) naming the line of the offending entity
   *   when it can be told
   */
  static parse(text: string, file: string): EntityStore {
    const source = new SourceText(text);
    const outline = outlineJson(text);
    if (outline.error) {
      const at = source.positionOfIndex(outline.error.index);
      throw new PolicyLoadError("entities_invalid", { file, ...at }, `invalid JSON: ${outline.error.message}`);
    }
    const raw: unknown = JSON.parse(text);
    if (!Array.isArray(raw)) {
      throw new PolicyLoadError("entities_invalid", { file, line: 1, column: 1 }, "expected a JSON array of Cedar entities");
    }
    const whereIs = (i: number) => source.positionOfIndex(outline.elementStarts[i] ?? 0);

    const checked = checkParseEntities({ entities: raw as EntityJson[] });
    if (checked.type === "failure") {
      // Cedar does not say which entity failed; ask it about each one to find the line.
      for (let i = 0; i < raw.length; i++) {
        const one = checkParseEntities({ entities: [raw[i] as EntityJson] });
        if (one.type === "failure") {
          throw new PolicyLoadError("entities_invalid", { file, ...whereIs(i) }, `entity #${i + 1}: ${describe(one.errors)}`);
        }
      }
      throw new PolicyLoadError("entities_invalid", { file }, describe(checked.errors));
    }

    // Cedar accepts a uid twice and keeps one; a file that says two things about an entity is
    // a mistake worth stopping for.
    const byKey = new Map<string, { entity: EntityJson; index: number }>();
    const entities = raw.map((e, i): EntityJson => {
      const entity = normalize(e as EntityJson);
      const key = keyOf(entity.uid as EntityRef);
      const first = byKey.get(key);
      if (first) {
        const prev = whereIs(first.index);
        throw new PolicyLoadError(
          "entities_invalid",
          { file, ...whereIs(i) },
          `entity ${display(entity.uid as EntityRef)} is defined twice (first at line ${prev.line})`,
        );
      }
      byKey.set(key, { entity, index: i });
      return entity;
    });

    const closures = new Map<string, Map<string, readonly EntityJson[]>>();
    for (const entity of entities) {
      const closure: EntityJson[] = [];
      const seen = new Set<string>();
      const visit = (uid: EntityRef): void => {
        const key = keyOf(uid);
        if (seen.has(key)) return;
        seen.add(key);
        const found = byKey.get(key);
        // A parent that is not defined still counts as a parent (it sits in the child's
        // `parents`); it just has no ancestors of its own to bring along.
        if (!found) return;
        closure.push(found.entity);
        for (const p of found.entity.parents) visit(p as EntityRef);
      };
      visit(entity.uid as EntityRef);
      const uid = entity.uid as EntityRef;
      let ids = closures.get(uid.type);
      if (!ids) closures.set(uid.type, (ids = new Map()));
      ids.set(uid.id, closure);
    }
    return new EntityStore(closures, entities.length);
  }

  /**
   * The entities a request about `uids` needs: each one that is defined, with its
   * ancestors, each entity once. Unknown uids add nothing (Cedar treats them as entities
   * with no attributes and no parents).
   */
  subsetFor(uids: readonly EntityRef[]): EntityJson[] {
    const out: EntityJson[] = [];
    let seen: Set<EntityJson> | undefined;
    for (const uid of uids) {
      const closure = this.#closures.get(uid.type)?.get(uid.id);
      if (!closure) continue;
      if (out.length === 0) {
        out.push(...closure);
        continue;
      }
      seen ??= new Set(out);
      for (const e of closure) {
        if (!seen.has(e)) {
          seen.add(e);
          out.push(e);
        }
      }
    }
    return out;
  }
}

/** One uid shape (`{ type, id }`) everywhere, so the index and Cedar see the same thing. */
function normalize(e: EntityJson): EntityJson {
  const out: EntityJson = { uid: plainUid(e.uid), attrs: e.attrs, parents: e.parents.map(plainUid) };
  if (e.tags !== undefined) out.tags = e.tags;
  return out;
}

function plainUid(u: EntityUidJson): EntityRef {
  const r = "__entity" in u ? u.__entity : u;
  return { type: r.type, id: r.id };
}

function keyOf(uid: EntityRef): string {
  // Entity type names are Cedar identifiers (no NUL), so this cannot collide.
  return `${uid.type}\u0000${uid.id}`;
}

function display(uid: EntityRef): string {
  return `${uid.type}::${JSON.stringify(uid.id)}`;
}

function describe(errors: readonly { message: string; help: string | null }[]): string {
  const first = errors[0];
  if (!first) return "rejected by Cedar";
  const message = oneLine(first.message);
  return first.help ? `${message} (${first.help})` : message;
}

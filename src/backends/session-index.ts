import type { SessionListQuery, SessionRecord } from "./types.js";

/** The page `list` answers, from every record a store holds (sorted here by id). */
export function pageOf(records: Iterable<SessionRecord>, query: SessionListQuery): SessionRecord[] {
  const after = query.afterId;
  return [...records]
    .filter((r) => (after === undefined || r.id > after) && query.match(r))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, query.limit);
}

/**
 * Session ids by the orchestrator that started them: lets a store count one orchestrator's
 * sessions without walking every session it holds.
 */
export class StartedByIndex {
  readonly #ids = new Map<string, Set<string>>();

  add(startedBy: string, id: string): void {
    let set = this.#ids.get(startedBy);
    if (!set) this.#ids.set(startedBy, (set = new Set()));
    set.add(id);
  }

  remove(startedBy: string, id: string): void {
    const set = this.#ids.get(startedBy);
    if (!set?.delete(id)) return;
    if (set.size === 0) this.#ids.delete(startedBy);
  }

  /** Counts the ids of `startedBy` whose record (looked up by `get`) passes `live`. */
  count(startedBy: string, get: (id: string) => SessionRecord | undefined, live: (r: SessionRecord) => boolean): number {
    let n = 0;
    for (const id of this.#ids.get(startedBy) ?? []) {
      const r = get(id);
      if (r && live(r)) n++;
    }
    return n;
  }
}

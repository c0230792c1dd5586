import { describe, expect, it } from "vitest";

import { ContextError, entityValue, toCedarContext, type EntityRef } from "../../src/policy/context.js";
import { EntityStore } from "../../src/policy/entity-store.js";

const store = EntityStore.parse(
  JSON.stringify([
    { uid: { type: "Group", id: "all" }, attrs: {}, parents: [] },
    { uid: { type: "Group", id: "sales" }, attrs: {}, parents: [{ type: "Group", id: "all" }, { type: "Group", id: "undefined-parent" }] },
    { uid: { __entity: { type: "Agent", id: "bot" } }, attrs: { tier: 2 }, parents: [{ __entity: { type: "Group", id: "sales" } }] },
    { uid: { type: "User", id: "alice" }, attrs: {}, parents: [{ type: "Group", id: "all" }] },
    { uid: { type: "User", id: "bob" }, attrs: {}, parents: [] },
  ]),
  "entities.json",
);
const uids = (refs: EntityRef[]) => store.subsetFor(refs).map((e) => `${(e.uid as EntityRef).type}::${(e.uid as EntityRef).id}`);

describe("EntityStore.subsetFor", () => {
  it("gives each requested entity with its ancestors, and nothing else", () => {
    expect(uids([{ type: "Agent", id: "bot" }])).toEqual(["Agent::bot", "Group::sales", "Group::all"]);
    expect(store.size).toBe(5);
  });

  it("lists a shared ancestor once", () => {
    expect(uids([{ type: "Agent", id: "bot" }, { type: "User", id: "alice" }])).toEqual(["Agent::bot", "Group::sales", "Group::all", "User::alice"]);
    expect(uids([{ type: "User", id: "alice" }, { type: "User", id: "alice" }])).toEqual(["User::alice", "Group::all"]);
  });

  it("adds nothing for unknown entities", () => {
    expect(uids([{ type: "Agent", id: "ghost" }, { type: "Action", id: "read" }])).toEqual([]);
  });

  it("normalizes __entity uids so Cedar and the index agree", () => {
    const bot = store.subsetFor([{ type: "Agent", id: "bot" }])[0]!;
    expect(bot.uid).toEqual({ type: "Agent", id: "bot" });
    expect(bot.parents).toEqual([{ type: "Group", id: "sales" }]);
    expect(bot.attrs).toEqual({ tier: 2 });
  });
});

describe("toCedarContext", () => {
  it("escapes entity values and collects them", () => {
    const refs: EntityRef[] = [];
    const ctx = toCedarContext({ user: entityValue("User", "alice"), n: 3, ok: true, tags: ["a", entityValue("G", "g")], labels: { env: "prod" } }, refs);
    expect(ctx).toEqual({
      user: { __entity: { type: "User", id: "alice" } },
      n: 3,
      ok: true,
      tags: ["a", { __entity: { type: "G", id: "g" } }],
      labels: { env: "prod" },
    });
    expect(refs.map((r) => r.id)).toEqual(["alice", "g"]);
  });

  it("rejects what Cedar cannot hold", () => {
    const bad: unknown[] = [1.5, Number.MAX_SAFE_INTEGER + 1, NaN, null, undefined, new Date(), 10n, { __extn: "x" }];
    for (const v of bad) {
      expect(() => toCedarContext({ v } as never, []), String(v)).toThrow(ContextError);
    }
  });
});

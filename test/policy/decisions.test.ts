import { afterEach, describe, expect, it } from "vitest";

import { entityValue, loadPolicyEngine, type PolicyEngine } from "../../src/policy/engine.js";
import { cleanup, policyDir } from "./helpers.js";

// Decisions over purpose-built policy directories.

const open: { dir: string; engine: PolicyEngine }[] = [];
async function engineFor(files: Record<string, string>): Promise<PolicyEngine> {
  const dir = await policyDir(files);
  const engine = await loadPolicyEngine({ dir });
  open.push({ dir, engine });
  return engine;
}
afterEach(async () => {
  for (const { dir, engine } of open.splice(0)) {
    engine.close();
    await cleanup(dir);
  }
});

const bot = { type: "Agent", id: "bot" };
const crm = { type: "Resource", id: "crm" };

describe("context", () => {
  it("makes labels usable in a policy", async () => {
    const engine = await engineFor({
      "labels.cedar": `
        @id("prod-only")
        permit (principal, action == Action::"read", resource)
        when { context has labels && context.labels has env && context.labels.env == "prod" };
      `,
    });
    const ask = (labels: Record<string, string>) => engine.authorize({ principal: bot, action: "read", resource: crm, context: { labels } });
    expect(ask({ env: "prod", team: "x" })).toEqual({ allowed: true, policyIds: ["prod-only"], errors: [] });
    expect(ask({ env: "dev" }).allowed).toBe(false);
    expect(ask({}).allowed).toBe(false);
  });

  it("passes the user entity, with its groups, to the policy", async () => {
    const engine = await engineFor({
      "p.cedar": 'permit (principal, action, resource) when { context has user && context.user in UserGroup::"staff" };',
      "entities.json": JSON.stringify([
        { uid: { type: "UserGroup", id: "staff" }, attrs: {}, parents: [] },
        { uid: { type: "User", id: "alice" }, attrs: {}, parents: [{ type: "UserGroup", id: "staff" }] },
        { uid: { type: "User", id: "mallory" }, attrs: {}, parents: [] },
      ]),
    });
    const ask = (user?: string) =>
      engine.authorize({ principal: bot, action: "read", resource: crm, context: user ? { user: entityValue("User", user) } : {} });
    expect(ask("alice").allowed).toBe(true);
    expect(ask("mallory").allowed).toBe(false);
    expect(ask().allowed).toBe(false);
  });

  it("reads entity attributes from entities.json", async () => {
    const engine = await engineFor({
      "p.cedar": "permit (principal, action, resource) when { principal has tier && principal.tier >= 2 };",
      "entities.json": JSON.stringify([
        { uid: { type: "Agent", id: "gold" }, attrs: { tier: 3 }, parents: [] },
        { uid: { type: "Agent", id: "tin" }, attrs: { tier: 1 }, parents: [] },
      ]),
    });
    expect(engine.authorize({ principal: { type: "Agent", id: "gold" }, action: "read", resource: crm }).allowed).toBe(true);
    expect(engine.authorize({ principal: { type: "Agent", id: "tin" }, action: "read", resource: crm }).allowed).toBe(false);
  });

  it("denies, with a message, a number Cedar cannot hold", async () => {
    const engine = await engineFor({ "p.cedar": "permit (principal, action, resource);" });
    const d = engine.authorize({ principal: bot, action: "read", resource: crm, context: { ttl_seconds: 1.5 } });
    expect(d.allowed).toBe(false);
    expect(d.errors).toEqual(["context.ttl_seconds: 1.5 is not an integer Cedar can hold"]);
  });

  it("denies a label key that Cedar would read as an escape", async () => {
    const engine = await engineFor({ "p.cedar": "permit (principal, action, resource);" });
    const d = engine.authorize({ principal: bot, action: "read", resource: crm, context: { labels: { __entity: "x" } } });
    expect(d.allowed).toBe(false);
    expect(d.errors[0]).toMatch(/reserved/);
  });

  it("never reads an entity reference out of plain data", async () => {
    const engine = await engineFor({
      "p.cedar": 'permit (principal, action, resource) when { context.who == User::"alice" };',
    });
    const plain = engine.authorize({ principal: bot, action: "read", resource: crm, context: { who: { type: "User", id: "alice" } } });
    expect(plain.allowed).toBe(false);
    const tagged = engine.authorize({ principal: bot, action: "read", resource: crm, context: { who: entityValue("User", "alice") } });
    expect(tagged.allowed).toBe(true);
  });
});

describe("groups and actions", () => {
  it("follows nested groups transitively", async () => {
    const engine = await engineFor({
      "p.cedar": 'permit (principal in AgentGroup::"all", action, resource);',
      "entities.json": JSON.stringify([
        { uid: { type: "AgentGroup", id: "all" }, attrs: {}, parents: [] },
        { uid: { type: "AgentGroup", id: "sales" }, attrs: {}, parents: [{ type: "AgentGroup", id: "all" }] },
        { uid: { type: "Agent", id: "bot" }, attrs: {}, parents: [{ type: "AgentGroup", id: "sales" }] },
      ]),
    });
    expect(engine.authorize({ principal: bot, action: "read", resource: crm }).allowed).toBe(true);
    expect(engine.authorize({ principal: { type: "Agent", id: "other" }, action: "read", resource: crm }).allowed).toBe(false);
  });

  it("uses action groups defined in entities.json", async () => {
    const engine = await engineFor({
      "p.cedar": 'permit (principal, action in Action::"readonly", resource);',
      "entities.json": JSON.stringify([
        { uid: { type: "Action", id: "readonly" }, attrs: {}, parents: [] },
        { uid: { type: "Action", id: "contacts.read" }, attrs: {}, parents: [{ type: "Action", id: "readonly" }] },
      ]),
    });
    expect(engine.authorize({ principal: bot, action: "contacts.read", resource: crm }).allowed).toBe(true);
    expect(engine.authorize({ principal: bot, action: "contacts.write", resource: crm }).allowed).toBe(false);
  });

  it("uses resource groups", async () => {
    const engine = await engineFor({
      "p.cedar": 'permit (principal, action, resource in ResourceGroup::"crm-apis");',
      "entities.json": JSON.stringify([{ uid: { type: "Resource", id: "crm" }, attrs: {}, parents: [{ type: "ResourceGroup", id: "crm-apis" }] }]),
    });
    expect(engine.authorize({ principal: bot, action: "read", resource: crm }).allowed).toBe(true);
    expect(engine.authorize({ principal: bot, action: "read", resource: { type: "Resource", id: "hr" } }).allowed).toBe(false);
  });
});

describe("policy ids", () => {
  it("names a policy without @id by file and line", async () => {
    const engine = await engineFor({
      "b.cedar": '// header\n\npermit (principal, action == Action::"read", resource);\n',
      "a.cedar": 'forbid (principal, action == Action::"read", resource == Resource::"secret");',
    });
    expect(engine.authorize({ principal: bot, action: "read", resource: crm }).policyIds).toEqual(["b.cedar:3"]);
    expect(engine.authorize({ principal: bot, action: "read", resource: { type: "Resource", id: "secret" } })).toEqual({
      allowed: false,
      policyIds: ["a.cedar:1"],
      errors: [],
    });
  });

  it("adds the column when two policies start on one line", async () => {
    const engine = await engineFor({
      "a.cedar": 'permit (principal, action == Action::"a", resource); permit (principal, action == Action::"b", resource);',
    });
    expect(engine.authorize({ principal: bot, action: "a", resource: crm }).policyIds).toEqual(["a.cedar:1:1"]);
    expect(engine.authorize({ principal: bot, action: "b", resource: crm }).policyIds).toEqual(["a.cedar:1:54"]);
  });

  it("reports every permit that allowed", async () => {
    const engine = await engineFor({
      "a.cedar": '@id("one") permit (principal, action, resource);\n@id("two") permit (principal == Agent::"bot", action, resource);',
    });
    expect(engine.authorize({ principal: bot, action: "read", resource: crm }).policyIds.sort()).toEqual(["one", "two"]);
  });

  it("does not split on semicolons inside strings or comments", async () => {
    const engine = await engineFor({
      "a.cedar": '// a comment; with "quotes\n@id("semi;colon") permit (principal, action, resource) when { context.s == "a;b\\";//" };',
    });
    expect(engine.state.policyCount).toBe(1);
    expect(engine.authorize({ principal: bot, action: "x", resource: crm, context: { s: 'a;b";//' } }).policyIds).toEqual(["semi;colon"]);
  });
});

describe("forbid", () => {
  it("wins over a permit that also matches", async () => {
    const engine = await engineFor({
      "a.cedar": '@id("all") permit (principal, action, resource);\n@id("no-delete") forbid (principal, action == Action::"delete", resource);',
    });
    expect(engine.authorize({ principal: bot, action: "delete", resource: crm })).toEqual({ allowed: false, policyIds: ["no-delete"], errors: [] });
    expect(engine.authorize({ principal: bot, action: "read", resource: crm }).policyIds).toEqual(["all"]);
  });

  it("denies when its condition errors, instead of being skipped", async () => {
    const engine = await engineFor({
      "a.cedar":
        '@id("all") permit (principal, action, resource);\n@id("prod-guard") forbid (principal, action, resource) when { context.labels.env == "prod" };',
    });
    // No labels at all: the forbid cannot be evaluated; Cedar alone would allow.
    const d = engine.authorize({ principal: bot, action: "read", resource: crm, context: {} });
    expect(d.allowed).toBe(false);
    expect(d.policyIds).toEqual(["prod-guard"]);
    expect(d.errors[0]).toMatch(/^prod-guard: .*labels/);
  });

  it("leaves an erroring permit without effect", async () => {
    const engine = await engineFor({
      "a.cedar": '@id("needs-ttl") permit (principal, action, resource) when { context.ttl_seconds < 60 };',
    });
    const d = engine.authorize({ principal: bot, action: "read", resource: crm, context: {} });
    expect(d.allowed).toBe(false);
    expect(d.policyIds).toEqual([]);
    expect(d.errors).toHaveLength(1);
  });
});

describe("ids with any characters", () => {
  const weirdAgent = 'we"ird\\bot 🤖 \n Agent::"x"';
  const weirdUser = 'o"brien ünïcødé';
  const injection = '"); permit (principal, action, resource); //';

  it("decides on ids with quotes, backslashes, newlines and unicode", async () => {
    const engine = await engineFor({
      "a.cedar": '@id("sales") permit (principal in AgentGroup::"sales", action == Action::"read", resource == Resource::"crm") when { context has user };',
      "entities.json": JSON.stringify([
        { uid: { type: "AgentGroup", id: "sales" }, attrs: {}, parents: [] },
        { uid: { type: "Agent", id: weirdAgent }, attrs: {}, parents: [{ type: "AgentGroup", id: "sales" }] },
        { uid: { type: "User", id: weirdUser }, attrs: {}, parents: [] },
      ]),
    });
    const user = { user: entityValue("User", weirdUser) };
    expect(engine.authorize({ principal: { type: "Agent", id: weirdAgent }, action: "read", resource: crm, context: user }).allowed).toBe(true);
    // The id is data, not Cedar text: no prefix or lookalike matches.
    expect(engine.authorize({ principal: { type: "Agent", id: 'we"ird' }, action: "read", resource: crm, context: user }).allowed).toBe(false);
    expect(engine.authorize({ principal: { type: "Agent", id: injection }, action: "read", resource: crm, context: user }).allowed).toBe(false);
    expect(engine.authorize({ principal: { type: "Agent", id: weirdAgent }, action: injection, resource: crm, context: user }).allowed).toBe(false);
    expect(engine.authorize({ principal: { type: "Agent", id: weirdAgent }, action: "read", resource: { type: "Resource", id: injection }, context: user }).allowed).toBe(false);
  });

  it("takes @id values with quotes and unicode", async () => {
    const engine = await engineFor({ "a.cedar": '@id("the \\"ünïcødé\\" rule 🤖") permit (principal, action, resource);' });
    expect(engine.authorize({ principal: bot, action: "read", resource: crm }).policyIds).toEqual(['the "ünïcødé" rule 🤖']);
  });

  it("denies, with Cedar's message, an entity type that is not a Cedar name", async () => {
    const engine = await engineFor({ "a.cedar": "permit (principal, action, resource);" });
    const d = engine.authorize({ principal: { type: "Not A Type", id: "x" }, action: "read", resource: crm });
    expect(d.allowed).toBe(false);
    expect(d.errors.length).toBeGreaterThan(0);
  });
});

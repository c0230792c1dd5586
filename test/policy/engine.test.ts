import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { entityValue, loadPolicyEngine, type AuthorizationRequest, type PolicyEngine } from "../../src/policy/engine.js";
import { EXAMPLE_DIR } from "./helpers.js";

// Decisions of the example policy directory the server ships with.

let engine: PolicyEngine;
beforeAll(async () => {
  engine = await loadPolicyEngine({ dir: EXAMPLE_DIR });
});
afterAll(() => engine.close());

const agent = (id: string) => ({ type: "Agent", id });
const resource = (id: string) => ({ type: "Resource", id });

function issue(agentId: string, scope: string, res: string, ctx: { user?: string; ttl?: number } = {}): AuthorizationRequest {
  return {
    principal: agent(agentId),
    action: scope,
    resource: resource(res),
    context: {
      ...(ctx.user !== undefined ? { user: entityValue("User", ctx.user) } : {}),
      session_id: "ses_1",
      ttl_seconds: ctx.ttl ?? 900,
      labels: {},
    },
  };
}

describe("example policies: orchestrating", () => {
  it.each(["start_session", "end_session"])("lets Orchestrator dev %s any agent", (action) => {
    const d = engine.authorize({ principal: { type: "Orchestrator", id: "dev" }, action, resource: agent("sales-bot") });
    expect(d).toEqual({ allowed: true, policyIds: ["orchestrator-dev"], errors: [] });
  });

  it("lets Orchestrator dev introspect: the gate asked before the token is read, and any agent's tokens", () => {
    for (const resource of [{ type: "Introspection", id: "tokens" }, agent("sales-bot")]) {
      const d = engine.authorize({ principal: { type: "Orchestrator", id: "dev" }, action: "introspect", resource });
      expect(d).toEqual({ allowed: true, policyIds: ["orchestrator-dev-introspect"], errors: [] });
    }
    expect(engine.authorize({ principal: { type: "Orchestrator", id: "prod" }, action: "introspect", resource: { type: "Introspection", id: "tokens" } }).allowed).toBe(false);
  });

  it.each([
    ["Agent", "sales-bot"],
    ["User", "alice"],
    ["Resource", "salesforce"],
    ["Token", "tok_x"],
  ])("lets Orchestrator dev revoke by %s", (type, id) => {
    const d = engine.authorize({ principal: { type: "Orchestrator", id: "dev" }, action: "revoke", resource: { type, id } });
    expect(d).toEqual({ allowed: true, policyIds: ["orchestrator-dev-revoke"], errors: [] });
  });

  it("covers agents that entities.json does not list", () => {
    const d = engine.authorize({ principal: { type: "Orchestrator", id: "dev" }, action: "revoke", resource: agent("brand-new") });
    expect(d.allowed).toBe(true);
  });

  it("denies another orchestrator, and dev on something that is not an agent", () => {
    const other = engine.authorize({ principal: { type: "Orchestrator", id: "prod" }, action: "start_session", resource: agent("sales-bot") });
    expect(other).toEqual({ allowed: false, policyIds: [], errors: [] });
    const notAgent = engine.authorize({ principal: { type: "Orchestrator", id: "dev" }, action: "start_session", resource: resource("salesforce") });
    expect(notAgent.allowed).toBe(false);
  });

  it("lets the demo gateway introspect and nothing else", () => {
    const gw = { type: "ResourceServer", id: "demo-gateway" };
    expect(engine.authorize({ principal: gw, action: "introspect", resource: agent("sales-bot") })).toEqual({
      allowed: true,
      policyIds: ["demo-gateway-introspect"],
      errors: [],
    });
    expect(engine.authorize({ principal: gw, action: "revoke", resource: agent("sales-bot") }).allowed).toBe(false);
    expect(engine.authorize({ principal: { type: "ResourceServer", id: "other" }, action: "introspect", resource: agent("x") }).allowed).toBe(false);
  });
});

describe("example policies: issuing", () => {
  it("lets a sales agent read and write the CRM for a user", () => {
    for (const scope of ["read", "write"]) {
      expect(engine.authorize(issue("sales-bot", scope, "salesforce", { user: "alice" }))).toEqual({
        allowed: true,
        policyIds: ["sales-crm-for-user"],
        errors: [],
      });
    }
  });

  it("denies the CRM to a sales agent acting without a user", () => {
    expect(engine.authorize(issue("sales-bot", "read", "salesforce"))).toEqual({ allowed: false, policyIds: [], errors: [] });
  });

  it("denies scopes nobody granted", () => {
    expect(engine.authorize(issue("sales-bot", "admin", "salesforce", { user: "alice" })).allowed).toBe(false);
    expect(engine.authorize(issue("sales-bot", "write", "calendar", { user: "alice" })).allowed).toBe(false);
    expect(engine.authorize(issue("sales-bot", "contacts.read", "salesforce", { user: "bob" })).allowed).toBe(false);
  });

  it("lets a sales agent read the calendar with or without a user", () => {
    expect(engine.authorize(issue("sales-bot", "read", "calendar")).policyIds).toEqual(["sales-calendar-read"]);
    expect(engine.authorize(issue("sales-bot", "read", "calendar", { user: "bob" })).allowed).toBe(true);
  });

  it("decides group membership from entities.json", () => {
    // report-bot exists but is not in AgentGroup::"sales"; stranger is not defined at all.
    expect(engine.authorize(issue("report-bot", "read", "calendar")).allowed).toBe(false);
    expect(engine.authorize(issue("stranger", "read", "calendar")).allowed).toBe(false);
    expect(engine.authorize(issue("sales-bot", "read", "calendar")).allowed).toBe(true);
  });

  it("lets a forbid win and names it", () => {
    const d = engine.authorize(issue("sales-bot", "delete", "salesforce", { user: "alice" }));
    expect(d).toEqual({ allowed: false, policyIds: ["no-salesforce-delete"], errors: [] });
  });

  it("holds the report bot to tokens of at most 900 seconds", () => {
    expect(engine.authorize(issue("report-bot", "read", "warehouse", { ttl: 900 }))).toEqual({
      allowed: true,
      policyIds: ["report-bot-warehouse-read"],
      errors: [],
    });
    expect(engine.authorize(issue("report-bot", "read", "warehouse", { ttl: 60 })).allowed).toBe(true);
    expect(engine.authorize(issue("report-bot", "read", "warehouse", { ttl: 901 })).allowed).toBe(false);
    expect(engine.authorize(issue("report-bot", "write", "warehouse", { ttl: 60 })).allowed).toBe(false);
  });

  it("denies the report bot when no ttl is given, without an evaluation error", () => {
    const d = engine.authorize({ principal: agent("report-bot"), action: "read", resource: resource("warehouse"), context: {} });
    expect(d).toEqual({ allowed: false, policyIds: [], errors: [] });
  });

  it("does not confuse a user id that is an agent's name with a user", () => {
    // A string is not an entity: only entityValue() makes context.user a User.
    const d = engine.authorize({
      principal: agent("sales-bot"),
      action: "read",
      resource: resource("salesforce"),
      context: { user: "alice" },
    });
    expect(d.allowed).toBe(false);
  });

  it("reports its state", () => {
    expect(engine.state).toMatchObject({ version: 1, policyCount: 9 });
    expect(engine.state.lastError).toBeUndefined();
    expect(engine.state.loadedAt).toBeGreaterThan(0);
  });
});

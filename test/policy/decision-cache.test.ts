import { describe, expect, it } from "vitest";
import { cacheDecisions, requestKey } from "../../src/policy/decision-cache.js";
import { entityValue, type AuthorizationRequest, type Decision } from "../../src/policy/engine.js";

/** A decider that counts its evaluations and answers from a rule the test can swap. */
function countingDecider(rule: (req: AuthorizationRequest) => boolean) {
  const state = { version: 1 };
  let evaluations = 0;
  let current = rule;
  return {
    state,
    get evaluations() {
      return evaluations;
    },
    swap(next: (req: AuthorizationRequest) => boolean) {
      current = next;
      state.version++;
    },
    authorize(req: AuthorizationRequest): Decision {
      evaluations++;
      return { allowed: current(req), policyIds: ["p"], errors: [] };
    },
  };
}

const request = (scope: string, context: AuthorizationRequest["context"] = { session_id: "ses_1", ttl_seconds: 900, labels: {} }): AuthorizationRequest => ({
  principal: { type: "Agent", id: "sales-bot" },
  action: scope,
  resource: { type: "Resource", id: "salesforce" },
  context,
});

describe("cacheDecisions", () => {
  it("answers a repeated request from the cache, with the same decision", () => {
    const d = countingDecider(() => true);
    const cached = cacheDecisions(d);
    const first = cached.authorize(request("read"));
    expect(cached.authorize(request("read"))).toBe(first);
    expect(d.evaluations).toBe(1);
    expect(cached.stats).toMatchObject({ hits: 1, misses: 1, size: 1 });
  });

  it("drops everything the moment the policy version changes", () => {
    const d = countingDecider(() => true);
    const cached = cacheDecisions(d);
    expect(cached.authorize(request("read")).allowed).toBe(true);
    d.swap(() => false);
    expect(cached.authorize(request("read")).allowed).toBe(false);
    expect(d.evaluations).toBe(2);
    expect(cached.stats.version).toBe(2);
  });

  it("keeps requests that differ in any part apart", () => {
    const d = countingDecider((req) => req.action === "read" && req.context?.ttl_seconds === 900);
    const cached = cacheDecisions(d);
    expect(cached.authorize(request("read")).allowed).toBe(true);
    expect(cached.authorize(request("write")).allowed).toBe(false);
    expect(cached.authorize(request("read", { session_id: "ses_1", ttl_seconds: 3600, labels: {} })).allowed).toBe(false);
    expect(cached.authorize(request("read", { session_id: "ses_2", ttl_seconds: 900, labels: {} })).allowed).toBe(true);
    expect(d.evaluations).toBe(4);
  });

  it("tells an entity reference from a record or string with the same text", () => {
    const user = requestKey(request("read", { user: entityValue("User", "alice") }));
    expect(user).not.toBe(requestKey(request("read", { user: { type: "User", id: "alice" } })));
    expect(user).not.toBe(requestKey(request("read", { user: 'User::"alice"' })));
    // Labels whose text would run together stay distinct.
    expect(requestKey(request("read", { labels: { a: "b:c" } }))).not.toBe(requestKey(request("read", { labels: { "a:b": "c" } })));
    // Key order does not matter.
    expect(requestKey(request("read", { labels: { a: "1", b: "2" } }))).toBe(requestKey(request("read", { labels: { b: "2", a: "1" } })));
  });

  it("stays within its size bound, dropping the oldest entries", () => {
    const d = countingDecider(() => true);
    const cached = cacheDecisions(d, 3);
    for (const s of ["a", "b", "c", "d"]) cached.authorize(request(s));
    expect(cached.stats.size).toBe(3);
    cached.authorize(request("a"));
    expect(d.evaluations).toBe(5);
  });
});

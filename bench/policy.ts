/**
 * Policy engine throughput: decisions per second on the example policy directory, through
 * the engine (request building + preparsed set), through cedar-wasm's
 * `statefulIsAuthorized` alone, and through plain `isAuthorized`, which parses the policy
 * set on every call. Same requests, same entity subsets; median of 5 runs.
 *
 * Run from the repository root (the directory is read relative to the working directory).
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

import { isAuthorized, statefulIsAuthorized, type AuthorizationAnswer } from "@cedar-policy/cedar-wasm/nodejs";

import { toCedarRequest, type CedarRequest } from "../src/policy/cedar-request.js";
import { entityValue, loadPolicyEngine, type AuthorizationRequest } from "../src/policy/engine.js";
import { readPolicyDirectory } from "../src/policy/policy-directory.js";
import { acquireSlot, preparseInto, releaseSlot } from "../src/policy/preparsed-slots.js";

const RUNS = 5;
const RUN_MS = 1_000;

function requests(): AuthorizationRequest[] {
  const agent = (id: string) => ({ type: "Agent", id });
  const res = (id: string) => ({ type: "Resource", id });
  const ctx = (user?: string, ttl = 900) => ({
    ...(user ? { user: entityValue("User", user) } : {}),
    session_id: "ses_bench",
    ttl_seconds: ttl,
    labels: { env: "prod" },
  });
  return [
    { principal: agent("sales-bot"), action: "read", resource: res("salesforce"), context: ctx("alice") },
    { principal: agent("sales-bot"), action: "write", resource: res("salesforce"), context: ctx("bob") },
    { principal: agent("sales-bot"), action: "delete", resource: res("salesforce"), context: ctx("alice") },
    { principal: agent("sales-bot"), action: "read", resource: res("calendar"), context: ctx() },
    { principal: agent("report-bot"), action: "read", resource: res("warehouse"), context: ctx(undefined, 600) },
    { principal: agent("report-bot"), action: "read", resource: res("warehouse"), context: ctx(undefined, 3600) },
    { principal: { type: "Orchestrator", id: "dev" }, action: "start_session", resource: agent("sales-bot") },
    { principal: { type: "ResourceServer", id: "demo-gateway" }, action: "introspect", resource: agent("report-bot") },
  ];
}

/** Calls `decide` over the requests for about RUN_MS, RUNS times; the median rate. */
function measure<T>(inputs: readonly T[], decide: (x: T) => unknown): number {
  for (let i = 0; i < 200; i++) decide(inputs[i % inputs.length]!);
  const rates: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    let n = 0;
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < RUN_MS) {
      for (const x of inputs) decide(x);
      n += inputs.length;
      elapsed = performance.now() - start;
    }
    rates.push((n / elapsed) * 1000);
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(RUNS / 2)]!;
}

function decisionOf(a: AuthorizationAnswer): string {
  return a.type === "success" ? a.response.decision : "failure";
}

export async function main(dir = resolve(process.cwd(), "examples/policy")): Promise<void> {
  const reqs = requests();
  const engine = await loadPolicyEngine({ dir });
  const loaded = await readPolicyDirectory(dir);
  const staticPolicies = Object.fromEntries(loaded.policies.map((p) => [p.id, p.text]));
  const calls: CedarRequest[] = reqs.map((r) => toCedarRequest(r, loaded.entities));
  const slot = acquireSlot();
  try {
    const pre = preparseInto(slot, { staticPolicies });
    if (pre.type !== "success") throw new Error("preparse failed");

    // The three paths must agree before their speed means anything.
    for (let i = 0; i < reqs.length; i++) {
      const viaEngine = engine.authorize(reqs[i]!).allowed ? "allow" : "deny";
      const stateful = decisionOf(statefulIsAuthorized({ ...calls[i]!, preparsedPolicySetId: slot }));
      const plain = decisionOf(isAuthorized({ ...calls[i]!, policies: { staticPolicies } }));
      if (viaEngine !== stateful || stateful !== plain) throw new Error(`paths disagree on request ${i}: ${viaEngine} ${stateful} ${plain}`);
    }

    const viaEngine = measure(reqs, (r) => engine.authorize(r));
    const stateful = measure(calls, (c) => statefulIsAuthorized({ ...c, preparsedPolicySetId: slot }));
    const plain = measure(calls, (c) => isAuthorized({ ...c, policies: { staticPolicies } }));

    const fmt = (x: number) => Math.round(x).toLocaleString("en-US").padStart(9);
    console.log(`policy engine, ${loaded.policies.length} policies, ${reqs.length} requests, median of ${RUNS} runs of ${RUN_MS} ms`);
    console.log(`  engine.authorize (stateful + request building)  ${fmt(viaEngine)} decisions/s`);
    console.log(`  statefulIsAuthorized (preparsed set)            ${fmt(stateful)} decisions/s`);
    console.log(`  isAuthorized (parses policies every call)       ${fmt(plain)} decisions/s`);
    console.log(`  stateful / plain: ${(stateful / plain).toFixed(2)}x`);
  } finally {
    releaseSlot(slot);
    engine.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv[2] ? resolve(process.argv[2]) : undefined).catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policyCommand } from "../../src/policy/policy-command.js";
import { policyVersionOf } from "../../src/policy/engine.js";
import { cleanup, EXAMPLE_DIR, policyDir } from "./helpers.js";

async function run(...argv: string[]) {
  let out = "";
  let err = "";
  const code = await policyCommand(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s), env: {} });
  return { code, out, err };
}

const GOOD = { "a.cedar": '@id("bot-read") permit (principal == Agent::"bot", action == Action::"read", resource == Resource::"crm");\n' };
let good: string;
let broken: string;
beforeAll(async () => {
  good = await policyDir(GOOD);
  broken = await policyDir({ "a.cedar": GOOD["a.cedar"], "b.cedar": "\n\npermit (principal, action resource);\n" });
});
afterAll(async () => {
  await cleanup(good);
  await cleanup(broken);
});

describe("capvend policy check", () => {
  it("prints the version of a good directory", async () => {
    const r = await run("check", good);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`version ${policyVersionOf({ files: GOOD })}`);
    expect(r.out).toContain("1 policies (1 permit, 0 forbid)");
  });

  it("names the file and line of a broken one, with exit 1", async () => {
    const r = await run("check", broken);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/b\.cedar:3:\d+: /);
    expect(r.out).toBe("");
  });

  it("refuses a missing directory and bad usage", async () => {
    expect((await run("check", `${good}/nope`)).code).toBe(1);
    expect((await run("check")).code).toBe(2);
    expect((await run("frobnicate")).code).toBe(2);
  });
});

describe("capvend policy explain", () => {
  it("prints an allow with the permitting policy", async () => {
    const r = await run("explain", "--agent", "sales-bot", "--user", "alice", "--resource", "salesforce", "--scope", "write", "--dir", EXAMPLE_DIR);
    expect(r.code).toBe(0);
    expect(r.out).toContain('ALLOW: scope "write" on resource "salesforce" for agent "sales-bot" for user "alice"');
    expect(r.out).toContain("permitted by: sales-crm-for-user");
  });

  it("prints a deny naming the forbid, or that nothing permits", async () => {
    const forbid = await run("explain", "--agent", "sales-bot", "--user", "alice", "--resource", "salesforce", "--scope", "delete", "--dir", EXAMPLE_DIR);
    expect(forbid.code).toBe(1);
    expect(forbid.out).toContain("DENY");
    expect(forbid.out).toContain("forbidden by policy no-salesforce-delete");
    const none = await run("explain", "--agent", "sales-bot", "--resource", "salesforce", "--scope", "read", "--dir", EXAMPLE_DIR);
    expect(none.code).toBe(1);
    expect(none.out).toContain("no policy permits it");
    // The TTL is part of the request: the report bot is capped at 900 s.
    expect((await run("explain", "--agent", "report-bot", "--resource", "warehouse", "--scope", "read", "--ttl", "10m", "--dir", EXAMPLE_DIR)).code).toBe(0);
    expect((await run("explain", "--agent", "report-bot", "--resource", "warehouse", "--scope", "read", "--ttl", "1h", "--dir", EXAMPLE_DIR)).code).toBe(1);
  });

  it("refuses missing or unknown flags", async () => {
    expect((await run("explain", "--agent", "a", "--resource", "r")).code).toBe(2);
    expect((await run("explain", "--agent", "a", "--resource", "r", "--scope", "s", "--bogus", "x")).code).toBe(2);
    expect((await run("explain", "--agent", "a", "--resource", "r", "--scope", "s", "--ttl", "soon")).code).toBe(2);
  });
});

describe("capvend policy push", () => {
  it("refuses a broken set before connecting anywhere, and refuses without NATS_URL", async () => {
    const r = await run("push", broken);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/b\.cedar:3/);
    const noNats = await run("push", good);
    expect(noNats.code).toBe(2);
    expect(noNats.err).toContain("NATS_URL");
  });
});

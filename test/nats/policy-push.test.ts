/**
 * Policy distribution on NATS: two replica processes start from their policy directory,
 * `capvend policy push` publishes a narrower set, both converge on its version, and the
 * drift revocations of each reach the other replica through the revocation feed.
 */
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policyVersionOf } from "../../src/policy/engine.js";
import { POLICY_CHANGED } from "../../src/streams/policy-drift.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { cleanup, policyDir } from "../policy/helpers.js";
import { collect, type Collected } from "../helpers/stream-collector.js";
import { waitFor } from "../helpers/wait.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ORCHESTRATION = '@id("orchestrator") permit (principal == Orchestrator::"dev", action, resource);\n';
const CRM = '@id("crm") permit (principal == Agent::"bot", action in [Action::"read", Action::"write"], resource == Resource::"crm");\n';
const CRM_READ = '@id("crm-read") permit (principal == Agent::"bot", action == Action::"read", resource == Resource::"crm");\n';
const CAL = '@id("cal") permit (principal == Agent::"bot", action == Action::"read", resource == Resource::"calendar");\n';
const WIDE = { "a.cedar": ORCHESTRATION + CRM + CAL };
const NARROW = { "a.cedar": ORCHESTRATION + CRM_READ + CAL };
const GRANTS = [
  { resource: "crm", scopes: ["read", "write"] },
  { resource: "calendar", scopes: ["read"] },
];

let nats: NatsServer;
let a: ReplicaProcess;
let b: ReplicaProcess;
let wideDir: string;
let narrowDir: string;
const streams: Collected[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  wideDir = await policyDir(WIDE);
  narrowDir = await policyDir(NARROW);
  const env = { CAPVEND_POLICY_DIR: wideDir, CAPVEND_TOKEN_TTL: "10m" };
  [a, b] = await Promise.all([startReplica({ id: "policy-a", natsUrl: nats.url, env }), startReplica({ id: "policy-b", natsUrl: nats.url, env })]);
}, 60_000);

afterAll(async () => {
  for (const s of streams) s.stop();
  await Promise.all([a?.cleanup(), b?.cleanup()]);
  await nats?.cleanup();
  if (wideDir) await cleanup(wideDir);
  if (narrowDir) await cleanup(narrowDir);
});

function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, "dist/src/cli.js"), ...args], {
      cwd: ROOT,
      // A NATS deadline for a loaded machine (the default, 2 s, is for a server, not this test).
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? os.tmpdir(), CAPVEND_NATS_TIMEOUT: "15s", ...env },
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

async function policyVersionOn(r: ReplicaProcess): Promise<string> {
  const body = (await (await fetch(`${r.url}/healthz`)).json()) as { policy: { version: string } };
  return body.policy.version;
}

function watchOn(r: ReplicaProcess, credential: string): Collected {
  const runtime = r.client(credential);
  const s = collect((signal) => runtime.watchSession({ grants: GRANTS }, { signal }));
  streams.push(s);
  return s;
}

describe("policy push on NATS", () => {
  it("brings both replicas to the pushed version; drift revocations reach streams on both, and each other's feed", async () => {
    expect(await policyVersionOn(a)).toBe(policyVersionOf({ files: WIDE }));
    expect(await policyVersionOn(b)).toBe(policyVersionOf({ files: WIDE }));

    // A session streamed on A and one streamed on B, each with crm read+write and calendar.
    const onA = await a.orchestrator.startSession({ agentId: "bot", userId: "alice", grants: GRANTS });
    const onB = await b.orchestrator.startSession({ agentId: "bot", userId: "bob", grants: GRANTS });
    const streamA = watchOn(a, onA.sessionCredential);
    const streamB = watchOn(b, onB.sessionCredential);
    await streamA.until(() => streamA.of("tokenIssued").length >= 2, "the first tokens on A");
    await streamB.until(() => streamB.of("tokenIssued").length >= 2, "the first tokens on B");
    const crmOnA = streamA.of("tokenIssued").find((t) => t.grantIndex === 0)!.token!;
    const gatewayB = b.orchestrator;
    expect((await gatewayB.introspect({ token: crmOnA.accessToken })).active).toBe(true);

    // A broken set is refused before it is published.
    const brokenDir = await policyDir({ "a.cedar": "permit (principal, action" });
    try {
      const broken = await cli(["policy", "push", brokenDir], { NATS_URL: nats.url });
      expect(broken.code).toBe(1);
      expect(broken.out).not.toContain("pushed");
    } finally {
      await cleanup(brokenDir);
    }
    expect(await policyVersionOn(a)).toBe(policyVersionOf({ files: WIDE }));

    // Push the narrower set and wait for every replica to report it.
    const pushed = await cli(["policy", "push", narrowDir, "--wait", "20s"], { NATS_URL: nats.url });
    expect(pushed.err).toBe("");
    expect(pushed.code).toBe(0);
    const version = policyVersionOf({ files: NARROW });
    expect(pushed.out).toContain(`pushed: version ${version}`);
    expect(pushed.out).toMatch(/every replica runs [0-9a-f]{16}: policy-a, policy-b/);
    expect(await policyVersionOn(a)).toBe(version);
    expect(await policyVersionOn(b)).toBe(version);

    // Each replica revoked the crm grant (write is no longer allowed) on its own stream; calendar lives on.
    for (const s of [streamA, streamB]) {
      await s.until(() => s.of("tokensRevoked").length > 0, "the POLICY_CHANGED revocation");
      const revoked = s.of("tokensRevoked")[0]!;
      expect(revoked.grantIndexes).toEqual([0]);
      expect(revoked.reason.startsWith(POLICY_CHANGED)).toBe(true);
      expect(s.ended).toBe(false);
    }
    // A's revocation reached B through the shared feed: B now answers inactive for A's token.
    await waitFor(async () => !(await gatewayB.introspect({ token: crmOnA.accessToken })).active, "B to see A's drift revocation");
    // And a runtime that moves from A to B (keeping only the grant still allowed) hears it on replay.
    const revokedAt = streamA.messages.findIndex((m) => m.event.case === "tokensRevoked");
    const before = streamA.messages[revokedAt - 1]!.resumeToken;
    const runtime = b.client(onA.sessionCredential);
    const resumed = collect((signal) => runtime.watchSession({ grants: [GRANTS[1]!], resumeToken: before }, { signal }));
    streams.push(resumed);
    await resumed.until(() => resumed.of("tokensRevoked").some((r) => r.tokenIds.includes(crmOnA.tokenId)), "the replayed drift revocation");
    expect(resumed.of("tokensRevoked").find((r) => r.tokenIds.includes(crmOnA.tokenId))!.reason.startsWith(POLICY_CHANGED)).toBe(true);
  }, 90_000);
});

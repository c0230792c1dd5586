/**
 * Re-evaluation after a policy change: 5,000 streams of 2 grants each (10,000 live grants)
 * on one replica, held in process (no transport, so the figure is the re-evaluation's own).
 * Prints the time of a pass that revokes nothing (the policy widened), of a pass that
 * revokes half the grants (each a feed publish and an audit append), the event loop's
 * longest stall during each pass (how much the request path felt it), and the same-run
 * baseline of 10,000 bare Cedar decisions in a loop.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createMemoryAuditSink } from "../src/audit/memory-sink.js";
import { systemClock } from "../src/clock.js";
import { loadConfig } from "../src/config/config.js";
import type { WatchSessionResponse } from "../src/gen/capvend/v1/vending_pb.js";
import { openKeyRing } from "../src/keys/key-ring.js";
import { createLogger } from "../src/logging/logger.js";
import { loadPolicyEngine } from "../src/policy/engine.js";
import { MemoryRevocationList } from "../src/backends/memory/memory-revocation-list.js";
import { createCapvendServer } from "../src/server.js";
import { scopeRequest } from "../src/policy/requests.js";
import { MemorySessionStore } from "../src/backends/memory/memory-session-store.js";
import type { SessionRecord } from "../src/backends/types.js";

const STREAMS = 5000;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ORCH = '@id("orchestrator") permit (principal == Orchestrator::"dev", action, resource);\n';
const CRM_RW = '@id("crm") permit (principal == Agent::"bot", action in [Action::"read", Action::"write"], resource == Resource::"crm");\n';
const CRM_R = '@id("crm-read") permit (principal == Agent::"bot", action == Action::"read", resource == Resource::"crm");\n';
const CAL = '@id("cal") permit (principal == Agent::"bot", action == Action::"read", resource == Resource::"calendar");\n';
const EXTRA = '@id("extra") permit (principal == Agent::"bot", action == Action::"delete", resource == Resource::"crm");\n';
const GRANTS = [
  { resource: "crm", scopes: ["read", "write"] },
  { resource: "calendar", scopes: ["read"] },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

type Run = { widen: number; widenStall: number; narrow: number; narrowStall: number; delivered: number; revoked: number; baseline: number };

async function once(): Promise<Run> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-bench-drift-"));
  const policyDir = path.join(dataDir, "policy");
  await mkdir(policyDir);
  await writeFile(path.join(policyDir, "a.cedar"), ORCH + CRM_RW + CAL);
  const config = loadConfig({ CAPVEND_DATA_DIR: dataDir, CAPVEND_TOKEN_TTL: "30m", CAPVEND_MAX_TOKEN_TTL: "1h" });
  const clock = systemClock;
  const policy = await loadPolicyEngine({ dir: policyDir, clock });
  const keyRing = await openKeyRing({ dataDir, alg: "EdDSA", clock, maxTokenTtlMs: config.maxTokenTtlMs });
  const sessions = new MemorySessionStore(clock);
  const revocations = new MemoryRevocationList(clock);
  const audit = createMemoryAuditSink({ clock });
  const server = await createCapvendServer({
    settings: config,
    clock,
    logger: createLogger({ level: "silent", replica: "bench" }),
    orchestratorHashes: new Map(),
    policy,
    keyRing,
    sessions,
    revocations,
    audit,
  });
  // One signal per call, as the transport gives each stream its own.
  const calls: AbortController[] = [];
  let revokedSeen = 0;
  let allDelivered: () => void = () => undefined;
  const delivered = new Promise<void>((r) => (allDelivered = r));
  const opened: Promise<void>[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const now = clock.now();
    const s: SessionRecord = { id: `ses_bench${i}`, agentId: "bot", userId: `user${i}`, grants: GRANTS, labels: {}, credentialHash: "x", startedBy: "dev", createdAt: now, expiresAt: now + 3600_000 };
    await sessions.create(s);
    const ac = new AbortController();
    calls.push(ac);
    const gen = server.hub.open({ session: s, grants: GRANTS }, { signal: ac.signal }, () => undefined);
    opened.push(
      new Promise<void>((ready) => {
        let tokens = 0;
        void (async () => {
          for await (const m of gen as AsyncIterable<WatchSessionResponse>) {
            if (m.event.case === "tokenIssued" && ++tokens === 2) ready();
            if (m.event.case === "tokensRevoked" && ++revokedSeen === STREAMS) allDelivered();
          }
        })().catch(() => undefined);
      }),
    );
  }
  await Promise.all(opened);

  // Baseline: the bare decisions one pass makes (2 grants × 1-2 scopes → 15,000), in a loop.
  const sample: SessionRecord = { id: "ses_x", agentId: "bot", userId: "u", grants: GRANTS, labels: {}, credentialHash: "x", startedBy: "dev", createdAt: 0, expiresAt: 0 };
  let t = performance.now();
  for (let i = 0; i < STREAMS; i++) {
    for (const g of GRANTS) for (const sc of g.scopes) policy.authorize(scopeRequest(sample, g.resource, sc, 1800));
  }
  const baseline = performance.now() - t;

  const pass = async (files: string): Promise<{ ms: number; stall: number }> => {
    await writeFile(path.join(policyDir, "a.cedar"), files);
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    t = performance.now();
    await policy.reload();
    const report = await server.hub.reevaluatePolicy();
    const ms = report?.durationMs ?? performance.now() - t;
    h.disable();
    return { ms, stall: h.max / 1e6 };
  };
  const widen = await pass(ORCH + CRM_RW + CAL + EXTRA);
  const revokedBefore = revokedSeen;
  const start = performance.now();
  const narrow = await pass(ORCH + CRM_R + CAL + EXTRA);
  await delivered;
  const deliveredMs = performance.now() - start;
  const revoked = revocations.size;
  if (revokedBefore !== 0) throw new Error("the widening pass revoked something");

  for (const c of calls) c.abort();
  await server.close(100);
  policy.close();
  keyRing.close();
  await revocations.close();
  await sessions.close();
  await audit.close();
  await rm(dataDir, { recursive: true, force: true });
  return { widen: widen.ms, widenStall: widen.stall, narrow: narrow.ms, narrowStall: narrow.stall, delivered: deliveredMs, revoked, baseline };
}

export async function main(): Promise<void> {
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await once());
  const m = (k: keyof Run) => median(runs.map((r) => r[k])).toFixed(1);
  process.stdout.write(`policy re-evaluation of ${STREAMS * 2} live grants on ${STREAMS} streams (median of ${RUNS} runs)\n`);
  process.stdout.write(`  baseline: ${STREAMS * 3} bare Cedar decisions in a loop          ${m("baseline")} ms\n`);
  process.stdout.write(`  policy widened (nothing revoked): pass                  ${m("widen")} ms, longest event-loop stall ${m("widenStall")} ms\n`);
  process.stdout.write(`  policy narrowed (${runs[0]!.revoked} tokens revoked): pass             ${m("narrow")} ms, longest event-loop stall ${m("narrowStall")} ms\n`);
  process.stdout.write(`  narrowed: from reload until every stream got its revocation  ${m("delivered")} ms\n`);
}

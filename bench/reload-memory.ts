/**
 * Memory across policy reloads: a 300-policy set reloaded 60 times by one engine (which
 * re-preparses into its one cedar-wasm slot) against the same set preparsed 60 times under
 * fresh names in the same run (what a name per reload would cost: cedar-wasm keeps every
 * name for good). RSS growth in MB after 10 warm-up reloads.
 *
 * This figure used to be a bound in test/policy/reload.test.ts; the test now checks that no
 * slot is minted, and the memory lives here. Run the baseline last: its growth is permanent.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { preparsePolicySet } from "@cedar-policy/cedar-wasm/nodejs";
import { loadPolicyEngine } from "../src/policy/engine.js";

const POLICIES = 300;
const RELOADS = 60;
const WARMUP = 10;

const gc = (globalThis as { gc?: () => void }).gc;
const rssMb = () => {
  gc?.();
  return process.memoryUsage().rss / 1e6;
};

export async function main(): Promise<void> {
  const text = Array.from(
    { length: POLICIES },
    (_, i) => `permit (principal == Agent::"a${i}", action in [Action::"read", Action::"write"], resource == Resource::"r${i}") when { context.ttl_seconds <= ${i} };`,
  ).join("\n");
  const dir = await mkdtemp(path.join(os.tmpdir(), "capvend-bench-reload-"));
  await writeFile(path.join(dir, "many.cedar"), text);
  const engine = await loadPolicyEngine({ dir });
  try {
    for (let i = 0; i < WARMUP; i++) await engine.reload();
    const before = rssMb();
    for (let i = 0; i < RELOADS; i++) {
      const r = await engine.reload();
      if (!r.ok) throw new Error(`reload failed: ${r.error.message}`);
    }
    const engineGrowth = rssMb() - before;

    const policies = { staticPolicies: text };
    for (let i = 0; i < WARMUP; i++) preparsePolicySet(`bench-warmup-${i}`, policies);
    const baseBefore = rssMb();
    for (let i = 0; i < RELOADS; i++) preparsePolicySet(`bench-fresh-${i}`, policies);
    const freshGrowth = rssMb() - baseBefore;

    process.stdout.write(`${RELOADS} reloads of ${POLICIES} policies, RSS growth after ${WARMUP} warm-up reloads:\n`);
    process.stdout.write(`  engine (one slot, re-preparsed):          ${engineGrowth.toFixed(1)} MB\n`);
    process.stdout.write(`  baseline (a fresh name per reload):       ${freshGrowth.toFixed(1)} MB\n`);
  } finally {
    engine.close();
    await rm(dir, { recursive: true, force: true });
  }
}

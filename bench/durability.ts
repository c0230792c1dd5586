/**
 * The cost of the audit checkpoints and of the durable embedded store, against the in-memory
 * store, in one run. Three servers (real HTTP/2, Connect protocol), all with the file audit
 * log at durability "fsync":
 *
 *   memory       in-memory sessions and revocations, checkpoints off   (the baseline)
 *   checkpoints  in-memory sessions and revocations, signed checkpoints every 200 ms
 *   durable      journaled sessions and revocations (fsync) + checkpoints: the default
 *                without NATS
 *
 * Two workloads: "issuance" (IssueToken on open sessions: writes only the audit log) and
 * "lifecycle" (StartSession, IssueToken, Revoke by token id: each also writes the store).
 * Runs are interleaved; each figure is the median of RUNS runs of RUN_MS. Files go under
 * $CAPVEND_BENCH_DIR or the OS temp dir (fsync figures mean nothing on tmpfs).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createFileAuditSink } from "../src/audit/file-sink.js";
import { sha256Hex } from "../src/auth/credentials.js";
import { systemClock } from "../src/clock.js";
import { DEFAULT_POLICY_DIR, loadConfig } from "../src/config/config.js";
import { VendingService } from "../src/gen/capvend/v1/vending_pb.js";
import { openKeyRing } from "../src/keys/key-ring.js";
import { createLogger } from "../src/logging/logger.js";
import { loadPolicyEngine } from "../src/policy/engine.js";
import { FileRevocationList } from "../src/backends/file/file-revocation-list.js";
import { MemoryRevocationList } from "../src/backends/memory/memory-revocation-list.js";
import { createCapvendServer } from "../src/server.js";
import { FileSessionStore } from "../src/backends/file/file-session-store.js";
import { MemorySessionStore } from "../src/backends/memory/memory-session-store.js";

const TOKEN = "bench-orchestrator-token-0123456789";
const RUNS = 5;
const RUN_MS = Number(process.env.CAPVEND_BENCH_MS ?? 1500);
const CONCURRENCY = 32;
const SESSIONS = 64;

type VariantKey = "memory" | "checkpoints" | "durable";
const VARIANTS: { key: VariantKey; label: string }[] = [
  { key: "memory", label: "memory store, no checkpoints" },
  { key: "checkpoints", label: "memory store + checkpoints" },
  { key: "durable", label: "durable store + checkpoints" },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function open(key: VariantKey, base: string) {
  const dataDir = await mkdtemp(path.join(base, `${key}-`));
  const config = loadConfig({ CAPVEND_DATA_DIR: dataDir });
  const clock = systemClock;
  const policy = await loadPolicyEngine({ dir: DEFAULT_POLICY_DIR, clock });
  const keyRing = await openKeyRing({ dataDir, alg: "EdDSA", clock, maxTokenTtlMs: config.maxTokenTtlMs });
  const audit = await createFileAuditSink({ dir: dataDir, replica: "bench", durability: "fsync", checkpoints: key === "memory" ? false : {} });
  const durable = key === "durable";
  const sessions = durable ? await FileSessionStore.open({ dataDir, clock }) : new MemorySessionStore(clock);
  const revocations = durable ? await FileRevocationList.open({ dataDir, clock }) : new MemoryRevocationList(clock);
  const server = await createCapvendServer({
    settings: config,
    clock,
    logger: createLogger({ level: "silent", replica: "bench" }),
    orchestratorHashes: new Map([["dev", sha256Hex(TOKEN)]]),
    policy,
    keyRing,
    sessions,
    revocations,
    audit,
  });
  const addr = await server.listen("127.0.0.1", 0);
  const url = `http://127.0.0.1:${addr.port}`;
  const bearer = (t: string): Interceptor => (next) => (req) => {
    req.header.set("authorization", `Bearer ${t}`);
    return next(req);
  };
  const client = (t: string): Client<typeof VendingService> => createClient(VendingService, createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors: [bearer(t)] }));
  const orchestrator = client(TOKEN);
  const grants = [{ resource: "salesforce", scopes: ["read"] }];
  const runtimes: Client<typeof VendingService>[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const s = await orchestrator.startSession({ agentId: "sales-bot", userId: `user-${i}`, grants });
    runtimes.push(client(s.sessionCredential));
  }
  return {
    async issuance(ms: number): Promise<number> {
      let n = 0;
      const end = performance.now() + ms;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async (_, i) => {
          const rt = runtimes[i % runtimes.length]!;
          while (performance.now() < end) {
            await rt.issueToken({ resource: "salesforce", scopes: ["read"] });
            n++;
          }
        }),
      );
      return n / ((performance.now() - start) / 1000);
    },
    async lifecycle(ms: number): Promise<number> {
      let n = 0;
      const end = performance.now() + ms;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async (_, i) => {
          while (performance.now() < end) {
            const s = await orchestrator.startSession({ agentId: "sales-bot", userId: `u-${i}`, grants });
            const { token } = await client(s.sessionCredential).issueToken({ resource: "salesforce", scopes: ["read"] });
            await orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId } });
            n++;
          }
        }),
      );
      return n / ((performance.now() - start) / 1000);
    },
    async close() {
      await server.close(1000);
      await audit.close();
      await sessions.close();
      await revocations.close();
      policy.close();
      keyRing.close();
    },
  };
}

/** Prints calls/s per variant and workload (median of RUNS), and each variant's ratio to "memory". */
export async function main(): Promise<void> {
  const base = await mkdtemp(path.join(process.env.CAPVEND_BENCH_DIR ?? os.tmpdir(), "capvend-durability-bench-"));
  try {
    process.stdout.write(
      `durability benchmark: file audit (fsync) with and without checkpoints, memory vs durable store; HTTP/2, ${CONCURRENCY} callers; ${RUNS} interleaved runs x ${RUN_MS} ms; node ${process.version}, ${os.cpus().length} cpus\n`,
    );
    const servers = new Map<VariantKey, Awaited<ReturnType<typeof open>>>();
    for (const v of VARIANTS) servers.set(v.key, await open(v.key, base));
    for (const s of servers.values()) {
      await s.issuance(300);
      await s.lifecycle(300);
    }
    for (const workload of ["issuance", "lifecycle"] as const) {
      const rates = new Map<VariantKey, number[]>(VARIANTS.map((v) => [v.key, []]));
      for (let i = 0; i < RUNS; i++) for (const v of VARIANTS) rates.get(v.key)!.push(await servers.get(v.key)![workload](RUN_MS));
      const baseline = median(rates.get("memory")!);
      process.stdout.write(`\n${workload === "issuance" ? "issuance: IssueToken calls/s" : "lifecycle: StartSession+IssueToken+Revoke per s"}\n`);
      process.stdout.write(`${"variant".padEnd(32)}   median       min       max   ratio to memory\n`);
      for (const v of VARIANTS) {
        const xs = rates.get(v.key)!;
        const m = median(xs);
        process.stdout.write(
          `${v.label.padEnd(32)} ${Math.round(m).toString().padStart(8)}  ${Math.round(Math.min(...xs)).toString().padStart(8)}  ${Math.round(Math.max(...xs)).toString().padStart(8)}   ${(m / baseline).toFixed(3)}\n`,
        );
      }
    }
    for (const s of servers.values()) await s.close();
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

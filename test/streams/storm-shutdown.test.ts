/**
 * A small reconnect storm against a real `capvend serve` process, then SIGTERM: every stream
 * dropped at once on one connection and resumed on a new one, none failing, and the server
 * exits cleanly afterwards (a storm used to leave it spinning in native code with memory
 * growing, deaf to SIGTERM). The process's memory is watched: past a generous bound the test
 * fails and the process is killed, rather than the test hanging.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { VendingService } from "../../src/gen/capvend/v1/vending_pb.js";
import { RAPID_RESET_MAX_AGE_MS } from "../../src/transport/http2-guard.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { rssBytes as rss } from "../helpers/process-memory.js";

const STREAMS = 200;
/** The server's resident memory past which it counts as runaway: several times what it needs. */
const RUNAWAY_RSS_BYTES = 1536 * 1024 * 1024;
const grants = [{ resource: "calendar", scopes: ["read"], ttl: { seconds: 60n } }];


interface Held {
  credential: string;
  resumeToken: string;
}

/** Opens one stream per held session on one new connection; resolves with the outcome once each has a first token or failed. */
function openAll(client: Client<typeof VendingService>, held: Held[], resume: boolean, aborts: AbortController[]) {
  let ok = 0;
  const errors: string[] = [];
  return new Promise<{ ok: number; errors: string[] }>((resolve) => {
    const settle = () => ok + errors.length === held.length && resolve({ ok, errors });
    for (const h of held) {
      const abort = new AbortController();
      aborts.push(abort);
      void (async () => {
        let first = true;
        try {
          for await (const m of client.watchSession(
            { grants, resumeToken: resume ? h.resumeToken : "" },
            { signal: abort.signal, headers: { authorization: `Bearer ${h.credential}` } },
          )) {
            if (m.resumeToken) h.resumeToken = m.resumeToken;
            if (m.event.case === "tokenIssued" && first) {
              first = false;
              ok++;
              settle();
            }
          }
        } catch (err) {
          if (first && !abort.signal.aborted) {
            first = false;
            errors.push((err as Error).message);
            settle();
          }
        }
      })();
    }
  });
}

describe("a reconnect storm, then SIGTERM", () => {
  let replica: ReplicaProcess;
  beforeAll(async () => {
    replica = await startReplica();
  }, 60_000);
  afterAll(async () => {
    await replica?.cleanup();
  });

  it(`resumes ${STREAMS} streams dropped at once with no failure, and exits 0 on SIGTERM`, { timeout: 120_000 }, async () => {
    let timer: NodeJS.Timeout | undefined;
    const runaway = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        const bytes = rss(replica.pid);
        if (bytes > RUNAWAY_RSS_BYTES) {
          void replica.kill("SIGKILL");
          reject(new Error(`server memory ran away: ${Math.round(bytes / 1048576)} MiB`));
        }
      }, 50);
    });
    const bounded = <T>(p: Promise<T>) => Promise.race([p, runaway]);
    try {
      const held: Held[] = [];
      for (let i = 0; i < STREAMS; i += 20) {
        const batch = await bounded(
          Promise.all(Array.from({ length: 20 }, (_, j) => replica.orchestrator.startSession({ agentId: "sales-bot", userId: `user-${i + j}`, grants }))),
        );
        for (const s of batch) held.push({ credential: s.sessionCredential, resumeToken: "" });
      }
      const aborts: AbortController[] = [];
      const first = await bounded(openAll(createClient(VendingService, createGrpcTransport({ baseUrl: replica.url })), held, false, aborts));
      expect(first).toEqual({ ok: STREAMS, errors: [] });
      // Held past the rapid-reset age (a bound, not a measurement): a runtime dropping its
      // watches, not a rapid-reset attack, so its address stays welcome.
      await new Promise((r) => setTimeout(r, RAPID_RESET_MAX_AGE_MS + 200));
      for (const a of aborts.splice(0)) a.abort();
      const resumed = await bounded(openAll(createClient(VendingService, createGrpcTransport({ baseUrl: replica.url })), held, true, aborts));
      expect(resumed).toEqual({ ok: STREAMS, errors: [] });
      // SIGTERM with every resumed stream open: the server drains them and exits 0.
      await bounded(replica.kill("SIGTERM"));
      await expect(bounded(replica.exited)).resolves.toBe(0);
      for (const a of aborts) a.abort();
    } finally {
      clearInterval(timer);
    }
  });
});

/**
 * Child process of bench/streams.ts: opens N WatchSession streams against a server and
 * keeps them open, so the server's memory can be measured without the client's in it.
 * Protocol on stdout: "sessions <n>" once the sessions exist; after a line on stdin,
 * "ready <n>" once every stream has its first token, then
 * "renewal <ms before expiry>" for each renewal when asked to watch renewals.
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { VendingService } from "../src/gen/capvend/v1/vending_pb.js";
import { Health } from "../src/gen/grpc/health/v1/health_pb.js";

const [url, orchestratorToken, countText, ttlText] = process.argv.slice(2);
const count = Number(countText);
const ttlSeconds = Number(ttlText);
const bearer = (token: string) => createGrpcTransport({ baseUrl: url!, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] });
const orchestrator = createClient(VendingService, bearer(orchestratorToken!));
/** Connections the streams share: the server allows 256 per client address. */
const CONNECTIONS = 20;
/** Health streams per connection: the server allows 16 unauthenticated streams on one. */
const HEALTH_PER_CONNECTION = 16;

if (ttlText === "health") {
  // Baseline: N bare server streams (grpc.health.v1 Watch) that hold no capvend state.
  const healths = Array.from({ length: Math.ceil(count / HEALTH_PER_CONNECTION) }, () => createClient(Health, createGrpcTransport({ baseUrl: url! })));
  let open = 0;
  process.stdout.write(`sessions 0\n`);
  await new Promise((resolve) => process.stdin.once("data", resolve));
  for (let i = 0; i < count; i++) {
    const health = healths[Math.floor(i / HEALTH_PER_CONNECTION)]!;
    void (async () => {
      for await (const _ of health.watch({ service: "" })) if (++open === count) process.stdout.write(`ready ${count}\n`);
    })();
  }
  await new Promise(() => undefined);
}

let ready = 0;
const expiries = new Map<number, number>();
// Sessions first, then (on a line from stdin) their streams: the parent measures each step.
const credentials: string[] = [];
for (let i = 0; i < count; i++) {
  const s = await orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "calendar", scopes: ["read"], ttl: { seconds: BigInt(ttlSeconds) } }] });
  credentials.push(s.sessionCredential);
}
process.stdout.write(`sessions ${count}\n`);
await new Promise((resolve) => process.stdin.once("data", resolve));
const runtimes = Array.from({ length: CONNECTIONS }, () => createClient(VendingService, createGrpcTransport({ baseUrl: url! })));
for (let i = 0; i < count; i++) {
  const runtime = runtimes[i % CONNECTIONS]!;
  void (async () => {
    let first = true;
    const grants = [{ resource: "calendar", scopes: ["read"], ttl: { seconds: BigInt(ttlSeconds) } }];
    for await (const m of runtime.watchSession({ grants }, { headers: { authorization: `Bearer ${credentials[i]!}` } })) {
      if (m.event.case !== "tokenIssued") continue;
      const exp = Number(m.event.value.token!.expiresAt!.seconds) * 1000;
      if (first) {
        first = false;
        if (++ready === count) process.stdout.write(`ready ${count}\n`);
      } else {
        process.stdout.write(`renewal ${expiries.get(i)! - Date.now()}\n`);
      }
      expiries.set(i, exp);
    }
  })();
}

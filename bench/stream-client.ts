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

if (ttlText === "health") {
  // Baseline: N bare server streams (grpc.health.v1 Watch) that hold no capvend state.
  const health = createClient(Health, bearer(""));
  let open = 0;
  process.stdout.write(`sessions 0\n`);
  await new Promise((resolve) => process.stdin.once("data", resolve));
  for (let i = 0; i < count; i++) {
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
for (let i = 0; i < count; i++) {
  const runtime = createClient(VendingService, bearer(credentials[i]!));
  void (async () => {
    let first = true;
    for await (const m of runtime.watchSession({ grants: [{ resource: "calendar", scopes: ["read"], ttl: { seconds: BigInt(ttlSeconds) } }] })) {
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

/**
 * Child process of bench/limits.ts: one session's burst of WatchSession opens, from its own
 * process as an attacker's would be, so the server's event loop carries only the server's
 * side of it. Protocol: prints "ready" once connected; on each line "burst <n>" from stdin,
 * opens n streams at once and prints "done <opened> <refused> <reason=count,...>" when every
 * one has its first token or its refusal; the opened streams are then closed.
 */
import { createInterface } from "node:readline";
import { setMaxListeners } from "node:events";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { errorInfoOf } from "../src/errors.js";
import { VendingService } from "../src/gen/capvend/v1/vending_pb.js";

const [url, credential] = process.argv.slice(2);
const client = createClient(
  VendingService,
  createGrpcTransport({ baseUrl: url!, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${credential}`), next(req))] }),
);
const grants = [{ resource: "calendar", scopes: ["read"] }];
// One call first, so the burst does not include the connection's setup.
await client.issueToken({ resource: "calendar", scopes: ["read"] });
process.stdout.write("ready\n");

for await (const line of createInterface({ input: process.stdin })) {
  const n = Number(/^burst (\d+)$/.exec(line)?.[1] ?? 0);
  if (n === 0) break;
  const abort = new AbortController();
  setMaxListeners(0, abort.signal);
  let opened = 0;
  const refused = new Map<string, number>();
  await Promise.all(
    Array.from({ length: n }, async () => {
      try {
        for await (const m of client.watchSession({ grants }, { signal: abort.signal })) {
          if (m.event.case === "tokenIssued") {
            opened++;
            return;
          }
        }
      } catch (err) {
        const reason = errorInfoOf(err)?.reason ?? String((err as Error).message);
        refused.set(reason, (refused.get(reason) ?? 0) + 1);
      }
    }),
  );
  abort.abort();
  const total = [...refused.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(`done ${opened} ${total} ${[...refused].map(([r, k]) => `${r}=${k}`).join(",")}\n`);
}
process.exit(0);

// Test fixture (not a test file): a tiny service built on the generated Health descriptor,
// with behaviours selected by the request's `service` field, and helpers to run servers.
import { execFile } from "node:child_process";
import { setTimeout as delay } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { createContextKey, createContextValues } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../../src/gen/grpc/health/v1/health_pb.js";
import { shutdownSignalKey } from "../../src/transport/shutdown-context.js";
import { createTransportServer } from "../../src/transport/transport-server.js";
import type { TransportServer, TransportServerOptions } from "../../src/transport/transport-server.js";
import type { HttpRoute } from "../../src/transport/http-routes.js";

/** What the server saw for one call. */
export interface CallRecord {
  method: "check" | "watch";
  protocol: string;
  httpVersion: string;
  service: string;
}

/** Per-call HTTP version, filled by the test `contextValues` from the Node request. */
export const httpVersionKey = createContextKey<string>("unset");

/** Shared state the test handlers report into. */
export interface TestProbe {
  calls: CallRecord[];
  /** Watch("flood") streams started and not yet cancelled (their ctx.signal not aborted). */
  floodsRunning: number;
  /** Watch("until-shutdown") streams that saw the shutdown signal. */
  sawShutdown: number;
}

export function createProbe(): TestProbe {
  return { calls: [], floodsRunning: 0, sawShutdown: 0 };
}

const bigPadding = new BinaryWriter().bytes(new Uint8Array(64 * 1024)).finish();

/**
 * Check: "slow:<ms>" sleeps, "" and anything else answers SERVING.
 * Watch: "until-shutdown" sends SERVING, waits for the server's shutdown signal, sends
 * NOT_SERVING and ends; "flood" sends 64 KiB messages as fast as the peer takes them and
 * ignores shutdown; anything else sends SERVING and waits for cancellation.
 */
export function testRoutes(probe: TestProbe) {
  return (router: ConnectRouter) =>
    router.service(Health, {
      async check(req, ctx) {
        probe.calls.push({ method: "check", protocol: ctx.protocolName, httpVersion: ctx.values.get(httpVersionKey), service: req.service });
        const slow = /^slow:(\d+)$/.exec(req.service);
        if (slow) await delay(Number(slow[1]));
        return { status: ServingStatus.SERVING };
      },
      async *watch(req, ctx) {
        probe.calls.push({ method: "watch", protocol: ctx.protocolName, httpVersion: ctx.values.get(httpVersionKey), service: req.service });
        if (req.service === "flood") {
          // Counted down on cancellation, not in `finally`: a generator parked in a write the
          // peer never drains may never resume, and that is connect-node's business.
          probe.floodsRunning++;
          ctx.signal.addEventListener("abort", () => probe.floodsRunning--, { once: true });
          while (!ctx.signal.aborted) {
            const msg = create(HealthCheckResponseSchema, { status: ServingStatus.SERVING });
            msg.$unknown = [{ no: 99, wireType: WireType.LengthDelimited, data: bigPadding }];
            yield msg;
          }
          return;
        }
        yield { status: ServingStatus.SERVING };
        const signals = req.service === "until-shutdown" ? [ctx.signal, ctx.values.get(shutdownSignalKey)] : [ctx.signal];
        await untilAborted(signals);
        if (!ctx.signal.aborted) {
          probe.sawShutdown++;
          yield { status: ServingStatus.NOT_SERVING };
        }
      },
    });
}

function untilAborted(signals: AbortSignal[]): Promise<void> {
  return new Promise((resolve) => {
    if (signals.some((s) => s.aborted)) return resolve();
    const done = () => {
      for (const s of signals) s.removeEventListener("abort", done);
      resolve();
    };
    for (const s of signals) s.addEventListener("abort", done);
  });
}

/** GET /healthz → 200 "ok"; GET /boom → throws. */
export const testHttpRoutes: HttpRoute[] = [
  {
    method: "GET",
    path: "/healthz",
    handle(req, res) {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`ok ${req.httpVersion}`);
    },
  },
  {
    method: "GET",
    path: "/boom",
    async handle() {
      throw new Error("route exploded");
    },
  },
];

/** Starts a transport server on 127.0.0.1:0 with the test routes. */
export async function startTestServer(
  probe: TestProbe,
  extra: Partial<TransportServerOptions> = {},
): Promise<{ server: TransportServer; port: number; errors: unknown[] }> {
  const errors: unknown[] = [];
  const server = createTransportServer({
    routes: testRoutes(probe),
    httpRoutes: testHttpRoutes,
    contextValues: (req) => createContextValues().set(httpVersionKey, req.httpVersion),
    onError: (error) => errors.push(error),
    ...extra,
  });
  const address = await server.listen("127.0.0.1", 0);
  return { server, port: address.port, errors };
}

/** Runs a program without blocking the event loop (the server under test lives in this process). */
export function run(file: string, args: string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, encoding: "utf8" }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Encodes a HealthCheckRequest{service} into a 5-byte-prefixed envelope (gRPC / Connect streaming). */
export function envelope(service: string): Buffer {
  const payload = new BinaryWriter().tag(1, WireType.LengthDelimited).string(service).finish();
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

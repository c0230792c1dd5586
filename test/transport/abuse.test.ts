/**
 * The abuse suite: clients that misbehave on purpose, loopback only, bounded in count and
 * time. Each test waits on events (a socket closing, a stream ending), never on the clock;
 * the limits are set small so the waits are short.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { HTTP2_PREFACE } from "../../src/transport/sniff-protocol.js";
import type { TransportServer } from "../../src/transport/transport-server.js";
import { createProbe, envelope, startTestServer } from "./test-routes.js";
import { waitFor } from "../helpers/wait.js";

/** A full garbage collection, so heap figures compare live objects only. */
const collectGarbage: () => void = (() => {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
})();

/** Resolves when `socket` closes; rejects if it is still open after `capMs` (a bound, not a measurement). */
function closed(socket: net.Socket, capMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve();
    const t = setTimeout(() => reject(new Error("connection was not closed")), capMs);
    socket.once("close", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

function connect(port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", localAddress });
    s.on("error", () => undefined);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

async function checkServing(port: number): Promise<ServingStatus> {
  const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
  return (await client.check({ service: "" })).status;
}

describe("slow and idle connections", () => {
  let server: TransportServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startTestServer(createProbe(), {
      firstBytesTimeoutMs: 300,
      http1HeadersTimeoutMs: 300,
      limits: { firstRequestTimeoutMs: 300, idleTimeoutMs: 300 },
    }));
  });
  afterAll(async () => {
    await server.close(1000);
  });

  it("closes a connection that trickles the preface, however often a byte arrives", async () => {
    const s = await connect(port);
    let i = 0;
    const trickle = setInterval(() => {
      if (i < HTTP2_PREFACE.length - 1 && !s.destroyed) s.write(HTTP2_PREFACE.subarray(i, ++i));
    }, 50);
    try {
      await closed(s);
    } finally {
      clearInterval(trickle);
    }
    // Far fewer bytes than the preface: the deadline is absolute, not reset by each byte.
    expect(i).toBeLessThan(HTTP2_PREFACE.length - 1);
  });

  it("closes an HTTP/2 connection that sends the preface and never a request", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
    await new Promise<void>((resolve) => session.once("close", () => resolve()));
    expect(server.limitStats.firstRequestTimeouts).toBeGreaterThanOrEqual(1);
  });

  it("closes an HTTP/2 connection once it has had no open stream for the idle timeout", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
    const req = session.request({ ":method": "GET", ":path": "/healthz" });
    req.resume();
    await new Promise((r) => req.once("close", r));
    await new Promise<void>((resolve) => session.once("close", () => resolve()));
    expect(server.limitStats.idleClosed).toBeGreaterThanOrEqual(1);
  });

  it("closes an HTTP/1.1 connection whose headers trickle in past the headers deadline", async () => {
    const s = await connect(port);
    s.write("GET /healthz HTTP/1.1\r\n");
    const trickle = setInterval(() => !s.destroyed && s.write("x-slow: 1\r\n"), 50);
    try {
      await closed(s);
    } finally {
      clearInterval(trickle);
    }
  });
});

describe("connection and stream floods", () => {
  let server: TransportServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startTestServer(createProbe(), {
      limits: { maxConnections: 60, maxConnectionsPerAddress: 20, maxUnauthenticatedStreams: 8, maxConcurrentStreams: 50 },
    }));
  });
  afterAll(async () => {
    await server.close(1000);
  });

  it("holds a connection flood from one address at its limit while another client still gets answers", async () => {
    // The flood comes from 127.0.0.2; the honest client from 127.0.0.1.
    const flood = await Promise.all(Array.from({ length: 100 }, () => connect(port, "127.0.0.2").catch(() => undefined)));
    const sockets = flood.filter((s): s is net.Socket => s !== undefined);
    await waitFor(() => sockets.filter((s) => !s.destroyed).length <= 20, "sockets.filter((s) => !s.destroyed).length <= 20");
    expect(sockets.filter((s) => !s.destroyed).length).toBe(20);
    expect(server.limitStats.refusedConnections.max_connections_per_address).toBeGreaterThanOrEqual(80);
    await expect(checkServing(port)).resolves.toBe(ServingStatus.SERVING);
    for (const s of sockets) s.destroy();
  });

  it("refuses unauthenticated streams past their budget with RESOURCE_EXHAUSTED, and keeps the connection", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const abort = new AbortController();
    const results = await Promise.all(
      Array.from({ length: 20 }, async () => {
        try {
          for await (const m of client.watch({ service: "" }, { signal: abort.signal })) return m.status === ServingStatus.SERVING ? "open" : "other";
          return "ended";
        } catch (err) {
          return ConnectError.from(err).code === Code.ResourceExhausted ? "refused" : "other";
        }
      }),
    );
    expect(results.filter((r) => r === "open")).toHaveLength(8);
    expect(results.filter((r) => r === "refused")).toHaveLength(12);
    // The refused ones never cost the connection: once the watches end, it serves again.
    abort.abort();
    await waitFor(() => server.limitStats.unauthenticatedRefused === 12, "server.limitStats.unauthenticatedRefused === 12");
    let status: ServingStatus | undefined;
    for (let i = 0; i < 50 && status === undefined; i++) {
      status = await client.check({ service: "" }).then((r) => r.status, () => undefined);
    }
    expect(status).toBe(ServingStatus.SERVING);
  });

  it("advertises SETTINGS_MAX_CONCURRENT_STREAMS and refuses streams past it", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`, { peerMaxConcurrentStreams: 1000 });
    session.on("error", () => undefined);
    await new Promise<void>((resolve) => session.once("remoteSettings", () => resolve()));
    expect(session.remoteSettings.maxConcurrentStreams).toBe(50);
    session.close();
  });
});

describe("oversized requests", () => {
  let server: TransportServer;
  let port: number;
  beforeAll(async () => {
    // Health is unauthenticated: its budget is raised so every request reaches the size check.
    ({ server, port } = await startTestServer(createProbe(), { readMaxBytes: 1024, limits: { maxConcurrentStreams: 1000, maxUnauthenticatedStreams: 1000 } }));
  });
  afterAll(async () => {
    await server.close(1000);
  });

  /**
   * Sends `n` requests of 8 KiB (limit 1 KiB) in two DATA frames each, never ending the
   * client's side, and waits until every stream is closed; returns the grpc-status of each.
   */
  async function flood(session: http2.ClientHttp2Session, n: number): Promise<string[]> {
    const body = envelope("x".repeat(8 * 1024));
    const statuses: string[] = [];
    await Promise.all(
      Array.from({ length: n }, (_, i) => {
        // Half through grpc-js (protobuf), half through connect-node (JSON codec).
        const type = i % 2 === 0 ? "application/grpc" : "application/grpc+json";
        const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": type, te: "trailers" }, { endStream: false });
        req.on("error", () => undefined);
        // Two frames: a reader that stops at the limit leaves the second one unread.
        req.write(body.subarray(0, 4096));
        req.write(body.subarray(4096));
        req.on("response", (h) => h["grpc-status"] !== undefined && statuses.push(String(h["grpc-status"])));
        req.on("trailers", (t) => statuses.push(String(t["grpc-status"])));
        req.resume();
        return new Promise<void>((resolve) => req.once("close", () => resolve()));
      }),
    );
    return statuses;
  }

  it("answers 1,000 oversized gRPC requests RESOURCE_EXHAUSTED, leaves none of their streams open, and releases the client's connection when it goes", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
    // A first round warms up both code paths, so the heap is compared with like.
    await flood(session, 200);
    await waitFor(() => server.openStreams === 0, "server.openStreams === 0");
    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;

    const statuses = await flood(session, 1000);
    expect(statuses).toHaveLength(1000);
    expect(statuses.filter((s) => s === String(Code.ResourceExhausted))).toHaveLength(1000);
    // The server holds none of them, half-open or closed with their bodies unread.
    await waitFor(() => server.openStreams === 0, "server.openStreams === 0");
    collectGarbage();
    // No growth: 1,000 leaked streams with their unread bodies would be several MiB.
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(2 * 1024 * 1024);

    // The client goes away without a word: its connection is released, nothing is left.
    session.destroy();
    await waitFor(() => server.openConnections === 0, "server.openConnections === 0");
  });
});

describe("rapid reset", () => {
  let server: TransportServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startTestServer(createProbe(), { limits: { maxResetsPerSecond: 50, abusePenaltyMs: 60_000 } }));
  });
  afterAll(async () => {
    await server.close(1000);
  });

  it("cuts off a client that opens and resets streams as fast as it can, and refuses its reconnects", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => net.connect({ port, host: "127.0.0.1", localAddress: "127.0.0.3" }) });
    session.on("error", () => undefined);
    const gone = new Promise<void>((resolve) => session.once("close", () => resolve()));
    let sent = 0;
    while (!session.destroyed && !session.closed && sent < 2000) {
      try {
        const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Watch", "content-type": "application/grpc", te: "trailers" });
        req.on("error", () => undefined);
        req.close(http2.constants.NGHTTP2_CANCEL);
        sent++;
      } catch {
        break;
      }
      if (sent % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    await gone;
    expect(server.limitStats.rapidResetCutoffs).toBe(1);
    expect(sent).toBeLessThan(2000);
    // The same address is refused at accept for the penalty time; others are not.
    const again = await connect(port, "127.0.0.3");
    await closed(again);
    expect(server.limitStats.refusedConnections.penalized).toBeGreaterThanOrEqual(1);
    await expect(checkServing(port)).resolves.toBe(ServingStatus.SERVING);
  });
});

describe("a stream whose peer grants no flow-control window", () => {
  let server: TransportServer;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await startTestServer(createProbe(), { limits: { streamStallTimeoutMs: 1500 } }));
  });
  afterAll(async () => {
    await server.close(1000);
  });

  it("is reset once the stall timeout passes", async () => {
    // A tiny window that the client never opens: the server's flood fills it at once.
    const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 1024 } });
    session.on("error", () => undefined);
    const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Watch", "content-type": "application/grpc", te: "trailers" });
    req.on("error", () => undefined);
    req.end(envelope("flood"));
    req.pause();
    const code = await new Promise<number>((resolve) => req.once("close", () => resolve(req.rstCode)));
    expect(code).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy();
  });
});

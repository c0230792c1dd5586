import * as net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HTTP2_PREFACE } from "../../src/transport/sniff-protocol.js";
import type { TransportServer } from "../../src/transport/transport-server.js";
import { createProbe, envelope, startTestServer } from "./test-routes.js";
import { waitFor } from "../helpers/wait.js";

const FIRST_BYTES_TIMEOUT_MS = 200;
const HEADERS_TIMEOUT_MS = 400;

/** Opens a raw TCP connection and collects what the server sends until it closes. */
function rawClient(port: number) {
  const socket = net.connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  const connected = new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  return { socket, closed, connected, received: () => Buffer.concat(chunks) };
}

describe("hostile and broken clients", () => {
  let server: TransportServer;
  let port: number;

  beforeAll(async () => {
    ({ server, port } = await startTestServer(createProbe(), {
      firstBytesTimeoutMs: FIRST_BYTES_TIMEOUT_MS,
      http1HeadersTimeoutMs: HEADERS_TIMEOUT_MS,
    }));
  });
  afterAll(async () => {
    await server.close(1000);
  });

  async function expectHealthyAndEmpty() {
    await waitFor(() => server.openConnections === 0, "server.openConnections === 0");
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { connection: "close" } });
    expect(res.status).toBe(200);
    await res.text();
    await waitFor(() => server.openConnections === 0, "server.openConnections === 0");
  }

  it("answers garbage bytes with 400 and drops the connection", async () => {
    const c = rawClient(port);
    await c.connected;
    c.socket.write(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a]));
    await c.closed;
    expect(c.received().toString("latin1")).toMatch(/^HTTP\/1\.1 400/);
    await expectHealthyAndEmpty();
  });

  it("cleans up a connection that closes after half the preface", async () => {
    const c = rawClient(port);
    await c.connected;
    c.socket.end(HTTP2_PREFACE.subarray(0, 10));
    await c.closed;
    expect(c.received().length).toBe(0);
    await expectHealthyAndEmpty();
  });

  it("times out a connection that sends half the preface and then nothing", async () => {
    const c = rawClient(port);
    await c.connected;
    c.socket.write(HTTP2_PREFACE.subarray(0, 10));
    const start = performance.now();
    await c.closed;
    expect(performance.now() - start).toBeGreaterThanOrEqual(FIRST_BYTES_TIMEOUT_MS - 20);
    await expectHealthyAndEmpty();
  });

  it("times out a client that connects and sends nothing", async () => {
    const c = rawClient(port);
    await c.connected;
    await waitFor(() => server.openConnections === 1, "server.openConnections === 1");
    await c.closed;
    await expectHealthyAndEmpty();
  });

  it("survives an immediate disconnect and a reset", async () => {
    const quick = rawClient(port);
    await quick.connected;
    quick.socket.destroy();
    const reset = rawClient(port);
    await reset.connected;
    reset.socket.write("POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
    await delay(20);
    reset.socket.resetAndDestroy();
    await Promise.all([quick.closed, reset.closed]);
    await expectHealthyAndEmpty();
  });

  it("accepts the HTTP/2 preface split across reads", async () => {
    const c = rawClient(port);
    await c.connected;
    for (const [from, to] of [[0, 3], [3, 16], [16, 24]] as const) {
      c.socket.write(HTTP2_PREFACE.subarray(from, to));
      await delay(20);
    }
    c.socket.write(Buffer.from([0, 0, 0, 0x04, 0, 0, 0, 0, 0])); // empty SETTINGS frame
    await waitFor(() => c.received().length >= 9, "c.received().length >= 9");
    expect(c.received()[3]).toBe(0x04); // the server answered with its SETTINGS frame
    c.socket.destroy();
    await c.closed;
    await expectHealthyAndEmpty();
  });

  it("routes an HTTP/1.1 request whose first byte looks like the preface to HTTP/1.1", async () => {
    const c = rawClient(port);
    await c.connected;
    c.socket.write("P");
    await delay(20);
    c.socket.write("UT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    await c.closed;
    expect(c.received().toString("latin1")).toMatch(/^HTTP\/1\.1 405/);
    await expectHealthyAndEmpty();
  });

  it("survives a gRPC client that resets mid-stream", async () => {
    const c = rawClient(port);
    await c.connected;
    const body = envelope("flood");
    c.socket.write(
      "POST /grpc.health.v1.Health/Watch HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+proto\r\n" +
        `Connect-Protocol-Version: 1\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    c.socket.write(body);
    await waitFor(() => c.received().length > 1024, "c.received().length > 1024");
    c.socket.resetAndDestroy();
    await c.closed;
    await expectHealthyAndEmpty();
  });

  it("drops an HTTP/1.1 client that never finishes its headers (slowloris)", async () => {
    const c = rawClient(port);
    await c.connected;
    c.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    const start = performance.now();
    const trickle = setInterval(() => c.socket.write("X-Slow: 1\r\n"), 50);
    await c.closed;
    clearInterval(trickle);
    const ms = performance.now() - start;
    // The deadline is absolute: the trickle did not extend it (were it extended, the
    // connection would stay open until the test's timeout).
    expect(ms).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 20);
    expect(c.received().toString("latin1")).toMatch(/^HTTP\/1\.1 408/);
    await expectHealthyAndEmpty();
  });

  it("answers a client whose request and FIN arrive together", async () => {
    // Like node:http, a half-closed client still gets an immediate answer (a call still in
    // flight when the FIN arrives is aborted, as node:http does).
    const c = rawClient(port);
    await c.connected;
    c.socket.end("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await c.closed;
    expect(c.received().toString("latin1")).toMatch(/^HTTP\/1\.1 200[\s\S]*\r\nok 1\.1\r\n/);
    await expectHealthyAndEmpty();
  });
});

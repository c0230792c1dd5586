import * as http2 from "node:http2";
import * as net from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { ManualClock } from "../../src/clock.js";
import { createTransportServer, type TransportServer } from "../../src/transport/transport-server.js";
import { createProbe, envelope, startTestServer, testRoutes } from "./test-routes.js";
import { waitFor } from "../helpers/wait.js";

/**
 * Closes `server` and checks that a stuck stream holds the close until the grace has passed
 * on `clock`, and no longer: pending after a first look (the stream is stuck), resolved once
 * the grace is advanced.
 */
async function expectHeldUntilGrace(server: TransportServer, clock: ManualClock): Promise<void> {
  let closed = false;
  const closing = server.close(GRACE_MS).then(() => {
    closed = true;
  });
  // Let the close do what it does at once (a few turns of the event loop, no clock).
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  expect(closed).toBe(false);
  expect(server.state).toBe("closing");
  clock.advance(GRACE_MS);
  await closing;
}

/**
 * The servers here run on a manual clock that no test advances unless it says so: the close
 * grace (and every limit timer) never runs out by itself, so a close() that resolves did not
 * wait for it, and one that must wait shows it by still being pending. Nothing here is timed.
 */
const GRACE_MS = 5_000;
const manual = () => ({ clock: new ManualClock() });

describe("TransportServer.close", () => {
  it("lets in-flight unary calls finish (HTTP/1.1 and h2) and then resolves", async () => {
    const probe = createProbe();
    const { server, port } = await startTestServer(probe, manual());
    const baseUrl = `http://127.0.0.1:${port}`;
    const h1 = createClient(Health, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
    const h2 = createClient(Health, createGrpcTransport({ baseUrl }));
    const calls = [h1.check({ service: "slow:300" }), h2.check({ service: "slow:300" })];
    const raw = fetch(`${baseUrl}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ service: "slow:300" }),
    });
    await waitFor(() => probe.calls.filter((c) => c.service === "slow:300").length === 3, "the three slow calls to start");

    const closing = server.close(GRACE_MS);
    expect(server.shuttingDown.aborted).toBe(true);
    expect(server.state).toBe("closing");
    const results = await Promise.all(calls);
    expect(results.map((r) => r.status)).toEqual([ServingStatus.SERVING, ServingStatus.SERVING]);
    const rawRes = await raw;
    expect(await rawRes.json()).toEqual({ status: "SERVING" });
    // The HTTP/1.1 client is told not to reuse the connection.
    expect(rawRes.headers.get("connection")).toBe("close");
    await closing;
    expect(server.state).toBe("closed");
    expect(server.openConnections).toBe(0);
  });

  it("refuses new connections once closing", async () => {
    const { server, port } = await startTestServer(createProbe(), manual());
    await server.close(1000);
    const err = await fetch(`http://127.0.0.1:${port}/healthz`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
  });

  it("ends a server stream that observes shuttingDown, after its final message", async () => {
    const probe = createProbe();
    const { server, port } = await startTestServer(probe, manual());
    const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const received: ServingStatus[] = [];
    const stream = (async () => {
      for await (const res of client.watch({ service: "until-shutdown" })) received.push(res.status);
    })();
    await waitFor(() => received.length === 1, "the first message");

    await server.close(GRACE_MS);
    await stream; // ends cleanly: no error
    expect(received).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    expect(probe.sawShutdown).toBe(1);
  });

  it("ends a Connect server stream over HTTP/1.1 that observes shuttingDown", async () => {
    const probe = createProbe();
    const { server, port } = await startTestServer(probe, manual());
    const client = createClient(Health, createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }));
    const received: ServingStatus[] = [];
    const stream = (async () => {
      for await (const res of client.watch({ service: "until-shutdown" })) received.push(res.status);
    })();
    await waitFor(() => received.length === 1, "the first message");

    await server.close(GRACE_MS);
    await stream;
    expect(received).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });

  it("does not wait for a connection that has not sent its first bytes", async () => {
    const { server, port } = await startTestServer(createProbe(), manual()); // first-bytes timeout: default 10 s
    const silent = net.connect(port, "127.0.0.1");
    silent.on("error", () => {});
    await waitFor(() => server.openConnections === 1, "the connection to be counted");
    await server.close(GRACE_MS);
    expect(server.openConnections).toBe(0);
    silent.destroy();
  });

  it("does not wait for idle keep-alive connections (HTTP/1.1 and h2)", async () => {
    const { server, port } = await startTestServer(createProbe(), manual());
    const baseUrl = `http://127.0.0.1:${port}`;
    // fetch keeps its HTTP/1.1 socket alive; the gRPC transport keeps its h2 session open.
    expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
    await createClient(Health, createGrpcTransport({ baseUrl })).check({ service: "" });
    await createClient(Health, createConnectTransport({ baseUrl, httpVersion: "1.1" })).check({ service: "" });
    expect(server.openConnections).toBeGreaterThanOrEqual(2);

    await server.close(GRACE_MS);
    expect(server.openConnections).toBe(0);
  });

  it("destroys an h2 stream whose client never reads, once graceMs has passed", async () => {
    const probe = createProbe();
    const clock = new ManualClock();
    const { server, port } = await startTestServer(probe, { clock });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    const req = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Watch",
      "content-type": "application/grpc",
      te: "trailers",
    });
    req.on("error", () => {});
    req.pause(); // never read
    req.end(envelope("flood"));
    await waitFor(() => probe.floodsRunning === 1, "probe.floodsRunning === 1");
    await delay(100); // let the flood fill the flow-control window

    await expectHeldUntilGrace(server, clock);
    expect(server.openConnections).toBe(0);
    await waitFor(() => probe.floodsRunning === 0, "probe.floodsRunning === 0");
    session.destroy();
  });

  it("destroys an HTTP/1.1 streaming response whose client never reads, once graceMs has passed", async () => {
    const probe = createProbe();
    const clock = new ManualClock();
    const { server, port } = await startTestServer(probe, { clock });
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    const body = envelope("flood");
    socket.write(
      "POST /grpc.health.v1.Health/Watch HTTP/1.1\r\nHost: x\r\n" +
        "Content-Type: application/connect+proto\r\nConnect-Protocol-Version: 1\r\n" +
        `Content-Length: ${body.length}\r\n\r\n`,
    );
    socket.write(body);
    socket.pause(); // never read
    await waitFor(() => probe.floodsRunning === 1, "probe.floodsRunning === 1");
    await delay(200); // let the flood fill the socket buffers

    await expectHeldUntilGrace(server, clock);
    expect(server.openConnections).toBe(0);
    await waitFor(() => probe.floodsRunning === 0, "probe.floodsRunning === 0");
    socket.destroy();
  });

  it("is idempotent: concurrent and repeated close() calls all resolve", async () => {
    const { server } = await startTestServer(createProbe(), manual());
    const first = server.close(1000);
    const second = server.close(1000);
    expect(second).toBe(first);
    await Promise.all([first, second]);
    await expect(server.close()).resolves.toBeUndefined();
    expect(server.state).toBe("closed");
  });

  it("closes a server that never listened, and then refuses to listen", async () => {
    const server = createTransportServer({ routes: testRoutes(createProbe()) });
    await server.close(GRACE_MS);
    await expect(server.listen("127.0.0.1", 0)).rejects.toThrow(/closed/);
  });

  it("closes a server whose listen() is still binding, releasing the port", async () => {
    const server = createTransportServer({ routes: testRoutes(createProbe()) });
    const listening = server.listen("127.0.0.1", 0);
    const closed = server.close(1000);
    const { port } = await listening;
    await closed;
    expect(server.state).toBe("closed");
    const err = await fetch(`http://127.0.0.1:${port}/healthz`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
  });

  it("rejects listen on a port in use and can listen again afterwards", async () => {
    const { server: first, port } = await startTestServer(createProbe(), manual());
    const second = createTransportServer({ routes: testRoutes(createProbe()) });
    await expect(second.listen("127.0.0.1", port)).rejects.toMatchObject({ code: "EADDRINUSE" });
    expect(second.state).toBe("idle");
    const address = await second.listen("127.0.0.1", 0);
    expect(address.port).toBeGreaterThan(0);
    await Promise.all([first.close(1000), second.close(1000)]);
  });
});

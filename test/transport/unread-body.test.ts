/**
 * A stream whose request body the server stopped reading (an oversized request: the handler
 * answers RESOURCE_EXHAUSTED and reads no further) must not outlive its close. Node's
 * http2 keeps a stream closed with NO_ERROR until its readable side is consumed; nobody
 * consumes it here, so the stream stayed in its session forever, the session never finished
 * closing, and nghttp2 (wanting no more frames after GOAWAY) stopped reading the socket: a
 * client that closed or simply went away stayed counted as an open connection.
 */
import * as http2 from "node:http2";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import type { TransportServer } from "../../src/transport/transport-server.js";
import { waitFor } from "../helpers/wait.js";
import { createProbe, envelope, startTestServer } from "./test-routes.js";

const LIMIT = 1024;

/**
 * Sends one request over `session` with a body far larger than the limit, split across many
 * DATA frames so the server holds unread frames once the handler stops at the limit; resolves
 * with the grpc-status once the answer is complete. The client's side stays open unless
 * `end` is set.
 */
function oversized(session: http2.ClientHttp2Session, contentType: string, end = false): Promise<{ status: string; req: http2.ClientHttp2Stream }> {
  const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": contentType, te: "trailers" }, { endStream: false });
  req.on("error", () => undefined);
  // Under the 64 KiB connection window, so every byte reaches the server.
  const body = envelope("x".repeat(60 * 1024));
  for (let i = 0; i < body.length; i += 4096) req.write(body.subarray(i, i + 4096));
  if (end) req.end();
  req.resume();
  return new Promise((resolve) => {
    let status = "";
    req.on("response", (h) => h["grpc-status"] !== undefined && (status = String(h["grpc-status"])));
    req.on("trailers", (t) => (status = String(t["grpc-status"])));
    req.once("close", () => resolve({ status, req }));
  });
}

/** Resolves true once `session` has finished closing, false if it has not within `capMs` (a bound, not a measurement). */
function closedSession(session: http2.ClientHttp2Session, capMs = 10_000): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), capMs);
    session.once("close", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

describe("a stream closed with its request body unread", () => {
  let server: TransportServer;
  let port: number;
  beforeEach(async () => {
    ({ server, port } = await startTestServer(createProbe(), { readMaxBytes: LIMIT }));
  });
  afterEach(async () => {
    await server.close(1000);
  });

  // connect-node serves gRPC with the JSON codec, and stops reading at the limit.
  for (const contentType of ["application/grpc+json", "application/grpc"]) {
    it(`${contentType}: releases the connection of a client that goes away`, async () => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on("error", () => undefined);
      const { status } = await oversized(session, contentType);
      expect(status).toBe(String(Code.ResourceExhausted));
      await waitFor(() => server.openStreams === 0, "server.openStreams === 0");
      session.destroy();
      await waitFor(() => server.openConnections === 0, "server.openConnections === 0");
    });

    it(`${contentType}: lets a client that closes gracefully finish closing`, async () => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on("error", () => undefined);
      await oversized(session, contentType);
      await waitFor(() => server.openStreams === 0, "server.openStreams === 0");
      session.close();
      expect(await closedSession(session)).toBe(true);
      await waitFor(() => server.openConnections === 0, "server.openConnections === 0");
    });

    it(`${contentType}: releases a stream the client ends after its answer`, async () => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on("error", () => undefined);
      const { status } = await oversized(session, contentType, true);
      expect(status).toBe(String(Code.ResourceExhausted));
      await waitFor(() => server.openStreams === 0, "server.openStreams === 0");
      // Node 20 needs the guard to release this stream; Node 24 releases some closed streams
      // itself. The stream being released is what counts, whoever did it.
      session.close();
      expect(await closedSession(session)).toBe(true);
      await waitFor(() => server.openConnections === 0, "server.openConnections === 0");
    });
  }

  it("does not hold shutdown for the grace period", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
    await oversized(session, "application/grpc+json", true);
    // The client stays connected; the server closes with a grace far longer than the wait below.
    const closing = server.close(60_000);
    const done = await Promise.race([closing.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20_000))]);
    session.destroy();
    expect(done).toBe(true);
  });
});

/**
 * The gRPC front on node:http2's core API: the framing and protocol edge cases it now handles
 * itself (grpc-timeout units, message count, compression, size limit, cancellation, status
 * trailers), driven by a raw HTTP/2 client for the bytes and by @grpc/grpc-js for a real
 * client's view.
 */
import * as http2 from "node:http2";
import * as zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import type { ConnectRouter } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Health, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { capvendError } from "../../src/errors.js";
import { createTransportServer, type TransportServer } from "../../src/transport/transport-server.js";
import { errorInfoFromStatusDetails } from "../helpers/error-info.js";
import { waitFor } from "../helpers/wait.js";
import { envelope } from "./test-routes.js";

const LIMIT = 4096;
const CHECK = "/grpc.health.v1.Health/Check";
const WATCH = "/grpc.health.v1.Health/Watch";
const padding = new BinaryWriter().bytes(new Uint8Array(32 * 1024)).finish();
const healthProto = fileURLToPath(new URL("../../proto-vendor/grpc/health/v1/health.proto", import.meta.url));

/** What the handlers saw. */
interface Seen {
  /** ctx.timeoutMs() at the start of each Check, by its service name. */
  timeouts: Map<string, number | undefined>;
  /** Calls whose signal was aborted (cancelled or past their deadline), by service name. */
  aborted: string[];
  /** Watch streams running. */
  watching: number;
  /** Messages a "burst:<n>" Watch has produced so far. */
  produced: number;
}

/**
 * Check: "wait" waits for its signal; "fail" throws PERMISSION_DENIED with ErrorInfo;
 * "text:<message>" throws INVALID_ARGUMENT with that message; "meta" sets a response header
 * and trailer. Watch: "burst:<n>" sends n messages of 32 KiB and ends; anything else sends
 * one message, then waits for cancellation.
 */
function routes(seen: Seen) {
  return (router: ConnectRouter) =>
    router.service(Health, {
      async check(req, ctx) {
        seen.timeouts.set(req.service, ctx.timeoutMs());
        if (req.service === "wait") {
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
          seen.aborted.push(req.service);
          return { status: ServingStatus.NOT_SERVING };
        }
        if (req.service === "fail") throw capvendError("ACTION_DENIED", "the policy does not allow this");
        if (req.service.startsWith("text:")) throw new ConnectError(req.service.slice(5), Code.InvalidArgument);
        // Valid for a Headers object, not for HTTP/2 (a connection-specific field).
        if (req.service === "bad-header") ctx.responseHeader.set("connection", "close");
        if (req.service === "bad-trailer") ctx.responseTrailer.set("connection", "close");
        if (req.service === "meta") {
          ctx.responseHeader.set("x-front", "core");
          ctx.responseTrailer.set("x-done", "yes");
        }
        return { status: ServingStatus.SERVING };
      },
      async *watch(req, ctx) {
        const burst = /^burst:(\d+)$/.exec(req.service);
        if (burst) {
          for (let i = 0; i < Number(burst[1]); i++) {
            seen.produced++;
            const msg = create(HealthCheckResponseSchema, { status: ServingStatus.SERVING });
            msg.$unknown = [{ no: 99, wireType: WireType.LengthDelimited, data: padding }];
            yield msg;
          }
          return;
        }
        seen.watching++;
        try {
          yield { status: ServingStatus.SERVING };
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
          seen.aborted.push(req.service);
        } finally {
          seen.watching--;
        }
      },
    });
}

interface RawResult {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
  /** grpc-status from the trailers, or from the headers of a trailers-only response. */
  grpcStatus: string | undefined;
  grpcMessage: string | undefined;
  detailsBin: string | undefined;
}

describe("gRPC on the HTTP/2 core API", () => {
  let server: TransportServer;
  let port: number;
  let seen: Seen;
  let session: http2.ClientHttp2Session;

  beforeAll(async () => {
    seen = { timeouts: new Map(), aborted: [], watching: 0, produced: 0 };
    server = createTransportServer({ routes: routes(seen), readMaxBytes: LIMIT, contextValues: () => createContextValues() });
    port = (await server.listen("127.0.0.1", 0)).port;
    session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
  });
  afterAll(async () => {
    session.destroy();
    await server.close(1000);
  });

  /** Sends one request with `chunks` as its body (each a DATA write) and reads the whole answer. */
  function raw(path: string, chunks: Buffer[], extra: http2.OutgoingHttpHeaders = {}, end = true): Promise<RawResult> {
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...extra }, { endStream: false });
    req.on("error", () => undefined);
    for (const c of chunks) req.write(c);
    if (end) req.end();
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    return new Promise((resolve) => {
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      req.on("response", (h) => (headers = h));
      req.on("trailers", (t) => (trailers = t));
      req.once("close", () => {
        const st = trailers ?? headers;
        resolve({
          status: Number(headers[":status"]),
          headers,
          trailers,
          body: Buffer.concat(parts),
          grpcStatus: st["grpc-status"] === undefined ? undefined : String(st["grpc-status"]),
          grpcMessage: st["grpc-message"] === undefined ? undefined : String(st["grpc-message"]),
          detailsBin: st["grpc-status-details-bin"] === undefined ? undefined : String(st["grpc-status-details-bin"]),
        });
      });
    });
  }

  const withFlags = (flags: number, frame: Buffer): Buffer => {
    const out = Buffer.from(frame);
    out[0] = flags;
    return out;
  };

  /** A HealthCheckRequest envelope whose body is compressed with `compress`, flag set. */
  function compressedEnvelope(service: string, compress: (b: Buffer) => Buffer): Buffer {
    const payload = compress(envelope(service).subarray(5));
    const head = Buffer.alloc(5);
    head[0] = 1;
    head.writeUInt32BE(payload.length, 1);
    return Buffer.concat([head, payload]);
  }

  it("answers a unary call with headers, one message and grpc-status 0 in the trailers", async () => {
    const res = await raw(CHECK, [envelope("meta")]);
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/grpc+proto");
    expect(res.headers["grpc-accept-encoding"]).toBe("identity,deflate,gzip");
    expect(res.headers["x-front"]).toBe("core");
    expect(res.trailers).toMatchObject({ "grpc-status": "0", "x-done": "yes" });
    // One envelope: flags 0, length, HealthCheckResponse{status: SERVING} = 08 01.
    expect([...res.body]).toEqual([0, 0, 0, 0, 2, 0x08, 0x01]);
  });

  it("takes a request message split across DATA frames, even inside its 5-byte prefix", async () => {
    const frame = envelope("split-frames");
    const chunks = [frame.subarray(0, 2), frame.subarray(2, 4), frame.subarray(4, 9), frame.subarray(9)];
    const res = await raw(CHECK, chunks);
    expect(res.grpcStatus).toBe("0");
    expect(seen.timeouts.has("split-frames")).toBe(true);
  });

  describe("grpc-timeout", () => {
    // The handler sees the timeout (in ms) the header names: never more, and not much less
    // (the bounds are generous; they only check the unit).
    const cases: Array<[string, number]> = [
      ["2H", 2 * 3_600_000],
      ["3M", 3 * 60_000],
      ["45S", 45_000],
      ["40000m", 40_000],
      ["35000000u", 35_000],
      ["99999999n", 99.999999],
    ];
    for (const [value, ms] of cases) {
      it(`"${value}" gives the call ${ms} ms`, async () => {
        const service = `timeout-${value}`;
        const res = await raw(CHECK, [envelope(service)], { "grpc-timeout": value });
        const seenMs = seen.timeouts.get(service);
        if (res.grpcStatus === "0") {
          // Within a millisecond: the deadline is kept in Date.now() milliseconds.
          expect(seenMs).toBeLessThanOrEqual(ms + 1);
          expect(seenMs).toBeGreaterThan(ms - 30_000);
        } else {
          // Only the 100 ms one can expire on a machine this busy.
          expect(value).toBe("99999999n");
          expect(res.grpcStatus).toBe(String(Code.DeadlineExceeded));
        }
      });
    }

    it("without the header, the call has no deadline", async () => {
      await raw(CHECK, [envelope("no-timeout")]);
      expect(seen.timeouts.has("no-timeout")).toBe(true);
      expect(seen.timeouts.get("no-timeout")).toBeUndefined();
    });

    for (const value of ["1000u", "1000000n", "1m"]) {
      it(`a call past its deadline ("${value}") ends DEADLINE_EXCEEDED and its signal is aborted`, async () => {
        const before = seen.aborted.filter((s) => s === "wait").length;
        const res = await raw(CHECK, [envelope("wait")], { "grpc-timeout": value });
        expect(res.grpcStatus).toBe(String(Code.DeadlineExceeded));
        await waitFor(() => seen.aborted.filter((s) => s === "wait").length === before + 1, "the waiting handler's signal aborted");
        await waitFor(() => server.openStreams === 0, "server.openStreams === 0");
      });
    }

    for (const value of ["10x", "123456789S", "S", "-1S", "1.5S"]) {
      it(`a malformed value ("${value}") → INVALID_ARGUMENT, the method never runs`, async () => {
        const service = `bad-timeout-${value}`;
        const res = await raw(CHECK, [envelope(service)], { "grpc-timeout": value });
        expect(res.grpcStatus).toBe(String(Code.InvalidArgument));
        expect(errorInfoFromStatusDetails(res.detailsBin)?.reason).toBe("INVALID_ARGUMENT");
        expect(seen.timeouts.has(service)).toBe(false);
      });
    }
  });

  describe("request messages", () => {
    it("no message → UNIMPLEMENTED (as gRPC servers answer it)", async () => {
      const res = await raw(CHECK, []);
      expect(res.grpcStatus).toBe(String(Code.Unimplemented));
      expect(res.grpcMessage).toBe("protocol error: missing input message for unary method");
    });

    it("no message on a server-streaming method → UNIMPLEMENTED, the method never runs", async () => {
      const watching = seen.watching;
      const res = await raw(WATCH, []);
      expect(res.grpcStatus).toBe(String(Code.Unimplemented));
      expect(res.grpcMessage).toBe("protocol error: missing input message for server streaming method");
      expect(seen.watching).toBe(watching);
    });

    it("two messages → UNIMPLEMENTED, the method never runs", async () => {
      const res = await raw(CHECK, [Buffer.concat([envelope("two-a"), envelope("two-b")])]);
      expect(res.grpcStatus).toBe(String(Code.Unimplemented));
      expect(res.grpcMessage).toBe("protocol error: received extra input message for unary method");
      expect(seen.timeouts.has("two-a")).toBe(false);
    });

    it("an empty message (length 0) is a valid request", async () => {
      const res = await raw(CHECK, [Buffer.alloc(5)]);
      expect(res.grpcStatus).toBe("0");
      expect(seen.timeouts.has("")).toBe(true);
    });

    it("a body that ends inside the prefix → INVALID_ARGUMENT incomplete envelope", async () => {
      const res = await raw(CHECK, [Buffer.from([0, 0, 0])]);
      expect(res.grpcStatus).toBe(String(Code.InvalidArgument));
      expect(res.grpcMessage).toBe("protocol error: incomplete envelope");
      expect(errorInfoFromStatusDetails(res.detailsBin)?.reason).toBe("INVALID_ARGUMENT");
    });

    it("the compressed flag without grpc-encoding → INTERNAL, the method never runs", async () => {
      const res = await raw(CHECK, [withFlags(1, envelope("flag-no-encoding"))]);
      expect(res.grpcStatus).toBe(String(Code.Internal));
      expect(res.grpcMessage).toMatch(/compressed message, but grpc-encoding names no compression/);
      expect(seen.timeouts.has("flag-no-encoding")).toBe(false);
    });

    it("the compressed flag with grpc-encoding identity → INTERNAL", async () => {
      const res = await raw(CHECK, [withFlags(1, envelope("flag-identity"))], { "grpc-encoding": "identity" });
      expect(res.grpcStatus).toBe(String(Code.Internal));
    });

    it("gzip and deflate messages are decompressed", async () => {
      const gz = await raw(CHECK, [compressedEnvelope("gzipped", zlib.gzipSync)], { "grpc-encoding": "gzip" });
      expect(gz.grpcStatus).toBe("0");
      const df = await raw(CHECK, [compressedEnvelope("deflated", zlib.deflateSync)], { "grpc-encoding": "deflate" });
      expect(df.grpcStatus).toBe("0");
      expect(seen.timeouts.has("gzipped") && seen.timeouts.has("deflated")).toBe(true);
    });

    it("an uncompressed message (flag 0) is read as it is whatever grpc-encoding says", async () => {
      const res = await raw(CHECK, [envelope("plain-with-gzip-header")], { "grpc-encoding": "gzip" });
      expect(res.grpcStatus).toBe("0");
    });

    it("an unsupported grpc-encoding → UNIMPLEMENTED naming the supported ones", async () => {
      const res = await raw(CHECK, [compressedEnvelope("snappy", zlib.gzipSync)], { "grpc-encoding": "snappy" });
      expect(res.grpcStatus).toBe(String(Code.Unimplemented));
      expect(res.headers["grpc-accept-encoding"]).toBe("identity,deflate,gzip");
    });

    it("bytes that are not gzip → INTERNAL", async () => {
      const res = await raw(CHECK, [compressedEnvelope("not-gzip", (b) => b)], { "grpc-encoding": "gzip" });
      expect(res.grpcStatus).toBe(String(Code.Internal));
    });

    it("a small gzip message that inflates past the limit → RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE", async () => {
      const res = await raw(CHECK, [compressedEnvelope("z".repeat(LIMIT * 4), zlib.gzipSync)], { "grpc-encoding": "gzip" });
      expect(res.grpcStatus).toBe(String(Code.ResourceExhausted));
      expect(errorInfoFromStatusDetails(res.detailsBin)?.reason).toBe("MESSAGE_TOO_LARGE");
    });

    it("a gzip message from a grpc-js client with compression on is served", async () => {
      const definition = protoLoader.loadSync(healthProto, { keepCase: true, enums: String });
      const pkg = grpc.loadPackageDefinition(definition) as any;
      const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
        "grpc.default_compression_algorithm": grpc.compressionAlgorithms.gzip,
      });
      try {
        const res = await new Promise<{ status: string }>((resolve, reject) =>
          client.Check({ service: "grpc-js-gzip" }, (err: Error | null, value: { status: string }) => (err ? reject(err) : resolve(value))),
        );
        expect(res.status).toBe("SERVING");
      } finally {
        client.close();
      }
    });
  });

  describe("the size limit", () => {
    it("refuses a message whose prefix declares more than the limit at once, before any of its body arrives, and releases the stream", async () => {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(100 * 1024 * 1024, 1);
      // The client never sends the body nor ends its side: the answer cannot wait for either.
      const res = await raw(CHECK, [head], {}, false);
      expect(res.grpcStatus).toBe(String(Code.ResourceExhausted));
      expect(res.grpcMessage).toBe(`message size ${100 * 1024 * 1024} is larger than configured readMaxBytes ${LIMIT}`);
      expect(errorInfoFromStatusDetails(res.detailsBin)?.reason).toBe("MESSAGE_TOO_LARGE");
      await waitFor(() => server.openStreams === 0, "server.openStreams === 0");
    });

    it("a message of exactly the limit is read", async () => {
      // A HealthCheckRequest whose service field fills the limit: tag (1) + 2-byte length + text.
      const res = await raw(CHECK, [envelope("s".repeat(LIMIT - 3))]);
      expect(res.grpcStatus).toBe("0");
    });
  });

  describe("status", () => {
    it("an error before any message is a trailers-only response carrying the ErrorInfo", async () => {
      const res = await raw(CHECK, [envelope("fail")]);
      expect(res.trailers).toBeUndefined();
      expect(res.body.length).toBe(0);
      expect(res.headers[":status"]).toBe(200);
      expect(res.headers["content-type"]).toBe("application/grpc+proto");
      expect(res.grpcStatus).toBe(String(Code.PermissionDenied));
      expect(res.grpcMessage).toBe("the policy does not allow this");
      const info = errorInfoFromStatusDetails(res.detailsBin);
      expect(info).toMatchObject({ reason: "ACTION_DENIED", domain: "capvend.dev" });
    });

    it("grpc-message is percent-encoded as the gRPC spec asks (only non-printable bytes and %)", async () => {
      const text = "bad: 100% ünïcode\ttab";
      const res = await raw(CHECK, [envelope(`text:${text}`)]);
      expect(res.grpcMessage).toBe("bad: 100%25 %C3%BCn%C3%AFcode%09tab");
      expect(decodeURIComponent(res.grpcMessage!)).toBe(text);
    });

    for (const where of ["header", "trailer"]) {
      it(`a response ${where} HTTP/2 cannot carry ends the call INTERNAL, and the server goes on`, async () => {
        const res = await raw(CHECK, [envelope(`bad-${where}`)]);
        expect(res.grpcStatus).toBe(String(Code.Internal));
        expect((await raw(CHECK, [envelope("after-bad")])).grpcStatus).toBe("0");
      });
    }

    it("an unknown method → UNIMPLEMENTED, trailers-only", async () => {
      const res = await raw("/grpc.health.v1.Health/Nope", [envelope("x")]);
      expect(res.grpcStatus).toBe(String(Code.Unimplemented));
      expect(res.trailers).toBeUndefined();
    });

    it("a gRPC GET is not a gRPC call: connect-node answers it 405", async () => {
      const req = session.request({ ":method": "GET", ":path": CHECK, "content-type": "application/grpc", te: "trailers" });
      req.on("error", () => undefined);
      const status = await new Promise((resolve) => req.on("response", (h) => resolve(h[":status"])));
      req.close();
      expect(status).toBe(405);
    });
  });

  describe("server streams", () => {
    it("waits for the client's window: a reader that pauses holds the source back, and gets every message once it reads", async () => {
      const n = 200;
      const req = session.request({ ":method": "POST", ":path": WATCH, "content-type": "application/grpc", te: "trailers" });
      req.on("error", () => undefined);
      req.end(envelope(`burst:${n}`));
      req.pause();
      let bytes = 0;
      let trailers: http2.IncomingHttpHeaders | undefined;
      req.on("trailers", (t) => (trailers = t));
      const closed = new Promise<void>((resolve) => req.once("close", () => resolve()));
      await waitFor(() => seen.produced > 0, "the stream started");
      // Room to run ahead if nothing held it back: 200 x 32 KiB takes a few ms to produce.
      await new Promise((r) => setTimeout(r, 300));
      expect(seen.produced).toBeLessThan(n / 2);
      req.on("data", (c: Buffer) => (bytes += c.length));
      req.resume();
      await closed;
      expect(trailers?.["grpc-status"]).toBe("0");
      expect(seen.produced).toBe(n);
      // Each message: 5-byte prefix + status (2 bytes) + field 99 (2-byte tag, 3-byte length, 32 KiB).
      expect(bytes).toBe(n * (5 + 2 + 2 + 3 + 32 * 1024));
    });
  });

  describe("cancellation", () => {
    it("a client that cancels a server stream mid-stream aborts the handler's signal once and releases the stream", async () => {
      const definition = protoLoader.loadSync(healthProto, { keepCase: true, enums: String });
      const pkg = grpc.loadPackageDefinition(definition) as any;
      const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      try {
        const call = client.Watch({ service: "cancel-me" });
        const first = await new Promise<{ status: string }>((resolve) => call.once("data", resolve));
        expect(first.status).toBe("SERVING");
        const ended = new Promise<{ code: number }>((resolve) => call.on("error", resolve));
        call.cancel();
        expect((await ended).code).toBe(grpc.status.CANCELLED);
        await waitFor(() => seen.aborted.includes("cancel-me"), "the stream handler's signal aborted");
        await waitFor(() => seen.watching === 0 && server.openStreams === 0, "the stream released");
        expect(seen.aborted.filter((s) => s === "cancel-me")).toEqual(["cancel-me"]);
      } finally {
        client.close();
      }
    });

    it("a client that resets a unary call while it runs aborts its signal", async () => {
      const req = session.request({ ":method": "POST", ":path": CHECK, "content-type": "application/grpc", te: "trailers" });
      req.on("error", () => undefined);
      const before = seen.aborted.filter((s) => s === "wait").length;
      req.end(envelope("wait"));
      await waitFor(() => seen.timeouts.has("wait") && server.openStreams === 1, "the call running");
      req.close(http2.constants.NGHTTP2_CANCEL);
      await waitFor(() => seen.aborted.filter((s) => s === "wait").length === before + 1, "the handler's signal aborted");
      await waitFor(() => server.openStreams === 0, "server.openStreams === 0");
    });
  });
});

/**
 * gRPC (application/grpc, application/grpc+proto) served by @grpc/grpc-js from the same
 * service implementations and Connect interceptors as every other protocol. connect-node
 * costs several times more CPU per gRPC call than grpc-js; Connect, gRPC-Web and plain HTTP
 * stay with connect-node and node:http on the same port.
 *
 * grpc-js owns the HTTP/2 server that every HTTP/2 connection is injected into
 * (`Server.createConnectionInjector()`); each stream is then dispatched by content type,
 * to grpc-js or to node:http2's compatibility layer (connect-node and the HTTP routes).
 */
import * as http2 from "node:http2";
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { decodeRequestMessage } from "./decode-message.js";
import { Code, ConnectError, type ContextValues, type MethodImplSpec } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import * as grpc from "@grpc/grpc-js";
import { toWireError, withErrorInfo } from "../errors.js";
import { createFairDispatch, type FairDispatch } from "./fair-dispatch.js";
import type { HttpRequest } from "./http-routes.js";
import { RequestHeaders } from "./request-headers.js";
import { LazyAbort, type CallInit, type MethodTable, type RpcInvoker } from "./rpc-invoker.js";

/** Options of {@link createGrpcFront}. */
export interface GrpcFrontOptions {
  methods: MethodTable;
  invoker: RpcInvoker;
  /** Largest request message, in bytes; larger ones get RESOURCE_EXHAUSTED. */
  readMaxBytes: number;
  /** Context values of one call, from a view of its HTTP/2 stream (see {@link streamRequestView}). */
  contextValues(req: HttpRequest): ContextValues;
  /** Options for the HTTP/2 server grpc-js creates (settings, session memory). */
  grpcOptions?: grpc.ServerOptions;
  /** Turns for the handlers (see fair-dispatch.ts); default one of its own. */
  dispatch?: FairDispatch;
}

/** The grpc-js server and the HTTP/2 server it owns. */
export interface GrpcFront {
  /** The HTTP/2 server that every HTTP/2 connection goes to. */
  readonly http2Server: http2.Http2Server;
  /** Hands an HTTP/2 connection (cleartext, or TLS after ALPN chose h2) to the server. */
  inject(socket: import("node:net").Socket): void;
  /**
   * True for content types grpc-js serves (gRPC with the protobuf codec) and, when `path` is
   * given, a method it serves: client- and bidi-streaming methods (server reflection) stay
   * with connect-node.
   */
  serves(contentType: string | undefined, path?: string): boolean;
  /** grpc-js's own handler of a stream. */
  handleStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]): void;
  /** Releases grpc-js's resources; connections are closed by their owner. */
  destroy(): void;
}

const GRPC_CONTENT_TYPE = /^application\/grpc(?:\+proto)?(?:;.*)?$/i;

/**
 * A stand-in for the Node request of a gRPC call, for `contextValues` and the stream reset
 * (`resetStream` closes `stream`). Only these fields exist.
 */
export function streamRequestView(stream: http2.ServerHttp2Stream | undefined, headers: http2.IncomingHttpHeaders, path: string): HttpRequest {
  return {
    httpVersion: "2.0",
    httpVersionMajor: 2,
    httpVersionMinor: 0,
    method: "POST",
    url: path,
    headers,
    stream,
    socket: stream?.session?.socket,
  } as unknown as HttpRequest;
}

/** Builds the grpc-js server, its connection injector and the method handlers. */
export function createGrpcFront(opts: GrpcFrontOptions): GrpcFront {
  const { invoker, methods } = opts;
  const dispatch = opts.dispatch ?? createFairDispatch();
  const server = new grpc.Server({
    // grpc-js refuses bigger messages itself, with no ErrorInfo; up to twice the limit the
    // handlers refuse them instead (MESSAGE_TOO_LARGE), as every other protocol does.
    "grpc.max_receive_message_length": Math.min(2 * opts.readMaxBytes, 0x7fffffff),
    "grpc.max_send_message_length": -1,
    "grpc.enable_channelz": 0,
    ...opts.grpcOptions,
  });
  const byService = new Map<string, { definition: Record<string, grpc.MethodDefinition<Buffer, MessageShape<DescMessage>>>; impls: grpc.UntypedServiceImplementation }>();
  // Methods grpc-js does not serve here: connect-node answers them on the same connection.
  const otherKinds = new Set<string>();
  for (const [path, spec] of methods) {
    if (spec.kind !== "unary" && spec.kind !== "server_streaming") {
      otherKinds.add(path);
      continue;
    }
    const serviceName = spec.method.parent.typeName;
    let entry = byService.get(serviceName);
    if (!entry) byService.set(serviceName, (entry = { definition: {}, impls: {} }));
    const output = spec.method.output;
    entry.definition[spec.method.localName] = {
      path,
      requestStream: false,
      responseStream: spec.kind === "server_streaming",
      // Decoded by the handler, so a malformed body is INVALID_ARGUMENT like on every protocol.
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (m: MessageShape<DescMessage>) => asBuffer(toBinary(output, m)),
      responseDeserialize: (b: Buffer) => fromBinary(output, b),
    };
    entry.impls[spec.method.localName] = spec.kind === "unary" ? unaryHandler(spec, path) : streamHandler(spec, path);
  }
  for (const { definition, impls } of byService.values()) server.addService(definition, impls);

  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  // grpc-js keeps the HTTP/2 server of an injector to itself; it is needed here to add the
  // compatibility layer beside grpc-js on the same connections.
  const owned = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> }).http2Servers;
  const http2Server = owned ? [...owned.keys()].at(-1) : undefined;
  if (!http2Server) throw new Error("@grpc/grpc-js: cannot find the HTTP/2 server of the connection injector (unsupported version)");
  const grpcListeners = http2Server.listeners("stream") as ((...args: unknown[]) => void)[];
  if (grpcListeners.length !== 1) throw new Error("@grpc/grpc-js: unexpected stream listeners on its HTTP/2 server (unsupported version)");
  const grpcListener = grpcListeners[0]!;
  http2Server.removeAllListeners("stream");

  function callInit(call: grpc.ServerUnaryCall<Buffer, unknown> | grpc.ServerWritableStream<Buffer, unknown>, path: string): { init: CallInit; abort: LazyAbort } {
    const raw = call.metadata.toHttp2Headers() as http2.IncomingHttpHeaders;
    const header = new RequestHeaders();
    for (const key in raw) {
      const v = raw[key];
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) header.append(key, x);
      else header.set(key, String(v));
    }
    // grpc-js strips it from the metadata; the tracing interceptor reads the protocol from it.
    header.set("content-type", "application/grpc+proto");
    const abort = new LazyAbort();
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    const timeoutMs = Number.isFinite(deadlineMs) ? Math.max(0, deadlineMs - Date.now()) : undefined;
    const stream = (call as unknown as { call?: { stream?: http2.ServerHttp2Stream } }).call?.stream;
    const contextValues = opts.contextValues(streamRequestView(stream, raw, path));
    return { init: { protocolName: "grpc", url: path, header: header.asHeaders(), cancel: abort, contextValues, timeoutMs }, abort };
  }

  function unaryHandler(spec: MethodImplSpec, path: string): grpc.handleUnaryCall<Buffer, unknown> {
    return (call, callback) => dispatch.run(connectionOf(call), () => serveUnary(spec, path, call, callback));
  }

  function serveUnary(spec: MethodImplSpec, path: string, call: grpc.ServerUnaryCall<Buffer, unknown>, callback: grpc.sendUnaryData<unknown>): void {
    // Gone while it waited its turn: grpc-js has answered it already.
    if (call.cancelled) return;
    let input;
    try {
      input = decode(spec.method.input, call.request, opts.readMaxBytes);
    } catch (err) {
      callback(toStatus(err));
      return;
    }
    const { init, abort } = callInit(call, path);
    // grpc-js reports every call as cancelled once its status is sent: listen until then only.
    const onCancelled = () => abort.abort();
    call.once("cancelled", onCancelled);
    invoker.unary(spec, input, init).then(
      (res) => {
        call.off("cancelled", onCancelled);
        if (!isEmpty(res.header)) call.sendMetadata(toMetadata(res.header));
        callback(null, res.message, isEmpty(res.trailer) ? undefined : toMetadata(res.trailer));
      },
      (err: unknown) => {
        call.off("cancelled", onCancelled);
        callback(toStatus(err));
      },
    );
  }

  function streamHandler(spec: MethodImplSpec, path: string): grpc.handleServerStreamingCall<Buffer, unknown> {
    return (call) => dispatch.run(connectionOf(call), () => serveStream(spec, path, call));
  }

  function serveStream(spec: MethodImplSpec, path: string, call: grpc.ServerWritableStream<Buffer, unknown>): void {
    if (call.cancelled) return;
    let input;
    try {
      input = decode(spec.method.input, call.request, opts.readMaxBytes);
    } catch (err) {
      call.emit("error", toStatus(err));
      return;
    }
    const { init, abort } = callInit(call, path);
    let cancelled = false;
    let wake: (() => void) | undefined;
    const onCancelled = () => {
      cancelled = true;
      abort.abort();
      wake?.();
    };
    // As for unary calls: grpc-js reports the call cancelled once its status is out, which
    // would abort the call's signal for nothing (an AbortError made per refused stream).
    call.once("cancelled", onCancelled);
    call.on("drain", () => wake?.());
    void (async () => {
      try {
        const res = await invoker.serverStream(spec, input, init);
        if (!isEmpty(res.header)) call.sendMetadata(toMetadata(res.header));
        for await (const m of res.messages) {
          if (cancelled) break;
          if (!call.write(m)) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
          }
        }
        if (!cancelled) {
          const trailer = res.trailer();
          call.off("cancelled", onCancelled);
          call.end(isEmpty(trailer) ? undefined : toMetadata(trailer));
        }
      } catch (err) {
        if (!cancelled) {
          call.off("cancelled", onCancelled);
          call.emit("error", toStatus(err));
        }
      }
    })();
  }

  return {
    http2Server,
    inject: (socket) => injector.injectConnection(socket),
    serves: (contentType, path) =>
      contentType !== undefined && GRPC_CONTENT_TYPE.test(contentType) && (path === undefined || !otherKinds.has(path.split("?", 1)[0]!)),
    handleStream(stream, headers, flags, rawHeaders) {
      refuseIncompleteEnvelope(stream);
      grpcListener(stream, headers, flags, rawHeaders);
    },
    destroy: () => injector.destroy(),
  };
}

function decode(schema: DescMessage, bytes: Buffer, readMaxBytes: number): MessageShape<DescMessage> {
  if (bytes.byteLength > readMaxBytes) {
    throw new ConnectError(`message size ${bytes.byteLength} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
  }
  return decodeRequestMessage(schema, bytes);
}

/** Calls without a known connection share one turn. */
const unknownConnection = {};

/** The HTTP/2 connection a call came on: the key of its turns. */
function connectionOf(call: object): object {
  return (call as { call?: { stream?: http2.ServerHttp2Stream } }).call?.stream?.session ?? unknownConnection;
}

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

function isEmpty(h: Headers): boolean {
  for (const _ of h.keys()) return false;
  return true;
}

function toMetadata(h: Headers): grpc.Metadata {
  const md = new grpc.Metadata();
  h.forEach((value, key) => {
    if (key.endsWith("-bin")) md.add(key, Buffer.from(value, "base64"));
    else md.add(key, value);
  });
  return md;
}

/**
 * The status grpc-js sends for an error: code and message, the error's metadata as trailers,
 * and its details as `grpc-status-details-bin` exactly as connect-node encodes them.
 */
function toStatus(err: unknown): Partial<grpc.StatusObject> {
  // Errors raised before the interceptors (decoding, size limit) get their ErrorInfo here.
  const e = toWireError(err);
  const md = toMetadata(e.metadata);
  if (e.details.length > 0) {
    const h = new Headers();
    setTrailerStatus(h, e);
    const bin = h.get("grpc-status-details-bin");
    if (bin) md.set("grpc-status-details-bin", Buffer.from(bin, "base64"));
  }
  return { code: e.code as number as grpc.status, details: e.rawMessage, metadata: md };
}

/**
 * A request body that ends inside a message envelope is malformed input: answered
 * INVALID_ARGUMENT "protocol error: incomplete envelope", as connect-es answers it, where
 * grpc-js would only see a request without a message. Registered before grpc-js's own
 * listeners, so it runs first; the stream is closed, so grpc-js then sends nothing.
 */
function refuseIncompleteEnvelope(stream: http2.ServerHttp2Stream): void {
  let headerSeen = 0;
  let lengthBytes = 0;
  let bodyLeft = 0;
  stream.on("data", (chunk: Buffer) => {
    let i = 0;
    while (i < chunk.length) {
      if (bodyLeft > 0) {
        const take = Math.min(bodyLeft, chunk.length - i);
        bodyLeft -= take;
        i += take;
        continue;
      }
      // Byte 0 is the flags; bytes 1-4 the big-endian length.
      if (headerSeen > 0) lengthBytes = lengthBytes * 256 + chunk[i]!;
      headerSeen++;
      i++;
      if (headerSeen === 5) {
        bodyLeft = lengthBytes;
        headerSeen = 0;
        lengthBytes = 0;
      }
    }
  });
  stream.once("end", () => {
    if (headerSeen === 0 && bodyLeft === 0) return;
    if (stream.headersSent || stream.destroyed) return;
    const status = new Headers();
    setTrailerStatus(status, withErrorInfo(new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument)));
    const headers: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": "application/grpc+proto" };
    status.forEach((v, k) => (headers[k] = v));
    stream.respond(headers, { endStream: true });
    stream.close();
  });
}

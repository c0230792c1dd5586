/**
 * gRPC (application/grpc, application/grpc+proto) served on node:http2's core stream API,
 * from the same service implementations and Connect interceptors as every other protocol
 * (through the {@link RpcInvoker}). No gRPC library runs on the server: the front reads the
 * length-prefixed request message, runs the method in its turn (see fair-dispatch.ts) and
 * writes headers, messages and status trailers itself (see grpc-call.ts). grpc-js cost about
 * 124 µs of CPU per call on its own here against about 88 µs for the bare core API, and
 * connect-node several times more.
 *
 * The front owns the HTTP/2 server that every HTTP/2 connection goes to; each stream is
 * dispatched by method and content type, to the front or to node:http2's compatibility layer
 * (connect-node and the HTTP routes). Client- and bidi-streaming methods (server reflection)
 * and gRPC with other codecs stay with connect-node.
 */
import * as http2 from "node:http2";
import type { Socket } from "node:net";
import { Code, ConnectError, type ContextValues, type MethodImplSpec } from "@connectrpc/connect";
import { createFairDispatch, type FairDispatch } from "./fair-dispatch.js";
import { refuseGrpcStream, serveGrpcCall, type GrpcCallDeps } from "./grpc-call.js";
import type { HttpRequest } from "./http-routes.js";
import type { MethodTable, RpcInvoker } from "./rpc-invoker.js";

export { streamRequestView } from "./grpc-call.js";

/** Options of {@link createGrpcFront}. */
export interface GrpcFrontOptions {
  methods: MethodTable;
  invoker: RpcInvoker;
  /** Largest request message, in bytes; larger ones get RESOURCE_EXHAUSTED (MESSAGE_TOO_LARGE). */
  readMaxBytes: number;
  /** Context values of one call, from a view of its HTTP/2 stream (see {@link streamRequestView}). */
  contextValues(req: HttpRequest): ContextValues;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised on every connection; default Node's (unlimited). */
  maxConcurrentStreams?: number;
  /** Turns for the handlers (see fair-dispatch.ts); default one of its own. */
  dispatch?: FairDispatch;
}

/** The gRPC front and the HTTP/2 server it owns. */
export interface GrpcFront {
  /** The HTTP/2 server that every HTTP/2 connection goes to; it never listens itself. */
  readonly http2Server: http2.Http2Server;
  /** Hands an HTTP/2 connection (cleartext, or TLS after ALPN chose h2) to the server. */
  inject(socket: Socket): void;
  /**
   * True for a stream the front serves: a POST with a gRPC protobuf content type to a path
   * that is not a client- or bidi-streaming method (those stay with connect-node). Unknown
   * paths are the front's too: it answers them UNIMPLEMENTED.
   */
  serves(headers: http2.IncomingHttpHeaders): boolean;
  /** Serves one admitted stream that {@link GrpcFront.serves} accepted. */
  handleStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void;
}

const GRPC_CONTENT_TYPE = /^application\/grpc(?:\+proto)?(?:;.*)?$/i;

function isGrpcProto(contentType: string | undefined): boolean {
  return contentType === "application/grpc" || contentType === "application/grpc+proto" || (contentType !== undefined && GRPC_CONTENT_TYPE.test(contentType));
}

/** Builds the front and its HTTP/2 server. */
export function createGrpcFront(opts: GrpcFrontOptions): GrpcFront {
  const served = new Map<string, MethodImplSpec>();
  // Methods the front does not serve: connect-node answers them on the same connection.
  const otherKinds = new Set<string>();
  for (const [path, spec] of opts.methods) {
    if (spec.kind === "unary" || spec.kind === "server_streaming") served.set(path, spec);
    else otherKinds.add(path);
  }
  const deps: GrpcCallDeps = {
    invoker: opts.invoker,
    dispatch: opts.dispatch ?? createFairDispatch(),
    readMaxBytes: opts.readMaxBytes,
    contextValues: opts.contextValues,
  };
  const http2Server = http2.createServer({
    // Response headers are the service's own; Node's default cap would reject large ones.
    maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
    // As grpc-js configured it: Node's 10 MB per-session cap, counted over every stream's
    // buffered output, would cut off a connection carrying thousands of watch streams. Each
    // stream's output is bounded by backpressure and the stall timeout instead.
    maxSessionMemory: Number.MAX_SAFE_INTEGER,
    ...(opts.maxConcurrentStreams === undefined ? {} : { settings: { maxConcurrentStreams: opts.maxConcurrentStreams } }),
  });

  return {
    http2Server,
    inject: (socket) => void http2Server.emit("connection", socket),
    serves(headers) {
      if (headers[":method"] !== "POST" || !isGrpcProto(headers["content-type"])) return false;
      const path = headers[":path"];
      if (typeof path !== "string") return true;
      const q = path.indexOf("?");
      return !otherKinds.has(q < 0 ? path : path.slice(0, q));
    },
    handleStream(stream, headers) {
      const path = String(headers[":path"] ?? "");
      const spec = served.get(path);
      if (!spec) {
        refuseGrpcStream(stream, new ConnectError(`The server does not implement the method ${path.slice(0, 256)}`, Code.Unimplemented));
        return;
      }
      serveGrpcCall(deps, spec, path, stream, headers);
    },
  };
}

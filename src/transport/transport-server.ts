import { setMaxListeners } from "node:events";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import * as tls from "node:tls";
import { createContextValues } from "@connectrpc/connect";
import type { ConnectRouter, ContextValues, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { systemClock } from "../clock.js";
import type { Clock } from "../clock.js";
import { ConnectionRegistry } from "./connection-registry.js";
import { createConnectUnaryListener } from "./connect-unary.js";
import { createGrpcFront, type GrpcFront } from "./grpc-front.js";
import { createRpcInvoker, methodTable } from "./rpc-invoker.js";
import { ConnectionGuard, type RefusalReason } from "./connection-guard.js";
import {
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_FIRST_BYTES_TIMEOUT_MS,
  DEFAULT_HTTP1_HEADERS_TIMEOUT_MS,
  DEFAULT_READ_MAX_BYTES,
  DEFAULT_TRANSPORT_LIMITS,
  isUnauthenticatedPath,
  type TransportLimits,
} from "./defaults.js";
import { createHttp2Guard, type Http2Guard, type Http2GuardStats } from "./http2-guard.js";
import { createHttpRouteListener } from "./http-routes.js";
import type { HttpRequest, HttpResponse, HttpRoute, RequestListener } from "./http-routes.js";
import { shutdownSignalKey } from "./shutdown-context.js";
import { sniffProtocol } from "./sniff-protocol.js";

/** Options of {@link createTransportServer}. */
export interface TransportServerOptions {
  /** Registers the Connect services, e.g. `(router) => router.service(Health, impl)`. */
  routes: (router: ConnectRouter) => void;
  /** Plain HTTP endpoints, matched before the RPCs (exact path, GET only). */
  httpRoutes?: HttpRoute[];
  /** Connect interceptors applied to every RPC, outermost first. */
  interceptors?: Interceptor[];
  /** PEM certificate and key. With them: TLS, HTTP/2 and HTTP/1.1 chosen by ALPN. Without: cleartext h2c + HTTP/1.1. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Largest request message, in bytes; default {@link DEFAULT_READ_MAX_BYTES} (1 MiB). Larger → RESOURCE_EXHAUSTED. */
  readMaxBytes?: number;
  /**
   * Builds the per-call context values from the Node request (e.g. the peer certificate).
   * The server adds {@link shutdownSignalKey} to whatever this returns.
   */
  contextValues?: (req: HttpRequest) => ContextValues;
  /** Silence allowed before a connection's first bytes / TLS handshake, in ms; default {@link DEFAULT_FIRST_BYTES_TIMEOUT_MS}. */
  firstBytesTimeoutMs?: number;
  /** Time an HTTP/1.1 client has to send complete request headers, in ms; default {@link DEFAULT_HTTP1_HEADERS_TIMEOUT_MS}. */
  http1HeadersTimeoutMs?: number;
  /** Connection and stream limits; each one not given is {@link DEFAULT_TRANSPORT_LIMITS}'s. */
  limits?: Partial<TransportLimits>;
  /** Clock for the close grace timer and the limits' timers; default the system clock. */
  clock?: Clock;
  /**
   * Receives failures that no caller sees: an HTTP route that threw, a listening socket
   * error after start. Default: `console.error`. Per-connection socket errors (ECONNRESET…)
   * are expected and not reported.
   */
  onError?: (error: unknown, context: string) => void;
}

/** Lifecycle of a transport server. */
export type TransportServerState = "idle" | "listening" | "closing" | "closed";

/** One port serving Connect, gRPC and gRPC-Web RPCs plus plain HTTP routes. */
export interface TransportServer {
  /** Starts listening; `port` 0 picks a free port. Rejects on bind errors, or when not idle. */
  listen(host: string, port: number): Promise<AddressInfo>;
  /** Where the server listens, once `listen` resolved. */
  readonly address: AddressInfo | undefined;
  /**
   * Graceful stop: stops accepting, aborts `shuttingDown`, sends GOAWAY to HTTP/2 sessions,
   * closes idle HTTP/1.1 connections, waits up to `graceMs` (default
   * {@link DEFAULT_CLOSE_GRACE_MS}) for in-flight calls, then destroys what is left.
   * Idempotent; resolves when every socket is closed.
   */
  close(graceMs?: number): Promise<void>;
  /**
   * Aborted when close() begins. Long-lived handlers observe it (directly, or through
   * `ctx.values.get(shutdownSignalKey)`) to send a final event and end.
   */
  readonly shuttingDown: AbortSignal;
  /** Current lifecycle state. */
  readonly state: TransportServerState;
  /** Open sockets plus HTTP/2 sessions, including ones still being sniffed. */
  readonly openConnections: number;
  /** HTTP/2 streams being served (admitted and not yet destroyed), on every connection. */
  readonly openStreams: number;
  /** What the limits refused or cut off so far. */
  readonly limitStats: { refusedConnections: Record<RefusalReason, number> } & Http2GuardStats;
}

const ignore = () => {};

/**
 * Creates (without listening) a server that speaks gRPC (HTTP/2), gRPC-Web and Connect
 * (HTTP/1.1 and HTTP/2) through connect-node, plus plain HTTP routes, on one port.
 *
 * Cleartext: each connection's first bytes are sniffed; the HTTP/2 preface (prior-knowledge
 * h2c) goes to an HTTP/2 server, anything else to an HTTP/1.1 server. TLS: ALPN picks h2 or
 * http/1.1.
 */
export function createTransportServer(opts: TransportServerOptions): TransportServer {
  const clock = opts.clock ?? systemClock;
  const timeouts: Timeouts = {
    firstBytesMs: opts.firstBytesTimeoutMs ?? DEFAULT_FIRST_BYTES_TIMEOUT_MS,
    http1HeadersMs: opts.http1HeadersTimeoutMs ?? DEFAULT_HTTP1_HEADERS_TIMEOUT_MS,
  };
  const onError = opts.onError ?? ((error: unknown, context: string) => console.error(`transport: ${context}`, error));
  const shutdown = new AbortController();
  // Every long-lived stream listens on it: many listeners are expected, not a leak.
  setMaxListeners(0, shutdown.signal);
  const registry = new ConnectionRegistry();

  const interceptors = opts.interceptors ?? [];
  const readMaxBytes = opts.readMaxBytes ?? DEFAULT_READ_MAX_BYTES;
  const contextValues = (req: HttpRequest) => {
    const values = opts.contextValues?.(req) ?? createContextValues();
    values.set(shutdownSignalKey, shutdown.signal);
    return values;
  };
  const connectHandler = connectNodeAdapter({ routes: opts.routes, interceptors, readMaxBytes, contextValues }) as RequestListener;

  // gRPC on the HTTP/2 core API and unary Connect through the lean path run the same
  // implementations and interceptors as connect-node, which serves everything else.
  const methods = methodTable(opts.routes);
  const invoker = createRpcInvoker(interceptors);
  const limits: TransportLimits = { ...DEFAULT_TRANSPORT_LIMITS, ...opts.limits };
  const connections = new ConnectionGuard({
    maxConnections: limits.maxConnections,
    maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
    penaltyMs: limits.abusePenaltyMs,
    clock,
  });
  const grpcFront = createGrpcFront({
    methods,
    invoker,
    readMaxBytes,
    contextValues,
    maxConcurrentStreams: limits.maxConcurrentStreams,
  });
  const guard = createHttp2Guard(grpcFront.http2Server, {
    clock,
    firstRequestTimeoutMs: limits.firstRequestTimeoutMs,
    idleTimeoutMs: limits.idleTimeoutMs,
    maxUnauthenticatedStreams: limits.maxUnauthenticatedStreams,
    isUnauthenticated: isUnauthenticatedPath,
    maxResetsPerSecond: limits.maxResetsPerSecond,
    stallTimeoutMs: limits.streamStallTimeoutMs,
    onAbuse: (session) => connections.penalize(session.socket?.remoteAddress),
  });
  const connectUnary = createConnectUnaryListener({ methods, invoker, readMaxBytes, contextValues }, connectHandler);

  const routed = createHttpRouteListener(opts.httpRoutes ?? [], connectUnary, (error, route) =>
    onError(error, `http route ${route.method} ${route.path} failed`),
  );
  const listener = (req: HttpRequest, res: HttpResponse) => {
    if (req.httpVersionMajor === 1) registry.addHttp1Response(req.socket as net.Socket, res);
    routed(req, res);
  };

  const h1 = createHttp1Server(timeouts, listener);
  attachHttp2(grpcFront, guard, registry, listener);
  const front = opts.tls
    ? createTlsFront(opts.tls, timeouts, registry, connections, h1, grpcFront)
    : createCleartextFront(timeouts, registry, connections, h1, grpcFront);

  let state: TransportServerState = "idle";
  let address: AddressInfo | undefined;
  let listening: Promise<AddressInfo> | undefined;
  let closing: Promise<void> | undefined;

  return {
    get address() {
      return address;
    },
    get state() {
      return state;
    },
    get openConnections() {
      return registry.size;
    },
    get openStreams() {
      return guard.openStreams;
    },
    get limitStats() {
      return { refusedConnections: { ...connections.refused }, ...guard.stats };
    },
    shuttingDown: shutdown.signal,

    listen(host, port) {
      if (state !== "idle") return Promise.reject(new Error(`transport server cannot listen: it is ${state}`));
      state = "listening";
      listening = new Promise<AddressInfo>((resolve, reject) => {
        const onListenError = (error: Error) => {
          if (state === "listening") state = "idle";
          listening = undefined;
          reject(error);
        };
        front.server.once("error", onListenError);
        front.server.listen({ host, port }, () => {
          front.server.off("error", onListenError);
          front.server.on("error", (error) => onError(error, "listening socket error"));
          address = front.server.address() as AddressInfo;
          resolve(address);
        });
      });
      return listening;
    },

    close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      closing ??= (async () => {
        state = "closing";
        shutdown.abort();
        // A listen still binding must finish first, or its socket would outlive close().
        const bound = listening ? await listening.then(() => true, () => false) : false;
        const stopped = bound ? new Promise<void>((resolve) => front.server.close(() => resolve())) : undefined;
        front.closeInner();
        registry.beginClose();
        const timer = clock.setTimeout(() => registry.destroyAll(), graceMs);
        try {
          await registry.whenEmpty();
          await stopped;
        } finally {
          clock.clearTimeout(timer);
          // Only now: while draining, the guard still releases streams that would hold a session.
          guard.close();
          state = "closed";
        }
      })();
      return closing;
    },
  };
}

interface Timeouts {
  firstBytesMs: number;
  http1HeadersMs: number;
}

/**
 * How often Node checks HTTP/1.1 connections for expired header/request timeouts, in ms:
 * often enough that a short headers timeout is honoured, never more than Node's 30 s.
 */
function connectionsCheckingInterval(http1HeadersMs: number): number {
  return Math.min(30_000, Math.max(50, Math.floor(http1HeadersMs / 4)));
}

interface Front {
  /** The server that owns the listening socket. */
  server: net.Server;
  /** Releases the inner servers' own resources (timers); connections are the registry's. */
  closeInner(): void;
}

/** The HTTP/1.1 server that sockets are handed to; it never listens itself. */
function createHttp1Server(timeouts: Timeouts, listener: RequestListener): http.Server {
  const h1 = http.createServer(
    {
      headersTimeout: timeouts.http1HeadersMs,
      // Node insists requestTimeout (whole request, default 300 s) be >= headersTimeout.
      requestTimeout: Math.max(300_000, timeouts.http1HeadersMs),
      connectionsCheckingInterval: connectionsCheckingInterval(timeouts.http1HeadersMs),
    },
    listener as http.RequestListener,
  );
  // Node arms its header/request timeout checks on 'listening', and this server never
  // listens itself: without this a slow-header client could hold a socket forever.
  h1.emit("listening");
  h1.on("error", ignore);
  return h1;
}

/**
 * The HTTP/2 server every HTTP/2 connection goes to (the gRPC front's), with node:http2's
 * compatibility layer added for connect-node and the HTTP routes. Each stream goes to the
 * gRPC front when it is a gRPC call with protobuf, else to the compatibility layer.
 */
function attachHttp2(grpcFront: GrpcFront, guard: Http2Guard, registry: ConnectionRegistry, listener: RequestListener): http2.Http2Server {
  const h2 = grpcFront.http2Server;
  // Adding a 'request' listener is what installs node's compatibility 'stream' listener.
  h2.on("request", listener as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  const compat = h2.listeners("stream") as ((...args: unknown[]) => void)[];
  h2.removeAllListeners("stream");
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    if (!guard.admit(stream, headers)) return;
    if (grpcFront.serves(headers)) grpcFront.handleStream(stream, headers);
    else for (const l of compat) l(stream, headers, flags, rawHeaders);
  });
  h2.on("session", (session: http2.ServerHttp2Session) => registry.addSession(session));
  h2.on("sessionError", ignore);
  h2.on("error", ignore);
  return h2;
}

function createCleartextFront(timeouts: Timeouts, registry: ConnectionRegistry, connections: ConnectionGuard, h1: http.Server, grpcFront: GrpcFront): Front {
  // The socket options node:http would accept with (the inner servers never accept):
  // noDelay, and allowHalfOpen so a client that half-closes after its request still gets
  // the response (turned off again below for HTTP/2).
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    if (connections.admit(socket)) return;
    registry.addSocket(socket, "pending");
    void sniffProtocol(socket, timeouts.firstBytesMs).then((protocol) => {
      if (protocol === undefined || socket.destroyed) return;
      registry.setKind(socket, protocol === "h2c" ? "h2" : "http1");
      // The registry destroys an idle HTTP/1.1 socket when sniffing ends during close.
      if (socket.destroyed) return;
      // node:http2 expects its sockets not half-open: with it, a peer's FIN would leave the
      // session's socket open forever.
      socket.allowHalfOpen = protocol === "http1";
      if (protocol === "h2c") grpcFront.inject(socket);
      else h1.emit("connection", socket);
    });
  });
  return {
    server,
    closeInner() {
      h1.close();
    },
  };
}

function createTlsFront(
  creds: { cert: string | Buffer; key: string | Buffer },
  timeouts: Timeouts,
  registry: ConnectionRegistry,
  connections: ConnectionGuard,
  h1: http.Server,
  grpcFront: GrpcFront,
): Front {
  // ALPN picks h2 or http/1.1; a client that names neither (or no ALPN at all) gets HTTP/1.1.
  const server = tls.createServer({
    cert: creds.cert,
    key: creds.key,
    ALPNProtocols: ["h2", "http/1.1"],
    handshakeTimeout: timeouts.firstBytesMs,
  });
  server.on("connection", (socket: net.Socket) => {
    if (connections.admit(socket)) return;
    registry.addSocket(socket, "transport");
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    const h2 = socket.alpnProtocol === "h2";
    registry.addSocket(socket, h2 ? "h2" : "http1");
    if (socket.destroyed) return;
    if (h2) grpcFront.inject(socket);
    else h1.emit("connection", socket);
  });
  server.on("tlsClientError", ignore);
  return {
    server,
    closeInner() {
      h1.close();
    },
  };
}

/**
 * Defaults for the transport server. The integrator's config module may override each one
 * through `TransportServerOptions`; they live here so the transport has no config dependency.
 */

/** Largest request message accepted, in bytes (1 MiB). Larger ones fail with RESOURCE_EXHAUSTED. */
export const DEFAULT_READ_MAX_BYTES = 1024 * 1024;

/** How long `close()` lets in-flight calls finish before destroying what is left, in ms. */
export const DEFAULT_CLOSE_GRACE_MS = 10_000;

/**
 * How long a new connection may stay silent before its first bytes (cleartext) or before
 * its TLS handshake completes, in ms. Bounds the cost of clients that connect and say nothing.
 */
export const DEFAULT_FIRST_BYTES_TIMEOUT_MS = 10_000;

/**
 * Time an HTTP/1.1 client has to send complete request headers, in ms, counted from the
 * request's first byte whatever arrives in between. Bounds slow-header (slowloris) clients
 * once past protocol sniffing.
 */
export const DEFAULT_HTTP1_HEADERS_TIMEOUT_MS = 10_000;

/** The limits every connection and HTTP/2 stream is held to (see createTransportServer). */
export interface TransportLimits {
  /** Open connections at once, all clients together; more are refused at accept. */
  maxConnections: number;
  /** Open connections at once from one client address; more are refused at accept. */
  maxConnectionsPerAddress: number;
  /** An HTTP/2 connection with no open stream is closed after this long, in ms. */
  idleTimeoutMs: number;
  /** From an HTTP/2 connection's start to its first request, in ms. */
  firstRequestTimeoutMs: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS, advertised and enforced per HTTP/2 connection. */
  maxConcurrentStreams: number;
  /** Open streams per connection to services that need no credential (health, reflection). */
  maxUnauthenticatedStreams: number;
  /** Stream resets a client may send per second on one connection; past it, the connection is cut. */
  maxResetsPerSecond: number;
  /** How long an address cut off for abuse is refused new connections, in ms. */
  abusePenaltyMs: number;
  /** A stream with output waiting and no flow-control window from its peer for this long is reset, in ms. */
  streamStallTimeoutMs: number;
}

/** The default limits. */
export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  maxConnections: 4096,
  maxConnectionsPerAddress: 256,
  idleTimeoutMs: 5 * 60_000,
  firstRequestTimeoutMs: 10_000,
  maxConcurrentStreams: 1000,
  maxUnauthenticatedStreams: 16,
  maxResetsPerSecond: 100,
  abusePenaltyMs: 10_000,
  streamStallTimeoutMs: 30_000,
};

/** Services that need no credential: their streams have a budget of their own per connection. */
export function isUnauthenticatedPath(path: string): boolean {
  return path.startsWith("/grpc.health.v1.Health/") || path.startsWith("/grpc.reflection.");
}

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
 * Time an HTTP/1.1 client has to send complete request headers, in ms (Node's default).
 * Bounds slow-header (slowloris) clients once past protocol sniffing.
 */
export const DEFAULT_HTTP1_HEADERS_TIMEOUT_MS = 60_000;

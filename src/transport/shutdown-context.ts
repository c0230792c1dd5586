import { createContextKey } from "@connectrpc/connect";

const neverAborted = new AbortController().signal;

/**
 * Context value holding the transport server's `shuttingDown` signal, so a handler can end
 * a long-lived stream gracefully when the server begins to close:
 *
 * ```ts
 * const shuttingDown = ctx.values.get(shutdownSignalKey);
 * ```
 *
 * Unlike `ctx.signal`, it is not aborted for unary calls or downstream work: in-flight calls
 * keep running until they finish or the grace period ends. Outside a transport server (e.g.
 * `createRouterTransport` in tests) it defaults to a signal that never aborts.
 */
export const shutdownSignalKey = createContextKey<AbortSignal>(neverAborted, {
  description: "capvend transport shutting down",
});

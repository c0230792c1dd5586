/**
 * Limits on every HTTP/2 connection, whichever code serves its streams (the gRPC front or
 * connect-node): the first request must come within a deadline, a connection with no open
 * stream is closed once idle, unauthenticated streams (health, reflection) have a small
 * budget per connection, a client that resets streams too fast is cut off (rapid reset),
 * a stream whose peer grants no flow-control window is reset, and a stream whose response
 * is complete is closed even when the client never ends its side (RST_STREAM NO_ERROR,
 * RFC 9113 §8.1), and a closed stream whose request body nobody will read is released, so
 * nothing is left half-open and neither a departing client nor shutdown is held by it.
 */
import * as http2 from "node:http2";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import type { Clock } from "../clock.js";
import { capvendError } from "../errors.js";

const { NGHTTP2_NO_ERROR, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/** How often streams are checked for a stalled flow-control window, in ms. */
export const STALL_SWEEP_INTERVAL_MS = 1000;

/** Options of {@link createHttp2Guard}. */
export interface Http2GuardOptions {
  clock: Clock;
  /** From a connection's start to its first request, in ms. */
  firstRequestTimeoutMs: number;
  /** A connection with no open stream for this long is closed, in ms. */
  idleTimeoutMs: number;
  /** Open streams per connection to services that need no credential. */
  maxUnauthenticatedStreams: number;
  /** True for a path whose service needs no credential (health, reflection). */
  isUnauthenticated(path: string): boolean;
  /** Resets a client may send per second on one connection. */
  maxResetsPerSecond: number;
  /** A stream with output waiting and no window from its peer for this long is reset, in ms. */
  stallTimeoutMs: number;
  /** Told when a connection is cut off for abuse; the transport penalizes its address. */
  onAbuse(session: http2.ServerHttp2Session, why: "rapid_reset"): void;
}

/** What the guard counted, for tests and the benchmark. */
export interface Http2GuardStats {
  idleClosed: number;
  firstRequestTimeouts: number;
  unauthenticatedRefused: number;
  rapidResetCutoffs: number;
  stallResets: number;
  halfOpenClosed: number;
  /** Streams closed with their request body unread, released by the guard (see the sweep). */
  unreadReleased: number;
}

interface Watched {
  /** Since when output has waited with no window from the peer. */
  since: number | undefined;
  /** When the response was complete. */
  finished: number | undefined;
  /** When the stream was first seen closed but not yet released by Node. */
  closed: number | undefined;
}

/** A client reset counts towards the rapid-reset limit when the stream is younger than this, in ms. */
export const RAPID_RESET_MAX_AGE_MS = 1000;

/** A response complete this long ago on a stream the client keeps open is reset, in ms. */
export const HALF_OPEN_GRACE_MS = 500;

interface SessionState {
  open: number;
  unauthenticated: number;
  sawRequest: boolean;
  timer: ReturnType<Clock["setTimeout"]> | undefined;
  resetWindowStart: number;
  resets: number;
}

/** The guard of one HTTP/2 server. */
export interface Http2Guard {
  /** Called for every new stream before it is served; false when it was refused here. */
  admit(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  readonly stats: Http2GuardStats;
  /** Streams admitted and not yet destroyed, on every connection. */
  readonly openStreams: number;
  /** Stops the sweep; call it once the connections are gone (the sweep releases streams that would hold them). */
  close(): void;
}

/** Attaches the guard to `server`'s sessions. */
export function createHttp2Guard(server: http2.Http2Server, opts: Http2GuardOptions): Http2Guard {
  const { clock } = opts;
  const sessions = new WeakMap<http2.ServerHttp2Session, SessionState>();
  const watched = new Map<http2.ServerHttp2Stream, Watched>();
  let openStreams = 0;
  const stats: Http2GuardStats = { idleClosed: 0, firstRequestTimeouts: 0, unauthenticatedRefused: 0, rapidResetCutoffs: 0, stallResets: 0, halfOpenClosed: 0, unreadReleased: 0 };

  const closing = new WeakSet<http2.ServerHttp2Session>();
  // Never from inside nghttp2's own callbacks: a stream's 'close' runs while nghttp2 is still
  // reading the frame that reset it, and a session destroyed there, with other streams' DATA
  // scheduled, makes Node's HTTP/2 layer pack empty DATA frames for streams it has already
  // forgotten, for ever and in one native call: the process stops answering anything, signals
  // included, and its memory grows by hundreds of MB a second. On the next turn of the event
  // loop the same destroy is safe.
  const closeSession = (session: http2.ServerHttp2Session, code: number) => {
    if (session.destroyed || closing.has(session)) return;
    closing.add(session);
    setImmediate(() => {
      if (session.destroyed) return;
      try {
        session.goaway(code);
      } catch {
        // Already going away.
      }
      session.destroy();
    });
  };

  const arm = (session: http2.ServerHttp2Session, state: SessionState) => {
    if (state.timer) clock.clearTimeout(state.timer);
    state.timer = undefined;
    if (state.open > 0) return;
    const first = !state.sawRequest;
    state.timer = clock.setTimeout(
      () => {
        state.timer = undefined;
        if (state.open > 0 || session.destroyed) return;
        if (first) stats.firstRequestTimeouts++;
        else stats.idleClosed++;
        closeSession(session, NGHTTP2_NO_ERROR);
      },
      first ? opts.firstRequestTimeoutMs : opts.idleTimeoutMs,
    );
  };

  // A stream the client resets at once has lost its session by the time the server's
  // 'stream' event runs: note each stream's session before that.
  const sessionOf = new WeakMap<http2.ServerHttp2Stream, http2.ServerHttp2Session>();

  const countReset = (session: http2.ServerHttp2Session, state: SessionState) => {
    const now = clock.now();
    if (now - state.resetWindowStart >= 1000) {
      state.resetWindowStart = now;
      state.resets = 0;
    }
    if (++state.resets > opts.maxResetsPerSecond && !session.destroyed && !closing.has(session)) {
      stats.rapidResetCutoffs++;
      opts.onAbuse(session, "rapid_reset");
      closeSession(session, NGHTTP2_ENHANCE_YOUR_CALM);
    }
  };

  server.on("session", (session: http2.ServerHttp2Session) => {
    const state: SessionState = { open: 0, unauthenticated: 0, sawRequest: false, timer: undefined, resetWindowStart: clock.now(), resets: 0 };
    sessions.set(session, state);
    session.prependListener("stream", (stream: http2.ServerHttp2Stream) => sessionOf.set(stream, session));
    arm(session, state);
    session.once("close", () => {
      if (state.timer) clock.clearTimeout(state.timer);
      state.timer = undefined;
    });
  });

  // Twice a stall check's resolution, so a half-open stream is reset within a second.
  const sweep = setInterval(() => {
    const now = clock.now();
    // forEach, not for…of: no entry pair per stream, and it runs over every stream held.
    watched.forEach((s, stream) => {
      if (stream.destroyed) {
        watched.delete(stream);
        return;
      }
      if (stream.closed) {
        // Closed with NO_ERROR, Node keeps a stream until its request body has been read to
        // the end. A handler that stopped reading (an oversized request) never reads it, and
        // the stream would then hold its session open for ever: after a GOAWAY, nghttp2 stops
        // reading the socket while a stream is left, so even a client that went away stays
        // connected. Nothing more can be sent or received on it: release it.
        s.closed ??= now;
        if (now - s.closed >= HALF_OPEN_GRACE_MS) {
          stats.unreadReleased++;
          watched.delete(stream);
          stream.destroy();
        }
        return;
      }
      // `state` is a native call that builds an object: asked only once the response has ended.
      if (s.finished === undefined && stream.writableEnded && responseComplete(stream)) s.finished = now;
      if (s.finished !== undefined) {
        if (now - s.finished >= HALF_OPEN_GRACE_MS && peerStillOpen(stream)) {
          stats.halfOpenClosed++;
          stream.close(NGHTTP2_NO_ERROR);
        }
        return;
      }
      if (stream.bufferSize > 0) {
        s.since ??= now;
        if (now - s.since >= opts.stallTimeoutMs) {
          stats.stallResets++;
          stream.close(NGHTTP2_ENHANCE_YOUR_CALM);
        }
      } else {
        s.since = undefined;
      }
    });
  }, STALL_SWEEP_INTERVAL_MS / 2);
  sweep.unref();

  return {
    stats,
    get openStreams() {
      return openStreams;
    },
    close: () => clearInterval(sweep),
    admit(stream, headers) {
      const session = sessionOf.get(stream);
      const state = session ? sessions.get(session) : undefined;
      if (!session || !state) return true;
      state.sawRequest = true;
      if (stream.destroyed || stream.closed) {
        // Reset by the client before it could be served.
        if (stream.rstCode !== NGHTTP2_NO_ERROR) countReset(session, state);
        return false;
      }
      // A stream the client resets soon after opening it counts against its connection,
      // served or refused: that is the rapid-reset pattern. A client dropping streams it has
      // held for a while (a runtime abandoning its watches to reconnect elsewhere) is not,
      // however many at once. The server's own resets use NO_ERROR (a complete response) or
      // ENHANCE_YOUR_CALM.
      const openedAt = clock.now();
      stream.once("close", () => {
        if (stream.rstCode === NGHTTP2_NO_ERROR || stream.rstCode === NGHTTP2_ENHANCE_YOUR_CALM) return;
        if (clock.now() - openedAt < RAPID_RESET_MAX_AGE_MS) countReset(session, state);
      });
      const path = String(headers[":path"] ?? "");
      const unauthenticated = opts.isUnauthenticated(path);
      if (unauthenticated && state.unauthenticated >= opts.maxUnauthenticatedStreams) {
        stats.unauthenticatedRefused++;
        refuse(stream, headers, `too many open streams to ${path.split("/")[1] ?? "this service"} on this connection (limit ${opts.maxUnauthenticatedStreams})`);
        return false;
      }
      state.open++;
      openStreams++;
      if (unauthenticated) state.unauthenticated++;
      arm(session, state);
      const entry: Watched = { since: undefined, finished: undefined, closed: undefined };
      watched.set(stream, entry);
      stream.on("drain", () => (entry.since = undefined));
      // The response is complete; a client that never ends its side would hold the stream.
      // The sweep resets it a moment later (at once would race the response's last frames:
      // RST_STREAM goes out before queued DATA).
      stream.once("finish", () => (entry.finished = clock.now()));
      stream.once("close", () => {
        watched.delete(stream);
        state.open--;
        openStreams--;
        if (unauthenticated) state.unauthenticated--;
        if (!session.destroyed) arm(session, state);
      });
      return true;
    },
  };
}

/** Answers a refused stream RESOURCE_EXHAUSTED in its own protocol, then closes it. */
function refuse(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, message: string): void {
  stream.on("error", () => undefined);
  if (stream.headersSent || stream.destroyed) return;
  const err = capvendError("STREAM_LIMIT", message);
  const type = String(headers["content-type"] ?? "");
  if (type.startsWith("application/grpc")) {
    const trailer = new Headers();
    setTrailerStatus(trailer, err);
    const out: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": type.split(";")[0] };
    trailer.forEach((v, k) => (out[k] = v));
    stream.respond(out, { endStream: true });
  } else {
    const body = errorToJsonBytes(err, {});
    stream.respond({ ":status": codeToHttpStatus(err.code), "content-type": "application/json", "content-length": body.byteLength });
    stream.end(body);
  }
  stream.close(NGHTTP2_NO_ERROR);
}

/** True while the client has not ended its side of the stream (no END_STREAM received). */
function peerStillOpen(stream: http2.ServerHttp2Stream): boolean {
  try {
    return stream.state.remoteClose === 0;
  } catch {
    return false;
  }
}

/** True once the server has sent END_STREAM on the stream (its response is complete). */
function responseComplete(stream: http2.ServerHttp2Stream): boolean {
  try {
    return stream.state.localClose === 1;
  } catch {
    return false;
  }
}

import type { ServerResponse } from "node:http";
import type { Http2ServerResponse, ServerHttp2Session } from "node:http2";
import type { Socket } from "node:net";

/**
 * What a tracked socket carries, which decides how `beginClose` treats it:
 * - "pending": protocol not known yet (sniffing) — nothing in flight, destroyed at once;
 * - "http1": HTTP/1.1 — destroyed once it has no response in flight;
 * - "h2": carries an HTTP/2 session — the session is closed gracefully (GOAWAY);
 * - "transport": the TCP socket under a TLS socket — left to its TLS socket, destroyed only
 *   when the grace period ends.
 */
export type SocketKind = "pending" | "http1" | "h2" | "transport";

type AnyResponse = ServerResponse | Http2ServerResponse;

interface Entry {
  kind: SocketKind;
  /** HTTP/1.1 responses not yet finished on this socket. */
  responses: Set<AnyResponse>;
}

const ignore = () => {};

/**
 * Every socket and HTTP/2 session of one server, so close() can drain them gracefully and
 * then destroy what is left: `http2.Server.close()` alone waits for client sessions forever,
 * and an idle HTTP/1.1 keep-alive socket would hold `net.Server.close()` open.
 */
export class ConnectionRegistry {
  readonly #sockets = new Map<Socket, Entry>();
  readonly #sessions = new Set<ServerHttp2Session>();
  #closing = false;
  #emptyWaiters: Array<() => void> = [];

  /** Open sockets plus open HTTP/2 sessions. */
  get size(): number {
    return this.#sockets.size + this.#sessions.size;
  }

  /** Tracks a socket until it closes. Socket errors (ECONNRESET, EPIPE…) are expected noise. */
  addSocket(socket: Socket, kind: SocketKind): void {
    if (this.#sockets.has(socket)) {
      this.setKind(socket, kind);
      return;
    }
    socket.on("error", ignore);
    if (socket.destroyed) return;
    this.#sockets.set(socket, { kind, responses: new Set() });
    socket.once("close", () => {
      this.#sockets.delete(socket);
      this.#notifyIfEmpty();
    });
    if (this.#closing) this.#drainSocket(socket);
  }

  /** Records what a socket turned out to carry. */
  setKind(socket: Socket, kind: SocketKind): void {
    const entry = this.#sockets.get(socket);
    if (!entry) return;
    entry.kind = kind;
    if (this.#closing) this.#drainSocket(socket);
  }

  /** Tracks an HTTP/2 session until it closes; a session created while closing gets GOAWAY at once. */
  addSession(session: ServerHttp2Session): void {
    session.on("error", ignore);
    if (session.destroyed) return;
    this.#sessions.add(session);
    session.once("close", () => {
      this.#sessions.delete(session);
      this.#notifyIfEmpty();
    });
    if (this.#closing) session.close();
  }

  /**
   * Tracks an HTTP/1.1 response so its socket is closed as soon as it finishes during
   * shutdown, instead of idling in keep-alive until the grace period ends.
   */
  addHttp1Response(socket: Socket, res: AnyResponse): void {
    let entry = this.#sockets.get(socket);
    if (!entry) {
      this.addSocket(socket, "http1");
      entry = this.#sockets.get(socket);
      if (!entry) return;
    }
    entry.responses.add(res);
    if (this.#closing) markConnectionClose(res);
    res.once("close", () => {
      entry.responses.delete(res);
      if (this.#closing && entry.responses.size === 0) endThenDestroy(socket);
    });
  }

  /**
   * Starts a graceful drain: GOAWAY to every HTTP/2 session (in-flight streams continue),
   * idle HTTP/1.1 and undecided sockets are destroyed, busy HTTP/1.1 sockets close after
   * their last response. Idempotent.
   */
  beginClose(): void {
    if (this.#closing) return;
    this.#closing = true;
    for (const session of this.#sessions) session.close();
    for (const socket of [...this.#sockets.keys()]) this.#drainSocket(socket);
  }

  /** Destroys every socket and session still open. */
  destroyAll(): void {
    for (const session of [...this.#sessions]) session.destroy();
    for (const socket of [...this.#sockets.keys()]) socket.destroy();
  }

  /** Resolves once no socket or session is open. */
  whenEmpty(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#emptyWaiters.push(resolve));
  }

  #drainSocket(socket: Socket): void {
    const entry = this.#sockets.get(socket);
    if (!entry) return;
    switch (entry.kind) {
      case "pending":
        socket.destroy();
        break;
      case "http1":
        if (entry.responses.size === 0) {
          socket.destroy();
        } else {
          for (const res of entry.responses) markConnectionClose(res);
        }
        break;
      case "h2":
      case "transport":
        // Drained through its session / its TLS socket.
        break;
    }
  }

  #notifyIfEmpty(): void {
    if (this.size !== 0) return;
    const waiters = this.#emptyWaiters;
    this.#emptyWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** Tells an HTTP/1.1 client not to reuse the connection, when headers are not yet out. */
function markConnectionClose(res: AnyResponse): void {
  if (!res.headersSent) res.setHeader("connection", "close");
}

/** Flushes what was written, then closes; a peer that never reads is left to the grace timer. */
function endThenDestroy(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end(() => socket.destroy());
}

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../../logging/logger.js";
import { NatsUnavailableError } from "./errors.js";

/**
 * Whether this replica can reach NATS right now, from the connection's status events. Every
 * NATS-backed operation asks it first, so an outage fails calls at once (UNAVAILABLE)
 * instead of queuing them behind a reconnect; nats.js reconnects on its own.
 */
export class NatsLink {
  readonly #listeners = new Set<(connected: boolean) => void>();
  readonly #logger: Logger;
  #connected: boolean;
  #closed = false;

  constructor(nc: NatsConnection, logger: Logger) {
    this.#logger = logger;
    this.#connected = !nc.isClosed();
    void this.#follow(nc);
  }

  /** True while the connection is up (false from a disconnect until the reconnect completes). */
  get connected(): boolean {
    return this.#connected && !this.#closed;
  }

  /** Calls `listener` on every change of `connected`. Returns an unsubscribe function. */
  onChange(listener: (connected: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Throws `NatsUnavailableError` naming `what` when NATS is not reachable now. */
  assertConnected(what: string): void {
    if (!this.connected) throw new NatsUnavailableError(`${what}: NATS is unreachable`);
  }

  /** Stops reporting; `connected` is false from now on. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#set(false);
    this.#listeners.clear();
  }

  async #follow(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (this.#closed) return;
      // State first, log second: nothing a logger does may stop this loop.
      try {
        switch (s.type) {
          case "disconnect":
            this.#set(false);
            this.#logger.warn({ server: serverName(s.server) }, "NATS disconnected; reconnecting");
            break;
          case "staleConnection":
            this.#set(false);
            this.#logger.warn("NATS connection stale (pings unanswered); reconnecting");
            break;
          case "reconnect":
            this.#set(true);
            this.#logger.info({ server: serverName(s.server) }, "NATS reconnected");
            break;
          case "close":
            this.#set(false);
            return;
          case "error":
            this.#logger.warn({ err: s.error }, "NATS reported an error");
            break;
          default:
            break;
        }
      } catch {
        // A failing logger: the state is already updated.
      }
    }
  }

  #set(connected: boolean): void {
    if (this.#connected === connected) return;
    this.#connected = connected;
    for (const l of [...this.#listeners]) {
      try {
        l(connected);
      } catch {
        // A listener's failure is its own; the others still hear of the change.
      }
    }
  }
}

/** host:port of a server URL, without any user:password the URL may carry. */
function serverName(server: string): string {
  return server.replace(/^[a-z]+:\/\//, "").replace(/^[^@/]*@/, "");
}

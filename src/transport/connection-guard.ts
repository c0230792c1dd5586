/**
 * Admission of connections: a cap on open connections in total and per client address, and
 * a penalty box for addresses whose connections were cut off for abuse (rapid reset), so a
 * client that reconnects after each GOAWAY is refused at accept instead of costing a
 * handshake, a session and its streams every time.
 */
import type { Socket } from "node:net";
import type { Clock } from "../clock.js";

/** Options of {@link ConnectionGuard}. */
export interface ConnectionGuardOptions {
  /** Open connections at once, all addresses together. */
  maxConnections: number;
  /** Open connections at once from one address. */
  maxConnectionsPerAddress: number;
  /** How long an address that was cut off for abuse is refused, in ms. */
  penaltyMs: number;
  clock: Clock;
}

/** Why a connection was refused at accept. */
export type RefusalReason = "max_connections" | "max_connections_per_address" | "penalized";

/** Counts open connections per address; refuses those over a limit. */
export class ConnectionGuard {
  readonly #opts: ConnectionGuardOptions;
  readonly #byAddress = new Map<string, number>();
  readonly #penalized = new Map<string, number>();
  #open = 0;
  /** Connections refused so far, by reason. */
  readonly refused: Record<RefusalReason, number> = { max_connections: 0, max_connections_per_address: 0, penalized: 0 };

  constructor(opts: ConnectionGuardOptions) {
    this.#opts = opts;
  }

  /** Open connections admitted and not yet closed. */
  get open(): number {
    return this.#open;
  }

  /**
   * Admits `socket` (counting it until it closes) or destroys it at once and says why. A
   * refused connection costs no more than its accept.
   */
  admit(socket: Socket): RefusalReason | undefined {
    const address = socket.remoteAddress ?? "unknown";
    const refusal = this.#check(address);
    if (refusal) {
      this.refused[refusal]++;
      socket.on("error", () => undefined);
      socket.destroy();
      return refusal;
    }
    this.#open++;
    this.#byAddress.set(address, (this.#byAddress.get(address) ?? 0) + 1);
    socket.once("close", () => {
      this.#open--;
      const n = (this.#byAddress.get(address) ?? 1) - 1;
      if (n <= 0) this.#byAddress.delete(address);
      else this.#byAddress.set(address, n);
    });
    return undefined;
  }

  /** Refuses new connections from `address` for the penalty time. */
  penalize(address: string | undefined): void {
    this.#penalized.set(address ?? "unknown", this.#opts.clock.now() + this.#opts.penaltyMs);
  }

  #check(address: string): RefusalReason | undefined {
    const until = this.#penalized.get(address);
    if (until !== undefined) {
      if (until > this.#opts.clock.now()) return "penalized";
      this.#penalized.delete(address);
    }
    if (this.#open >= this.#opts.maxConnections) return "max_connections";
    if ((this.#byAddress.get(address) ?? 0) >= this.#opts.maxConnectionsPerAddress) return "max_connections_per_address";
    return undefined;
  }
}

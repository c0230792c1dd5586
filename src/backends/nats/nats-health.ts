import type { JetStreamManager } from "@nats-io/jetstream";
import type { Clock } from "../../clock.js";
import type { Logger } from "../../logging/logger.js";
import type { RevocationList } from "../types.js";
import { describeNatsError, withDeadline } from "./deadline.js";
import type { NatsLink } from "./link-state.js";
import { REVOCATION_HEALTH_SERVICE, REVOCATION_STREAM, SESSIONS_HEALTH_SERVICE } from "./names.js";
import { sleep } from "./resubscribe.js";

/** After a reconnect, how long one attempt waits for the revocation feed to catch up: 10 s. */
export const RECONNECT_CATCH_UP_TIMEOUT_MS = 10_000;
/** Pause between catch-up attempts after a reconnect, ms. */
const CATCH_UP_RETRY_MS = 1000;

/** Options for `NatsHealth`. */
export interface NatsHealthOptions {
  link: NatsLink;
  jsm: JetStreamManager;
  revocations: Pick<RevocationList, "catchUp" | "lastSeq">;
  clock: Clock;
  logger: Logger;
  /** Longest wait for the stream info request, ms. */
  timeoutMs: number;
  /** Default `REVOCATION_STREAM`. */
  stream?: string;
}

/**
 * Health of the shared parts, as grpc.health.v1 services:
 * - "capvend.sessions": serving while NATS is reachable (new sessions, session ends and
 *   lookups of unknown sessions need it; known sessions keep working without it);
 * - "capvend.revocation": serving while NATS is reachable and this replica has applied the
 *   feed up to the stream's last message (checked again after every reconnect), so a load
 *   balancer can tell a replica that would miss revocations.
 */
export class NatsHealth {
  readonly #opts: NatsHealthOptions;
  readonly #listeners = new Set<(service: string, serving: boolean) => void>();
  readonly #status = new Map<string, boolean>();
  readonly #unsubscribe: () => void;
  readonly #stop = new AbortController();
  #caughtUp = true;
  #checking: Promise<void> | undefined;

  constructor(opts: NatsHealthOptions) {
    this.#opts = opts;
    this.#unsubscribe = opts.link.onChange((connected) => {
      if (!connected) this.#caughtUp = false;
      this.#update();
      if (connected) void this.#checkCatchUp();
    });
    this.#update();
  }

  /** Current status of each service. */
  status(): Record<string, boolean> {
    return Object.fromEntries(this.#status);
  }

  /** Reports the current status of each service at once, then every change. Returns an unsubscribe function. */
  watch(listener: (service: string, serving: boolean) => void): () => void {
    this.#listeners.add(listener);
    for (const [service, serving] of this.#status) listener(service, serving);
    return () => this.#listeners.delete(listener);
  }

  /** Stops following the link. Idempotent. */
  close(): void {
    this.#stop.abort();
    this.#unsubscribe();
    this.#listeners.clear();
  }

  #update(): void {
    const connected = this.#opts.link.connected;
    this.#set(SESSIONS_HEALTH_SERVICE, connected);
    this.#set(REVOCATION_HEALTH_SERVICE, connected && this.#caughtUp);
  }

  #set(service: string, serving: boolean): void {
    if (this.#status.get(service) === serving) return;
    this.#status.set(service, serving);
    for (const l of [...this.#listeners]) l(service, serving);
  }

  /** Serving again only once the feed is applied up to what the stream holds now. */
  #checkCatchUp(): Promise<void> {
    this.#checking ??= (async () => {
      const { jsm, revocations, clock, logger, timeoutMs } = this.#opts;
      const stream = this.#opts.stream ?? REVOCATION_STREAM;
      try {
        while (this.#opts.link.connected && !this.#stop.signal.aborted && !this.#caughtUp) {
          try {
            const info = await withDeadline(jsm.streams.info(stream), timeoutMs, clock, `reading stream ${stream}`);
            if (await revocations.catchUp(info.state.last_seq, RECONNECT_CATCH_UP_TIMEOUT_MS)) {
              this.#caughtUp = true;
              logger.info({ last_seq: revocations.lastSeq }, "revocation feed caught up after reconnect");
              this.#update();
              return;
            }
            logger.warn({ target: info.state.last_seq, last_seq: revocations.lastSeq }, "revocation feed still behind after reconnect");
          } catch (err) {
            logger.warn({ error: describeNatsError(err) }, "could not check the revocation feed after reconnect; retrying");
          }
          await sleep(clock, CATCH_UP_RETRY_MS, this.#stop.signal);
        }
      } finally {
        this.#checking = undefined;
      }
    })();
    return this.#checking;
  }
}

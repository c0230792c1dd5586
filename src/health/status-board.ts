import { setMaxListeners } from "node:events";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";

/** Receives every status change; `undefined` means the service was cleared (now unknown). */
export type StatusListener = (service: string, status: ServingStatus | undefined) => void;

/**
 * The serving status of each service by name, with change fan-out. "" is the whole server
 * and starts NOT_SERVING, so nothing routes traffic here before the integrator says SERVING.
 *
 * After `shutdown()` every status is NOT_SERVING for good: later `set` calls are ignored,
 * so a component finishing its start-up late cannot announce SERVING on a server going away.
 */
export class StatusBoard {
  readonly #statuses = new Map<string, ServingStatus>([["", ServingStatus.NOT_SERVING]]);
  readonly #listeners = new Set<StatusListener>();
  readonly #terminated = unboundedListeners(new AbortController());

  /** Aborted by `shutdown()`. */
  get terminated(): AbortSignal {
    return this.#terminated.signal;
  }

  /** Number of subscribed listeners; lets tests and operators see that watchers are released. */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** The service's status, or `undefined` when the service is unknown. */
  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /** Sets a status and tells listeners if it changed. Ignored after `shutdown()`. */
  set(service: string, status: ServingStatus): void {
    if (status === ServingStatus.SERVICE_UNKNOWN) {
      throw new TypeError("SERVICE_UNKNOWN is reserved for Watch replies; use clear() to forget a service");
    }
    if (this.#terminated.signal.aborted) return;
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    this.#emit(service, status);
  }

  /** Every known service and its status ("" first). */
  entries(): [string, ServingStatus][] {
    return [...this.#statuses];
  }

  /** Forgets a service (Check then answers NOT_FOUND). The overall server "" cannot be cleared. */
  clear(service: string): void {
    if (service === "" || this.#terminated.signal.aborted) return;
    if (!this.#statuses.delete(service)) return;
    this.#emit(service, undefined);
  }

  /** Sets every service NOT_SERVING, then aborts `terminated`. Idempotent. */
  shutdown(): void {
    if (this.#terminated.signal.aborted) return;
    for (const [service, status] of this.#statuses) {
      if (status === ServingStatus.NOT_SERVING) continue;
      this.#statuses.set(service, ServingStatus.NOT_SERVING);
      this.#emit(service, ServingStatus.NOT_SERVING);
    }
    this.#terminated.abort();
  }

  /** Calls `listener` on every change until the returned function is called. */
  subscribe(listener: StatusListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  #emit(service: string, status: ServingStatus | undefined): void {
    for (const listener of this.#listeners) listener(service, status);
  }
}

/** Every Watch stream listens on this signal: many listeners are expected, not a leak. */
function unboundedListeners(c: AbortController): AbortController {
  setMaxListeners(0, c.signal);
  return c;
}

import { Code, ConnectError } from "@connectrpc/connect";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { HealthCheckRequest, HealthCheckResponseSchema } from "../gen/grpc/health/v1/health_pb.js";
import { shutdownSignalKey } from "../transport/shutdown-context.js";
import { StatusBoard } from "./status-board.js";

type Reply = MessageInitShape<typeof HealthCheckResponseSchema>;

/** The standard `grpc.health.v1.Health` service and the switches that drive it. */
export interface HealthService {
  /** Implementation to register: `router.service(Health, health.impl)` or {@link registerHealth}. */
  readonly impl: ServiceImpl<typeof Health>;
  /** Sets the status of `service` ("" is the whole server). Ignored after `shutdown()`. */
  setStatus(service: string, status: ServingStatus): void;
  /** The status of `service`, `undefined` when unknown. */
  getStatus(service: string): ServingStatus | undefined;
  /** Every known service with its status, "" (the whole server) first. */
  statuses(): [string, ServingStatus][];
  /** Forgets `service`: Check answers NOT_FOUND, watchers get SERVICE_UNKNOWN. "" cannot be cleared. */
  clearStatus(service: string): void;
  /**
   * Sets every service NOT_SERVING for good and ends every Watch stream after it has sent
   * NOT_SERVING. Call it when the process begins to stop. Idempotent.
   */
  shutdown(): void;
  /** Open Watch streams. */
  readonly watcherCount: number;
}

/** Longest service name echoed back in an error message, in characters. */
const MAX_ECHOED_NAME = 128;

/**
 * Creates the health service. The overall status "" starts NOT_SERVING until the
 * integrator calls `setStatus("", SERVING)`.
 *
 * Check: the status, or NOT_FOUND for an unknown service. Watch: the status at once
 * (SERVICE_UNKNOWN for an unknown service, and the stream stays open), then each change. A
 * slow reader gets only the latest status, never a backlog. Watch ends when the client
 * cancels, when `shutdown()` is called, or when the transport server begins to close
 * (`shutdownSignalKey`); in the last two cases it sends NOT_SERVING first.
 */
export function createHealthService(): HealthService {
  const board = new StatusBoard();

  const impl: ServiceImpl<typeof Health> = {
    check(req: HealthCheckRequest): Reply {
      const status = board.get(req.service);
      if (status === undefined) {
        throw new ConnectError(`unknown service ${describe(req.service)}`, Code.NotFound);
      }
      return { status };
    },
    watch(req: HealthCheckRequest, ctx: HandlerContext): AsyncIterable<Reply> {
      return watchStatus(board, req.service, ctx);
    },
  };

  return {
    impl,
    setStatus: (service, status) => board.set(service, status),
    getStatus: (service) => board.get(service),
    statuses: () => board.entries(),
    clearStatus: (service) => board.clear(service),
    shutdown: () => board.shutdown(),
    get watcherCount() {
      return board.listenerCount;
    },
  };
}

/** Registers `health` on `router` under `grpc.health.v1.Health`; returns the router. */
export function registerHealth(router: ConnectRouter, health: HealthService): ConnectRouter {
  return router.service(Health, health.impl);
}

async function* watchStatus(board: StatusBoard, service: string, ctx: HandlerContext): AsyncGenerator<Reply> {
  const serverClosing = ctx.values.get(shutdownSignalKey);
  const stopSignals = [ctx.signal, serverClosing, board.terminated];
  let latest = board.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
  // Only the latest status is kept, so a slow reader never builds a backlog.
  let wake: (() => void) | undefined;
  const unsubscribe = board.subscribe((changed, status) => {
    if (changed !== service) return;
    latest = status ?? ServingStatus.SERVICE_UNKNOWN;
    wake?.();
  });
  const onStop = () => wake?.();
  for (const signal of stopSignals) signal.addEventListener("abort", onStop);
  const stopped = () => stopSignals.some((signal) => signal.aborted);
  try {
    let sent = latest;
    yield { status: sent };
    while (!stopped()) {
      if (latest === sent) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      sent = latest;
      yield { status: sent };
    }
    // The server is going away: leave the watcher with NOT_SERVING rather than a stale SERVING.
    if (!ctx.signal.aborted && sent !== ServingStatus.NOT_SERVING) {
      yield { status: ServingStatus.NOT_SERVING };
    }
  } finally {
    unsubscribe();
    for (const signal of stopSignals) signal.removeEventListener("abort", onStop);
  }
}

function describe(service: string): string {
  const shown = service.length > MAX_ECHOED_NAME ? `${service.slice(0, MAX_ECHOED_NAME)}…` : service;
  return JSON.stringify(shown);
}

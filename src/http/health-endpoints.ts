import { HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { HealthService } from "../health/health-service.js";
import type { HttpRoute } from "../transport/http-routes.js";

/** Liveness path: the grpc.health.v1 Check of the whole server, or of `?service=`. */
export const HEALTHZ_PATH = "/healthz";
/** Readiness path: 200 only while the server and every part it needs to issue tokens serve. */
export const READYZ_PATH = "/readyz";

/** What the health endpoints add about the policy in force. */
export interface PolicyHealth {
  policyVersion: string;
  origin: string;
  loadedAt: number;
  lastError?: string;
}

/** Services that may be NOT_SERVING while the replica still serves correctly (the previous policy set stays in force). */
const ADVISORY_SERVICES: ReadonlySet<string> = new Set(["capvend.policy"]);

/**
 * `GET /healthz` and `GET /readyz`, mirroring grpc.health.v1 for load balancers and
 * Kubernetes probes that speak plain HTTP.
 *
 * - `/healthz[?service=NAME]` answers what Check answers for NAME ("" by default): 200 when
 *   SERVING, 503 when NOT_SERVING, 404 for an unknown service.
 * - `/readyz` is 200 when the whole server ("") and every part it reports (audit,
 *   revocation, sessions) are SERVING; a failed policy reload alone does not make it unready,
 *   since the previous set stays in force, but it shows in the body.
 *
 * Both answer JSON: `{"status": "SERVING", "services": {...}, "policy": {...}}`.
 */
export function healthRoutes(opts: { health: HealthService; policy?: () => PolicyHealth }): HttpRoute[] {
  const body = (status: string) => {
    const services = Object.fromEntries(opts.health.statuses().map(([name, s]) => [name === "" ? "(server)" : name, ServingStatus[s]]));
    const p = opts.policy?.();
    const policy = p && {
      version: p.policyVersion,
      origin: p.origin,
      loaded_at: new Date(p.loadedAt).toISOString(),
      ...(p.lastError !== undefined ? { last_error: p.lastError } : {}),
    };
    return JSON.stringify({ status, services, ...(policy ? { policy } : {}) });
  };
  const headers = { "content-type": "application/json", "cache-control": "no-store" };
  return [
    {
      method: "GET",
      path: HEALTHZ_PATH,
      handle(req, res) {
        const service = new URL(req.url ?? "/", "http://x").searchParams.get("service") ?? "";
        const status = opts.health.getStatus(service);
        if (status === undefined) {
          res.writeHead(404, headers);
          res.end(JSON.stringify({ status: ServingStatus[ServingStatus.SERVICE_UNKNOWN] }));
          return;
        }
        res.writeHead(status === ServingStatus.SERVING ? 200 : 503, headers);
        res.end(service === "" ? body(ServingStatus[status]) : JSON.stringify({ status: ServingStatus[status] }));
      },
    },
    {
      method: "GET",
      path: READYZ_PATH,
      handle(_req, res) {
        const ready = opts.health
          .statuses()
          .every(([name, s]) => s === ServingStatus.SERVING || (name !== "" && ADVISORY_SERVICES.has(name)));
        res.writeHead(ready ? 200 : 503, headers);
        res.end(body(ready ? "SERVING" : "NOT_SERVING"));
      },
    },
  ];
}

import type { IncomingMessage, ServerResponse } from "node:http";
import type { HttpRoute } from "../transport/http-routes.js";

/** Path of the Prometheus scrape endpoint. */
export const METRICS_PATH = "/metrics";

/** What serves the Prometheus text: the OpenTelemetry PrometheusExporter (a pull metric reader). */
export interface MetricsSource {
  getMetricsRequestHandler(req: IncomingMessage, res: ServerResponse): void;
}

/**
 * `GET /metrics` on the main port: the process's OpenTelemetry metrics in the Prometheus
 * text exposition format, collected at scrape time by the PrometheusExporter reader.
 */
export function metricsRoute(source: MetricsSource): HttpRoute {
  return {
    method: "GET",
    path: METRICS_PATH,
    handle(req, res) {
      // The HTTP/2 compatibility objects offer the same writeHead/setHeader/end the exporter uses.
      source.getMetricsRequestHandler(req as IncomingMessage, res as ServerResponse);
    },
  };
}

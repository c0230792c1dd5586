import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import type { Config } from "../config/config.js";
import type { Logger } from "../logging/logger.js";

/**
 * The Prometheus pull reader for CAPVEND_METRICS: for "main" it serves nothing itself (the
 * server routes `GET /metrics` to it on the main port); for `host:port` it listens there on
 * its own HTTP server, path `/metrics`; for "off" there is none. Register it with the meter
 * provider (telemetryFromEnv's `metricReaders`); shutting telemetry down stops its server.
 */
export function prometheusReader(config: Pick<Config, "metrics">, logger: Logger): PrometheusExporter | undefined {
  const m = config.metrics;
  if (m.mode === "off") return undefined;
  if (m.mode === "main") return new PrometheusExporter({ preventServerStart: true });
  return new PrometheusExporter({ host: m.host, port: m.port, endpoint: "/metrics" }, (err) => {
    if (err) logger.error({ err, address: `${m.host}:${m.port}` }, "the metrics endpoint could not listen; /metrics is not served");
    else logger.info({ address: `${m.host}:${m.port}`, path: "/metrics" }, "metrics endpoint listening");
  });
}

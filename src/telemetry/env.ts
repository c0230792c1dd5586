/**
 * The thin shim between the standard OTEL_* environment and `createTelemetry`: it decides
 * which exporters exist and reads the few settings the SDK pieces do not. The exporters read
 * their own endpoint, headers, timeout and compression (OTEL_EXPORTER_OTLP_*), the batch
 * processor its OTEL_BSP_* settings, and the resource detector OTEL_RESOURCE_ATTRIBUTES,
 * all from `process.env`, as the SDK does everywhere.
 */
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-proto";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { detectResources, envDetector } from "@opentelemetry/resources";
import { ConsoleMetricExporter, PeriodicExportingMetricReader, type IMetricReader, type PushMetricExporter } from "@opentelemetry/sdk-metrics";
import { BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME } from "./attributes.js";
import { createTelemetry, DEFAULT_SERVICE_NAME, globalTelemetry, type Telemetry } from "./telemetry.js";

/** OTEL_METRIC_EXPORT_INTERVAL default: 60 s, as the specification sets it. */
export const DEFAULT_METRIC_EXPORT_INTERVAL_MS = 60_000;
/** OTEL_METRIC_EXPORT_TIMEOUT default: 30 s. */
export const DEFAULT_METRIC_EXPORT_TIMEOUT_MS = 30_000;
/** The one OTLP protocol this build ships. */
export const SUPPORTED_OTLP_PROTOCOL = "http/protobuf";

/** What `telemetryFromEnv` built, for the start-up log line. */
export interface EnvTelemetry {
  telemetry: Telemetry;
  /** Trace exporters in use: "otlp", "console"; empty when nothing is exported. */
  traces: string[];
  metrics: string[];
  /** Settings that were ignored, and why; log them. */
  warnings: string[];
}

type Env = Record<string, string | undefined>;

const value = (env: Env, name: string): string | undefined => {
  const v = env[name]?.trim();
  return v ? v : undefined;
};

/**
 * The exporters named by OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER ("otlp", "console",
 * "none", comma-separated). Unset means "otlp" when an OTLP endpoint is configured, and
 * nothing otherwise: capvend exports only when told where to.
 */
export function selectExporters(env: Env, signal: "TRACES" | "METRICS", warnings: string[] = []): string[] {
  const setting = `OTEL_${signal}_EXPORTER`;
  const raw = value(env, setting);
  if (raw === undefined) {
    const endpoint = value(env, "OTEL_EXPORTER_OTLP_ENDPOINT") ?? value(env, `OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`);
    return endpoint ? ["otlp"] : [];
  }
  const names = [...new Set(raw.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean))];
  if (names.includes("none")) return [];
  return names.filter((n) => {
    if (n === "otlp" || n === "console") return true;
    warnings.push(`${setting}: exporter "${n}" is not supported (use otlp, console or none); ignored`);
    return false;
  });
}

function checkProtocol(env: Env, signal: "TRACES" | "METRICS", warnings: string[]): void {
  const name = value(env, `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`) ? `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL` : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const protocol = value(env, name);
  if (protocol && protocol !== SUPPORTED_OTLP_PROTOCOL) {
    warnings.push(`${name}: "${protocol}" is not supported; exporting with ${SUPPORTED_OTLP_PROTOCOL}`);
  }
}

function millis(env: Env, name: string, def: number, warnings: string[]): number {
  const raw = value(env, name);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (Number.isInteger(n) && n > 0) return n;
  warnings.push(`${name}: "${raw}" is not a positive number of milliseconds; using ${def}`);
  return def;
}

/**
 * Builds telemetry from the OTEL_* environment: OTEL_SDK_DISABLED, OTEL_SERVICE_NAME (default
 * "capvend"), OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER,
 * OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT,COMPRESSION},
 * OTEL_BSP_*, OTEL_METRIC_EXPORT_{INTERVAL,TIMEOUT}, OTEL_TRACES_SAMPLER[_ARG]. `extra` adds
 * what the environment cannot say: the replica id, and processors or readers of its own (a
 * test's in-memory exporter), which sit behind the redaction processor like the rest.
 */
export function telemetryFromEnv(
  env: Env = process.env,
  extra: { serviceInstanceId?: string; serviceVersion?: string; spanProcessors?: SpanProcessor[]; metricReaders?: IMetricReader[] } = {},
): EnvTelemetry {
  const warnings: string[] = [];
  if (value(env, "OTEL_SDK_DISABLED")?.toLowerCase() === "true") {
    return { telemetry: globalTelemetry(), traces: [], metrics: [], warnings };
  }
  const traces = selectExporters(env, "TRACES", warnings);
  const metrics = selectExporters(env, "METRICS", warnings);
  if (traces.includes("otlp")) checkProtocol(env, "TRACES", warnings);
  if (metrics.includes("otlp")) checkProtocol(env, "METRICS", warnings);

  const spanProcessors: SpanProcessor[] = [
    ...traces.map((name) => (name === "otlp" ? new BatchSpanProcessor(new OTLPTraceExporter()) : new SimpleSpanProcessor(new ConsoleSpanExporter()))),
    ...(extra.spanProcessors ?? []),
  ];
  const interval = millis(env, "OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_METRIC_EXPORT_INTERVAL_MS, warnings);
  // The reader refuses a timeout longer than the interval.
  const timeout = Math.min(interval, millis(env, "OTEL_METRIC_EXPORT_TIMEOUT", DEFAULT_METRIC_EXPORT_TIMEOUT_MS, warnings));
  const metricReaders: IMetricReader[] = [
    ...metrics.map((name) => {
      const exporter: PushMetricExporter = name === "otlp" ? new OTLPMetricExporter() : new ConsoleMetricExporter();
      return new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: interval, exportTimeoutMillis: timeout });
    }),
    ...(extra.metricReaders ?? []),
  ];

  const resource = detectResources({ detectors: [envDetector] });
  const fromResource = resource.attributes[ATTR_SERVICE_NAME];
  const serviceName = value(env, "OTEL_SERVICE_NAME") ?? (typeof fromResource === "string" ? fromResource : DEFAULT_SERVICE_NAME);
  const telemetry = createTelemetry({
    serviceName,
    serviceVersion: extra.serviceVersion,
    serviceInstanceId: extra.serviceInstanceId,
    resource,
    spanProcessors,
    metricReaders,
  });
  return { telemetry, traces, metrics, warnings };
}

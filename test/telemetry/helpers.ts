/** Telemetry kept in memory, and the small readers the telemetry tests share. */
import type { Attributes } from "@opentelemetry/api";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { MetricReader, type DataPoint, type MetricData } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { VendingService } from "../../src/gen/capvend/v1/vending_pb.js";
import { createTelemetry, type Telemetry } from "../../src/telemetry/telemetry.js";

/** A metric reader that exports nowhere: tests call `collect()` and read the result. */
export class TestMetricReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}

  /** Every metric currently held, by name. */
  async metrics(): Promise<Map<string, MetricData>> {
    const { resourceMetrics, errors } = await this.collect();
    if (errors.length > 0) throw new Error(`metric collection failed: ${errors.map(String).join("; ")}`);
    const out = new Map<string, MetricData>();
    for (const scope of resourceMetrics.scopeMetrics) for (const m of scope.metrics) out.set(m.descriptor.name, m);
    return out;
  }
}

export interface MemoryTelemetry {
  telemetry: Telemetry;
  exporter: InMemorySpanExporter;
  reader: TestMetricReader;
  /** Flushes, then returns every span exported so far. */
  spans(): Promise<ReadableSpan[]>;
}

/** Telemetry whose spans go (through the redaction processor) to memory, and whose metrics a test reads. */
export function memoryTelemetry(): MemoryTelemetry {
  const exporter = new InMemorySpanExporter();
  const reader = new TestMetricReader();
  const telemetry = createTelemetry({ serviceName: "capvend-test", spanProcessors: [new SimpleSpanProcessor(exporter)], metricReaders: [reader] });
  return {
    telemetry,
    exporter,
    reader,
    async spans() {
      await telemetry.forceFlush();
      return exporter.getFinishedSpans();
    },
  };
}

/** A VendingService client that sends `bearer` and, when given, a W3C `traceparent`. */
export function clientWith(baseUrl: string, bearer: string, opts: { traceparent?: string; protocol?: "connect" | "grpc" } = {}): Client<typeof VendingService> {
  const headers: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${bearer}`);
    if (opts.traceparent) req.header.set("traceparent", opts.traceparent);
    return next(req);
  };
  const transport =
    opts.protocol === "grpc" ? createGrpcTransport({ baseUrl, interceptors: [headers] }) : createConnectTransport({ baseUrl, httpVersion: "2", interceptors: [headers] });
  return createClient(VendingService, transport);
}

export const named = (spans: readonly ReadableSpan[], name: string) => spans.filter((s) => s.name === name);
export const rpc = (spans: readonly ReadableSpan[], method: string) => named(spans, `capvend.v1.VendingService/${method}`);
export const childrenOf = (spans: readonly ReadableSpan[], parent: ReadableSpan) =>
  spans.filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId && s.spanContext().traceId === parent.spanContext().traceId);

/** The one span matching, failing loudly (with what there was) when there is not exactly one. */
export function only(spans: readonly ReadableSpan[], what: string): ReadableSpan {
  if (spans.length !== 1) throw new Error(`expected one ${what}, found ${spans.length}`);
  return spans[0]!;
}

/** Sum of a counter's points whose attributes include `match`. */
export function sumOf(m: MetricData | undefined, match: Attributes = {}): number {
  if (!m) return 0;
  return (m.dataPoints as DataPoint<unknown>[])
    .filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((n, p) => n + (typeof p.value === "number" ? p.value : 0), 0);
}

/** Number of recordings in a histogram's points whose attributes include `match`. */
export function countOf(m: MetricData | undefined, match: Attributes = {}): number {
  if (!m) return 0;
  return (m.dataPoints as DataPoint<unknown>[])
    .filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce((n, p) => n + ((p.value as { count?: number }).count ?? 0), 0);
}

/** Everything of a span an exporter would send, as one string, for leak scans. */
export function spanText(s: ReadableSpan): string {
  return JSON.stringify({
    name: s.name,
    attributes: s.attributes,
    events: s.events.map((e) => ({ name: e.name, attributes: e.attributes })),
    links: s.links.map((l) => l.attributes ?? {}),
    status: s.status,
  });
}

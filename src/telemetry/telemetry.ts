/**
 * The Telemetry object: built once per process (or per test server), injected into the
 * server, and the only way capvend reaches a tracer or a meter. Nothing here reads the
 * environment; `telemetryFromEnv` (env.ts) is the shim that does.
 */
import { metrics, trace, type Meter, type Tracer } from "@opentelemetry/api";
import type { Interceptor } from "@connectrpc/connect";
import { defaultResource, emptyResource, resourceFromAttributes, type Resource } from "@opentelemetry/resources";
import { MeterProvider, type IMetricReader } from "@opentelemetry/sdk-metrics";
import { AlwaysOffSampler, BasicTracerProvider, type Sampler, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { AuditSink, AuditSinkState } from "../audit/sink.js";
import type { RevocationPublisher } from "../service/revocation-publisher.js";
import type { Issuer } from "../service/issuer.js";
import type { PolicyDecider } from "../policy/requests.js";
import type { StreamHubEvents } from "../streams/stream-hub.js";
import type { StreamTokens } from "../streams/stream-tokens.js";
import type { Minter } from "../tokens/mint.js";
import { ATTR_RESOURCE, ATTR_SERVICE_INSTANCE_ID, ATTR_REVOCATION_ID, ATTR_REVOCATION_KIND, ATTR_REVOCATION_REASON, ATTR_REVOCATION_VALUE, INSTRUMENTATION_SCOPE, SPAN_REVOCATION_PUBLISH } from "./attributes.js";
import { ensureContextManager } from "./context-manager.js";
import { createInstruments, type Instruments } from "./instruments.js";
import { meterAudit } from "./metered-audit.js";
import { RedactingSpanProcessor } from "./redacting-span-processor.js";
import { StreamSpans, traceRenewals } from "./renewal-tracing.js";
import { rpcTracingInterceptor } from "./rpc-interceptor.js";
import { recordError } from "./span-errors.js";
import { traceIssuer } from "./traced-issuer.js";
import { traceMinter } from "./traced-minter.js";
import { tracePolicy } from "./traced-policy.js";

/** Default `service.name`. */
export const DEFAULT_SERVICE_NAME = "capvend";

/**
 * Everything instrumented in capvend goes through one of these, and always the same way:
 * the interceptor for RPCs, and otherwise a `wrap*` decorator around the narrow interface a
 * component depends on, which adds spans and metrics and changes nothing else.
 */
export interface Telemetry {
  readonly tracer: Tracer;
  readonly meter: Meter;
  readonly instruments: Instruments;
  /** The tracing interceptor; put it first (outermost) in the server's list. */
  readonly interceptor: Interceptor;
  /** Spans, latency and failures of audit appends; `onHealthChange` when `state.healthy` flips. */
  wrapAudit(sink: AuditSink, onHealthChange?: (healthy: boolean, state: AuditSinkState) => void): AuditSink;
  /** Issuance spans, issued/renewed/denied counters and issuance latency. */
  wrapIssuer(issuer: Issuer): Issuer;
  /** A span per Cedar decision, folded into the span that asked. */
  wrapPolicy(decider: PolicyDecider): PolicyDecider;
  /** A span per signature. */
  wrapMinter(minter: Minter): Minter;
  /** Renewals as root spans linked to their stream's WatchSession span. */
  wrapStreamTokens(tokens: StreamTokens): StreamTokens;
  /** Revocation delivery latency and the active-streams gauge, then whatever `events` does. */
  wrapStreamEvents(events?: StreamHubEvents): StreamHubEvents;
  /** Each publish as a `capvend.revocation.publish` span; counted when it succeeds. */
  wrapPublisher(publisher: RevocationPublisher): RevocationPublisher;
  /** Exports whatever is buffered (spans and metrics). */
  forceFlush(): Promise<void>;
  /** Flushes and stops the exporters. Idempotent: later calls return the same promise. */
  shutdown(): Promise<void>;
}

/** Options of `createTelemetry`. Every exporter sits behind the redaction processor. */
export interface TelemetryOptions {
  /** `service.name`; default "capvend". */
  serviceName?: string;
  serviceVersion?: string;
  /** `service.instance.id`, e.g. the replica id. */
  serviceInstanceId?: string;
  /** More resource attributes (e.g. from OTEL_RESOURCE_ATTRIBUTES); the three above win. */
  resource?: Resource;
  /** Span processors with their exporters (batch for OTLP, simple for tests); none exports nothing. */
  spanProcessors?: SpanProcessor[];
  /** Metric readers (periodic OTLP, or a test reader); none records into nothing. */
  metricReaders?: IMetricReader[];
  /**
   * Default: the SDK's (parent-based always-on, or OTEL_TRACES_SAMPLER) when there is a span
   * processor; with none, always-off: spans are not recorded (nothing would read them), but
   * their ids are still made and propagated, so logs and audit records keep their trace ids.
   */
  sampler?: Sampler;
}

/**
 * Builds tracer and meter providers that belong to this object alone (nothing is registered
 * globally except the async context manager, see context-manager.ts), so several servers
 * in one process each keep their own spans.
 */
export function createTelemetry(opts: TelemetryOptions = {}): Telemetry {
  const processors = opts.spanProcessors ?? [];
  // With no processor and no sampler of the caller's, no span is ever recorded: tracing is
  // off. Then nothing is done for spans but making the ids that logs and audit records carry,
  // and the async context manager (which slows every promise on Node 20) is not installed.
  const recording = processors.length > 0 || opts.sampler !== undefined;
  if (recording) ensureContextManager();
  const own: Record<string, string> = { [ATTR_SERVICE_NAME]: opts.serviceName ?? DEFAULT_SERVICE_NAME };
  if (opts.serviceVersion) own[ATTR_SERVICE_VERSION] = opts.serviceVersion;
  if (opts.serviceInstanceId) own[ATTR_SERVICE_INSTANCE_ID] = opts.serviceInstanceId;
  const resource = defaultResource()
    .merge(opts.resource ?? emptyResource())
    .merge(resourceFromAttributes(own));
  const sampler = opts.sampler ?? (processors.length === 0 ? new AlwaysOffSampler() : undefined);
  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: [new RedactingSpanProcessor(processors)],
    ...(sampler ? { sampler } : {}),
  });
  const meterProvider = new MeterProvider({ resource, readers: opts.metricReaders ?? [] });
  let stopping: Promise<void> | undefined;
  return instrument({
    recording,
    tracer: tracerProvider.getTracer(INSTRUMENTATION_SCOPE, opts.serviceVersion),
    meter: meterProvider.getMeter(INSTRUMENTATION_SCOPE, opts.serviceVersion),
    async forceFlush() {
      await Promise.all([tracerProvider.forceFlush(), meterProvider.forceFlush()]);
    },
    shutdown() {
      stopping ??= Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]).then(() => undefined);
      return stopping;
    },
  });
}

/**
 * Telemetry over whatever the global OpenTelemetry API holds: no-ops unless the embedding
 * application registered providers. The default when a server is built without telemetry.
 */
export function globalTelemetry(): Telemetry {
  return instrument({
    // Whatever the embedding application registered may record.
    recording: true,
    tracer: trace.getTracer(INSTRUMENTATION_SCOPE),
    meter: metrics.getMeter(INSTRUMENTATION_SCOPE),
    forceFlush: async () => undefined,
    shutdown: async () => undefined,
  });
}

/** Builds the Telemetry object's instrumentation around a tracer and a meter. */
function instrument(parts: Pick<Telemetry, "tracer" | "meter" | "forceFlush" | "shutdown"> & { recording: boolean }): Telemetry {
  const { tracer, meter, recording } = parts;
  const instruments = createInstruments(meter);
  const streams = new StreamSpans();
  return {
    tracer,
    meter,
    instruments,
    interceptor: rpcTracingInterceptor(tracer, streams, recording),
    wrapStreamTokens: (tokens) => (recording ? traceRenewals(tokens, tracer, streams) : tokens),
    wrapStreamEvents: (events = {}) => ({
      ...events,
      revocationDelivered(e) {
        instruments.revocationDelivery.record(Math.max(0, e.latencyMs) / 1000);
        events.revocationDelivered?.(e);
      },
      streamCount(n) {
        instruments.streamsActive.record(n);
        events.streamCount?.(n);
      },
    }),
    wrapAudit: (sink, onHealthChange) => meterAudit(sink, { tracer: recording ? tracer : undefined, instruments, onHealthChange }),
    wrapIssuer: (issuer) => traceIssuer(issuer, tracer, instruments, recording),
    wrapPolicy: (decider) => (recording ? tracePolicy(decider, tracer) : decider),
    wrapMinter: (minter) => (recording ? traceMinter(minter, tracer) : minter),
    wrapPublisher: (publisher) => ({
      publish(r) {
        const target = { [ATTR_REVOCATION_KIND]: r.kind, ...(r.kind === "resource" ? { [ATTR_RESOURCE]: r.value } : {}) };
        if (!recording) return publisher.publish(r).then(() => instruments.tokensRevoked.add(1, target));
        const attributes = { ...target, [ATTR_REVOCATION_ID]: r.id, [ATTR_REVOCATION_VALUE]: r.value, [ATTR_REVOCATION_REASON]: r.reason };
        return tracer.startActiveSpan(SPAN_REVOCATION_PUBLISH, { attributes }, async (span) => {
          try {
            await publisher.publish(r);
            instruments.tokensRevoked.add(1, target);
          } catch (err) {
            recordError(span, err);
            throw err;
          } finally {
            span.end();
          }
        });
      },
    }),
    forceFlush: () => parts.forceFlush(),
    shutdown: () => parts.shutdown(),
  };
}

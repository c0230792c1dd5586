import { SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it, vi } from "vitest";
import { selectExporters, telemetryFromEnv } from "../../src/telemetry/env.js";

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
// Shaped like a capvend token; the signature is filler, which is all the detector looks at.
const PLANTED_JWT = `${b64({ alg: "EdDSA", typ: "at+jwt", kid: "k" })}.${b64({ sub: "user:alice", jti: "tok_x" })}.${"Qx7".repeat(28)}`;

describe("which exporters the environment asks for", () => {
  const cases: [Record<string, string>, string[], string][] = [
    [{}, [], "nothing configured: nothing exported"],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" }, ["otlp"], "an endpoint implies otlp"],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c/v1/traces" }, ["otlp"], "a traces endpoint implies otlp"],
    [{ OTEL_TRACES_EXPORTER: "console" }, ["console"], "console for local debugging"],
    [{ OTEL_TRACES_EXPORTER: "otlp, console" }, ["otlp", "console"], "a list"],
    [{ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c" }, [], "none wins over an endpoint"],
    [{ OTEL_TRACES_EXPORTER: " " }, [], "blank is unset"],
  ];
  it.each(cases)("%j → %j (%s)", (env, expected, _why) => {
    expect(selectExporters(env, "TRACES")).toEqual(expected);
  });

  it("ignores an unknown exporter with a warning naming the setting", () => {
    const warnings: string[] = [];
    expect(selectExporters({ OTEL_METRICS_EXPORTER: "prometheus,otlp" }, "METRICS", warnings)).toEqual(["otlp"]);
    expect(warnings).toEqual([expect.stringContaining('OTEL_METRICS_EXPORTER: exporter "prometheus" is not supported')]);
  });

  it("warns that only http/protobuf is spoken, and about a bad metric interval", async () => {
    const { telemetry, traces, warnings } = telemetryFromEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9",
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_METRIC_EXPORT_INTERVAL: "soon",
    });
    expect(traces).toEqual(["otlp"]);
    expect(warnings).toEqual([
      expect.stringContaining('OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" is not supported'),
      expect.stringContaining('OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" is not supported'),
      expect.stringContaining('OTEL_METRIC_EXPORT_INTERVAL: "soon"'),
    ]);
    await telemetry.shutdown();
  });

  it("OTEL_SDK_DISABLED=true gives the global no-op API: spans are not recorded", async () => {
    const { telemetry, traces } = telemetryFromEnv({ OTEL_SDK_DISABLED: "true", OTEL_TRACES_EXPORTER: "console" });
    expect(traces).toEqual([]);
    const span = telemetry.tracer.startSpan("x");
    expect(span.isRecording()).toBe(false);
    span.end();
  });
});

describe("the resource and extra processors", () => {
  it("service.name defaults to capvend, OTEL_SERVICE_NAME overrides it, the replica id is service.instance.id", async () => {
    for (const [env, name] of [[{}, "capvend"], [{ OTEL_SERVICE_NAME: "capvend-eu" }, "capvend-eu"]] as const) {
      const exporter = new InMemorySpanExporter();
      const { telemetry } = telemetryFromEnv(env, { serviceInstanceId: "replica-7", spanProcessors: [new SimpleSpanProcessor(exporter)] });
      telemetry.tracer.startSpan("resource.probe", { attributes: { note: PLANTED_JWT } }).end();
      await telemetry.forceFlush();
      const [span] = exporter.getFinishedSpans();
      expect(span?.resource.attributes["service.name"]).toBe(name);
      expect(span?.resource.attributes["service.instance.id"]).toBe("replica-7");
      // An extra processor is behind the redaction processor too.
      expect(span?.attributes.note).toBeUndefined();
      await telemetry.shutdown();
    }
  });
});

describe("OTEL_TRACES_EXPORTER=console", () => {
  afterEach(() => vi.restoreAllMocks());

  it("prints spans, already redacted: the console exporter sits behind the redaction processor too", async () => {
    const printed: string[] = [];
    const capture = (...args: unknown[]) => void printed.push(args.map((a) => JSON.stringify(a)).join(" "));
    vi.spyOn(console, "dir").mockImplementation(capture);
    vi.spyOn(console, "log").mockImplementation(capture);
    const { telemetry, traces } = telemetryFromEnv({ OTEL_TRACES_EXPORTER: "console", OTEL_SERVICE_NAME: "capvend-console-test" });
    expect(traces).toEqual(["console"]);
    const span = telemetry.tracer.startSpan("console.planted", { attributes: { "capvend.resource": "salesforce", note: PLANTED_JWT } });
    span.setStatus({ code: SpanStatusCode.ERROR, message: `bad ${PLANTED_JWT}` });
    span.end();
    await telemetry.forceFlush();
    await telemetry.shutdown();
    const out = printed.join("\n");
    expect(out).toContain("console.planted");
    expect(out).toContain("salesforce");
    expect(out).not.toContain(PLANTED_JWT);
  });
});

import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import type { TransportServer } from "../../src/transport/transport-server.js";
import { createProbe, run, startTestServer } from "./test-routes.js";
import type { TestProbe } from "./test-routes.js";

// CI installs curl: there a missing curl fails the test instead of skipping it.
const hasCurl = process.env.CI === "true" || (await run("curl", ["--version"])).code === 0;
const healthProto = fileURLToPath(new URL("../../proto-vendor/grpc/health/v1/health.proto", import.meta.url));

describe("one cleartext port, every protocol", () => {
  let server: TransportServer;
  let port: number;
  let probe: TestProbe;
  let errors: unknown[];
  let baseUrl: string;

  beforeAll(async () => {
    probe = createProbe();
    ({ server, port, errors } = await startTestServer(probe));
    baseUrl = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await server.close(1000);
  });

  /** Calls Check with a unique service name and returns what the server recorded for it. */
  async function checkWith(transport: Parameters<typeof createClient>[1]) {
    const service = `probe-${Math.random().toString(36).slice(2)}`;
    const res = await createClient(Health, transport).check({ service });
    const record = probe.calls.find((c) => c.service === service);
    return { status: res.status, record };
  }

  it("serves Connect over HTTP/1.1", async () => {
    const { status, record } = await checkWith(createConnectTransport({ baseUrl, httpVersion: "1.1" }));
    expect(status).toBe(ServingStatus.SERVING);
    expect(record).toMatchObject({ protocol: "connect", httpVersion: "1.1" });
  });

  it("serves Connect over h2c", async () => {
    const { status, record } = await checkWith(createConnectTransport({ baseUrl, httpVersion: "2" }));
    expect(status).toBe(ServingStatus.SERVING);
    expect(record).toMatchObject({ protocol: "connect", httpVersion: "2.0" });
  });

  it("serves gRPC over h2c", async () => {
    const { status, record } = await checkWith(createGrpcTransport({ baseUrl }));
    expect(status).toBe(ServingStatus.SERVING);
    expect(record).toMatchObject({ protocol: "grpc", httpVersion: "2.0" });
  });

  it("serves gRPC-Web over HTTP/1.1", async () => {
    const { status, record } = await checkWith(createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }));
    expect(status).toBe(ServingStatus.SERVING);
    expect(record).toMatchObject({ protocol: "grpc-web", httpVersion: "1.1" });
  });

  it("streams a server stream over gRPC and ends it on client cancel", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl }));
    const abort = new AbortController();
    const received: ServingStatus[] = [];
    await expect(
      (async () => {
        for await (const res of client.watch({ service: "stream-then-cancel" }, { signal: abort.signal })) {
          received.push(res.status);
          abort.abort();
        }
      })(),
    ).rejects.toMatchObject({ code: Code.Canceled });
    expect(received).toEqual([ServingStatus.SERVING]);
  });

  it("answers a plain @grpc/grpc-js client", async () => {
    const definition = protoLoader.loadSync(healthProto, { keepCase: true, enums: String });
    const pkg = grpc.loadPackageDefinition(definition) as any;
    const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        client.Check({ service: "grpc-js" }, (err: Error | null, value: { status: string }) => (err ? reject(err) : resolve(value))),
      );
      expect(res.status).toBe("SERVING");
      expect(probe.calls.find((c) => c.service === "grpc-js")).toMatchObject({ protocol: "grpc", httpVersion: "2.0" });
    } finally {
      client.close();
    }
  });

  it("serves a plain HTTP route to fetch (HTTP/1.1)", async () => {
    const res = await fetch(`${baseUrl}/healthz?verbose=1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("ok 1.1");
  });

  it("answers 405 with Allow for a route path asked with another method", async () => {
    const res = await fetch(`${baseUrl}/healthz`, { method: "POST", body: "x" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET");
  });

  it("answers 500 when a route throws, and reports the error", async () => {
    const res = await fetch(`${baseUrl}/boom`);
    expect(res.status).toBe(500);
    expect(errors.some((e) => e instanceof Error && e.message === "route exploded")).toBe(true);
  });

  it("leaves unknown paths to connect's 404 (UNIMPLEMENTED for an RPC client)", async () => {
    const res = await fetch(`${baseUrl}/no/such/path`);
    expect(res.status).toBe(404);
    const rpc = await fetch(`${baseUrl}/grpc.health.v1.Health/Nope`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(rpc.status).toBe(404);
    const err = await createClient(Health, createConnectTransport({ baseUrl: `${baseUrl}/nope`, httpVersion: "1.1" }))
      .check({ service: "" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.Unimplemented });
  });

  it.skipIf(!hasCurl)("serves curl --http2-prior-knowledge (route and Connect JSON) [skipped when curl is absent]", async () => {
    const route = await run("curl", ["-sS", "--http2-prior-knowledge", "-w", "\n%{http_version}", `${baseUrl}/healthz`]);
    expect(route.code).toBe(0);
    expect(route.stdout).toBe("ok 2.0\n2");
    const rpc = await run("curl", [
      "-sS", "--http2-prior-knowledge",
      "-H", "content-type: application/json",
      "-d", '{"service":"curl"}',
      `${baseUrl}/grpc.health.v1.Health/Check`,
    ]);
    expect(rpc.code).toBe(0);
    expect(JSON.parse(rpc.stdout)).toEqual({ status: "SERVING" });
    expect(probe.calls.find((c) => c.service === "curl")).toMatchObject({ protocol: "connect", httpVersion: "2.0" });
  });
});

import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { DEFAULT_READ_MAX_BYTES } from "../../src/transport/defaults.js";
import type { TransportServer } from "../../src/transport/transport-server.js";
import { createProbe, startTestServer } from "./test-routes.js";

const healthProto = fileURLToPath(new URL("../../proto-vendor/grpc/health/v1/health.proto", import.meta.url));
const LIMIT = 1024;

describe("requests larger than readMaxBytes", () => {
  let server: TransportServer;
  let baseUrl: string;
  let port: number;

  beforeAll(async () => {
    ({ server, port } = await startTestServer(createProbe(), { readMaxBytes: LIMIT }));
    baseUrl = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await server.close(1000);
  });

  const transports: Array<[string, () => Transport]> = [
    ["Connect over HTTP/1.1", () => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
    ["Connect over h2c", () => createConnectTransport({ baseUrl, httpVersion: "2" })],
    ["gRPC over h2c", () => createGrpcTransport({ baseUrl })],
    ["gRPC-Web over HTTP/1.1", () => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })],
  ];

  it.each(transports)("%s: RESOURCE_EXHAUSTED above the limit, fine below it", async (_name, transport) => {
    const client = createClient(Health, transport());
    const err = await client.check({ service: "x".repeat(LIMIT + 100) }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.ResourceExhausted);
    await expect(client.check({ service: "x".repeat(LIMIT - 100) })).resolves.toMatchObject({ status: ServingStatus.SERVING });
  });

  it("@grpc/grpc-js: RESOURCE_EXHAUSTED above the limit", async () => {
    const definition = protoLoader.loadSync(healthProto, { keepCase: true, enums: String });
    const pkg = grpc.loadPackageDefinition(definition) as any;
    const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError | undefined>((resolve) =>
        client.Check({ service: "x".repeat(LIMIT + 100) }, (e: grpc.ServiceError | null) => resolve(e ?? undefined)),
      );
      expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      client.close();
    }
  });

  it("defaults to 1 MiB", async () => {
    expect(DEFAULT_READ_MAX_BYTES).toBe(1024 * 1024);
    const own = await startTestServer(createProbe());
    try {
      const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${own.port}` }));
      await expect(client.check({ service: "x".repeat(DEFAULT_READ_MAX_BYTES - 100) })).resolves.toMatchObject({
        status: ServingStatus.SERVING,
      });
      const err = await client.check({ service: "x".repeat(DEFAULT_READ_MAX_BYTES + 100) }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.ResourceExhausted);
    } finally {
      await own.server.close(1000);
    }
  });
});

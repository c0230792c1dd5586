import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createContextValues, createHandlerContext, createRouterTransport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../src/gen/grpc/health/v1/health_pb.js";
import { createHealthService, registerHealth } from "../../src/health/health-service.js";
import type { HealthService } from "../../src/health/health-service.js";
import { shutdownSignalKey } from "../../src/transport/shutdown-context.js";
import { createTransportServer } from "../../src/transport/transport-server.js";
import { waitFor } from "../helpers/wait.js";

const healthProto = fileURLToPath(new URL("../../proto-vendor/grpc/health/v1/health.proto", import.meta.url));

function inMemory(health: HealthService) {
  return createClient(Health, createRouterTransport((router) => registerHealth(router, health)));
}

async function checkError(p: Promise<unknown>): Promise<ConnectError | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
}


describe("health Check", () => {
  it("reports the server NOT_SERVING until the integrator says SERVING", async () => {
    const health = createHealthService();
    const client = inMemory(health);
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
    health.setStatus("", ServingStatus.SERVING);
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.SERVING);
  });

  it("answers NOT_FOUND for an unknown service, and knows it once set and until cleared", async () => {
    const health = createHealthService();
    const client = inMemory(health);
    expect(await checkError(client.check({ service: "capvend.v1.VendingService" }))).toMatchObject({ code: Code.NotFound });
    health.setStatus("capvend.v1.VendingService", ServingStatus.SERVING);
    expect((await client.check({ service: "capvend.v1.VendingService" })).status).toBe(ServingStatus.SERVING);
    health.clearStatus("capvend.v1.VendingService");
    expect(await checkError(client.check({ service: "capvend.v1.VendingService" }))).toMatchObject({ code: Code.NotFound });
  });

  it("does not echo a huge service name back whole", async () => {
    const err = await checkError(inMemory(createHealthService()).check({ service: "y".repeat(10_000) }));
    expect(err?.code).toBe(Code.NotFound);
    expect(err!.rawMessage.length).toBeLessThan(300);
  });

  it("refuses SERVICE_UNKNOWN as a status to set", () => {
    expect(() => createHealthService().setStatus("a", ServingStatus.SERVICE_UNKNOWN)).toThrow(TypeError);
  });
});

describe("health Watch", () => {
  it("sends the current status at once, then each change, without repeats", async () => {
    const health = createHealthService();
    const it = inMemory(health).watch({ service: "" })[Symbol.asyncIterator]();
    expect((await it.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    health.setStatus("", ServingStatus.SERVING);
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVING);
    health.setStatus("", ServingStatus.SERVING); // no change, no message
    health.setStatus("", ServingStatus.NOT_SERVING);
    // A repeat would have come first.
    expect((await it.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    await it.return?.();
  });

  it("sends SERVICE_UNKNOWN for an unknown service and keeps watching", async () => {
    const health = createHealthService();
    const it = inMemory(health).watch({ service: "later" })[Symbol.asyncIterator]();
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    health.setStatus("later", ServingStatus.SERVING);
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVING);
    health.clearStatus("later");
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    await it.return?.();
  });

  it("ignores changes to other services", async () => {
    const health = createHealthService();
    const it = inMemory(health).watch({ service: "a" })[Symbol.asyncIterator]();
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    health.setStatus("b", ServingStatus.NOT_SERVING);
    health.setStatus("a", ServingStatus.SERVING);
    // Had b's change reached a's watcher, NOT_SERVING would have come first.
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVING);
    await it.return?.();
  });

  it("gives a slow reader only the latest status, not a backlog", async () => {
    const health = createHealthService();
    const ctx = createHandlerContext({
      service: Health,
      method: Health.method.watch,
      protocolName: "test",
      requestMethod: "POST",
      url: "http://test/grpc.health.v1.Health/Watch",
    });
    const it = health.impl.watch(create(HealthCheckRequestSchema, { service: "" }), ctx)[Symbol.asyncIterator]();
    expect((await it.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    // The reader does not pull while three changes happen.
    health.setStatus("", ServingStatus.SERVING);
    health.setStatus("", ServingStatus.UNKNOWN);
    health.setStatus("", ServingStatus.SERVING);
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVING);
    // A backlog would now give UNKNOWN; only the latest status is kept.
    health.setStatus("", ServingStatus.NOT_SERVING);
    expect((await it.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    const pending = it.next().catch(() => undefined);
    ctx.abort();
    await pending;
    await waitFor(() => health.watcherCount === 0, "the watcher to be released");
  });

  it("releases its listener when the client cancels", async () => {
    const health = createHealthService();
    const abort = new AbortController();
    const it = inMemory(health).watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    await it.next();
    expect(health.watcherCount).toBe(1);
    abort.abort();
    await expect(it.next()).rejects.toMatchObject({ code: Code.Canceled });
    await waitFor(() => health.watcherCount === 0, "the watcher to be released");
  });

  it("ends every stream with NOT_SERVING on shutdown(), which is final", async () => {
    const health = createHealthService();
    health.setStatus("", ServingStatus.SERVING);
    health.setStatus("vending", ServingStatus.SERVING);
    const client = inMemory(health);
    const collect = async (service: string) => {
      const seen: ServingStatus[] = [];
      for await (const res of client.watch({ service })) seen.push(res.status);
      return seen;
    };
    const overall = collect("");
    const vending = collect("vending");
    await waitFor(() => health.watcherCount === 2, "two watchers");
    health.shutdown();
    expect(await overall).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    expect(await vending).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    expect(health.watcherCount).toBe(0);

    health.setStatus("", ServingStatus.SERVING); // too late: ignored
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
    expect((await client.check({ service: "vending" })).status).toBe(ServingStatus.NOT_SERVING);
    // A Watch opened after shutdown gets the final status and ends.
    expect(await collect("")).toEqual([ServingStatus.NOT_SERVING]);
  });

  it("ends when the transport's shutdown signal (context value) aborts, with NOT_SERVING last", async () => {
    const health = createHealthService();
    health.setStatus("", ServingStatus.SERVING);
    const closing = new AbortController();
    const ctx = createHandlerContext({
      service: Health,
      method: Health.method.watch,
      protocolName: "test",
      requestMethod: "POST",
      url: "http://test/grpc.health.v1.Health/Watch",
      contextValues: createContextValues().set(shutdownSignalKey, closing.signal),
    });
    const it = health.impl.watch(create(HealthCheckRequestSchema, { service: "" }), ctx)[Symbol.asyncIterator]();
    expect((await it.next()).value?.status).toBe(ServingStatus.SERVING);
    closing.abort();
    expect((await it.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    expect((await it.next()).done).toBe(true);
    expect(health.watcherCount).toBe(0);
    // The health statuses themselves are the integrator's to change.
    expect(health.getStatus("")).toBe(ServingStatus.SERVING);
  });
});

describe("health over a real transport server", () => {
  it("serves grpc-js Check and ends gRPC Watch streams when the server closes", async () => {
    const health = createHealthService();
    health.setStatus("", ServingStatus.SERVING);
    const server = createTransportServer({ routes: (router) => registerHealth(router, health) });
    const { port } = await server.listen("127.0.0.1", 0);

    const definition = protoLoader.loadSync(healthProto, { keepCase: true, enums: String });
    const pkg = grpc.loadPackageDefinition(definition) as any;
    const grpcJs = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const checked = await new Promise<{ status: string }>((resolve, reject) =>
      grpcJs.Check({ service: "" }, (err: Error | null, v: { status: string }) => (err ? reject(err) : resolve(v))),
    );
    expect(checked.status).toBe("SERVING");
    const notFound = await new Promise<grpc.ServiceError | null>((resolve) => grpcJs.Check({ service: "nope" }, resolve));
    expect(notFound?.code).toBe(grpc.status.NOT_FOUND);
    grpcJs.close();

    const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    const seen: ServingStatus[] = [];
    const watching = (async () => {
      for await (const res of client.watch({ service: "" })) seen.push(res.status);
    })();
    await waitFor(() => seen.length === 1, "status message 1");
    health.setStatus("", ServingStatus.NOT_SERVING);
    await waitFor(() => seen.length === 2, "status message 2");
    health.setStatus("", ServingStatus.SERVING);
    await waitFor(() => seen.length === 3, "status message 3");
    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING]);

    // A grace longer than the test's timeout: had the open Watch held the close for its grace, the test would fail.
    await server.close(10 * 60_000);
    await watching;
    expect(seen.at(-1)).toBe(ServingStatus.NOT_SERVING);
    expect(health.watcherCount).toBe(0);
  });
});

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { authInterceptor, SERVICE_ACCESS } from "../../src/auth/auth-interceptor.js";
import type { Authenticator } from "../../src/auth/authenticator.js";
import type { Principal } from "../../src/auth/principal.js";
import { reasonOf } from "../../src/errors.js";
import { AdminService } from "../../src/gen/capvend/admin/v1/admin_pb.js";
import { VendingService } from "../../src/gen/capvend/v1/vending_pb.js";
import { Health, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.js";

const ORCHESTRATOR: Principal = { kind: "orchestrator", id: "dev", via: "token" };

/** Accepts any bearer as the orchestrator, and counts how often it was asked. */
function countingAuthenticator() {
  const seen = { calls: 0 };
  const authenticator: Authenticator = {
    async authenticate() {
      seen.calls++;
      return ORCHESTRATOR;
    },
  } as Authenticator;
  return { authenticator, seen };
}

/** A Health service whose handler counts the calls that reach it. */
function healthRoutes(reached: { calls: number }) {
  return (router: ConnectRouter) =>
    router.service(Health, {
      check() {
        reached.calls++;
        return create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
      },
      async *watch() {},
    });
}

describe("the auth interceptor's service table", () => {
  it("lists health and both reflection versions as public, and VendingService and AdminService method by method", () => {
    expect(SERVICE_ACCESS[Health.typeName]).toBe("public");
    expect(SERVICE_ACCESS[ReflectionV1.typeName]).toBe("public");
    expect(SERVICE_ACCESS[ReflectionV1alpha.typeName]).toBe("public");
    for (const svc of [VendingService, AdminService]) {
      const access = SERVICE_ACCESS[svc.typeName];
      expect(access).not.toBe("public");
      // Every method of the service has its entry: nothing is left to a default.
      for (const m of svc.methods) expect((access as Record<string, unknown>)[m.name], `${svc.typeName}/${m.name}`).toBeDefined();
    }
  });

  it("refuses every call to a service the table does not list (WRONG_CALLER), before any credential is read", async () => {
    const { authenticator, seen } = countingAuthenticator();
    const reached = { calls: 0 };
    // The same Health service, served under a table that does not list it.
    const table = { [VendingService.typeName]: SERVICE_ACCESS[VendingService.typeName]! };
    const transport = createRouterTransport(healthRoutes(reached), { router: { interceptors: [authInterceptor(authenticator, undefined, table)] } });
    const err = await createClient(Health, transport)
      .check({}, { headers: { authorization: "Bearer anything" } })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.PermissionDenied);
    expect(reasonOf(err)).toBe("WRONG_CALLER");
    expect(err?.rawMessage).toContain("grpc.health.v1.Health is not open to any caller");
    expect(reached.calls).toBe(0);
    expect(seen.calls).toBe(0);
  });

  it("refuses a method the table does not list on a service it does list", async () => {
    const { authenticator } = countingAuthenticator();
    const reached = { calls: 0 };
    const table = { [Health.typeName]: { Watch: ["orchestrator"] as const } };
    const transport = createRouterTransport(healthRoutes(reached), { router: { interceptors: [authInterceptor(authenticator, undefined, table)] } });
    const err = await createClient(Health, transport)
      .check({}, { headers: { authorization: "Bearer anything" } })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(reasonOf(err)).toBe("WRONG_CALLER");
    expect(err?.rawMessage).toContain("Check is not open to any caller");
    expect(reached.calls).toBe(0);
  });

  it("serves a public service without a credential", async () => {
    const { authenticator, seen } = countingAuthenticator();
    const reached = { calls: 0 };
    const transport = createRouterTransport(healthRoutes(reached), { router: { interceptors: [authInterceptor(authenticator)] } });
    const res = await createClient(Health, transport).check({});
    expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(reached.calls).toBe(1);
    expect(seen.calls).toBe(0);
  });
});

import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { VendingService } from "./gen/capvend/v1/vending_pb.js";
import { AdminService } from "./gen/capvend/admin/v1/admin_pb.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { registerReflection } from "./reflection/reflection-service.js";
import { registerHealth, type HealthService } from "./health/health-service.js";
import { reportUndecodableRequestsAsInvalid } from "./transport/decode-errors.js";

/**
 * Every service this server exposes, in one place: the vending service, the admin service
 * (when given), grpc.health.v1 and server reflection (v1 and v1alpha) over all of them.
 */
export function routes(vending: ServiceImpl<typeof VendingService>, health: HealthService, admin?: ServiceImpl<typeof AdminService>) {
  return (router: ConnectRouter) => {
    router.service(VendingService, vending);
    if (admin) router.service(AdminService, admin);
    registerHealth(router, health);
    registerReflection(router, [VendingService, ...(admin ? [AdminService] : []), Health]);
    reportUndecodableRequestsAsInvalid(router);
  };
}

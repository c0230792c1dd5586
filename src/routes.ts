import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { VendingService } from "./gen/capvend/v1/vending_pb.js";
import { registerHealth, type HealthService } from "./health/health-service.js";
import { reportUndecodableRequestsAsInvalid } from "./transport/decode-errors.js";

/** Every service this server exposes, in one place. */
export function routes(vending: ServiceImpl<typeof VendingService>, health: HealthService) {
  return (router: ConnectRouter) => {
    router.service(VendingService, vending);
    registerHealth(router, health);
    reportUndecodableRequestsAsInvalid(router);
  };
}

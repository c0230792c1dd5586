import type { Interceptor } from "@connectrpc/connect";
import type { DecisionLog } from "../audit/decision-log.js";
import { markAudited } from "../audit/decision-log.js";
import { capvendError } from "../errors.js";
import { callTraceId } from "../logging/call-trace.js";
import { VendingService } from "../gen/capvend/v1/vending_pb.js";
import { AdminService } from "../gen/capvend/admin/v1/admin_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ServerReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { Authenticator } from "./authenticator.js";
import { describePrincipal, principalKey, type Principal, type PrincipalKind } from "./principal.js";

/** A service's entry in the table: public (no credential), or which caller kinds may call each method. */
export type ServiceAccess = "public" | Readonly<Record<string, readonly PrincipalKind[]>>;

/**
 * Which callers may call which method of which service: the one place caller kinds are
 * decided. A service or method not listed is refused to everyone (WRONG_CALLER, before any
 * credential is read); health and reflection are listed as public.
 */
export const SERVICE_ACCESS: Readonly<Record<string, ServiceAccess>> = {
  [VendingService.typeName]: {
    [VendingService.method.startSession.name]: ["orchestrator"],
    [VendingService.method.issueToken.name]: ["session"],
    [VendingService.method.watchSession.name]: ["session"],
    [VendingService.method.revoke.name]: ["orchestrator"],
    [VendingService.method.endSession.name]: ["orchestrator", "session"],
    [VendingService.method.introspect.name]: ["orchestrator", "resource_server"],
  },
  // Orchestrators only; policy then decides which admin actions each may take.
  [AdminService.typeName]: {
    [AdminService.method.listSessions.name]: ["orchestrator"],
    [AdminService.method.getSession.name]: ["orchestrator"],
    [AdminService.method.rotateKeys.name]: ["orchestrator"],
    [AdminService.method.reloadPolicy.name]: ["orchestrator"],
    [AdminService.method.policyStatus.name]: ["orchestrator"],
  },
  [Health.typeName]: "public",
  [ServerReflectionV1.typeName]: "public",
  [ServerReflectionV1alpha.typeName]: "public",
};

const CALLER_NAMES: Record<PrincipalKind, string> = {
  orchestrator: "an orchestrator credential",
  session: "a session credential",
  resource_server: "a resource-server credential",
};

/**
 * Authenticates every call to a service the table lists as authenticated, checks its caller
 * kind against the table, and puts the Principal in the context values; refuses every call to
 * a service or method the table does not list. With `decisions`, a failed authentication is
 * recorded (rate-limited `auth.failed`) and so is a wrong caller (the method's `*.denied`
 * record, reason `wrong_caller`). `table` is for tests; default SERVICE_ACCESS.
 */
export function authInterceptor(authenticator: Authenticator, decisions?: DecisionLog, table: Readonly<Record<string, ServiceAccess>> = SERVICE_ACCESS): Interceptor {
  return (next) => async (req) => {
    const access = Object.hasOwn(table, req.service.typeName) ? table[req.service.typeName] : undefined;
    if (access === "public") return next(req);
    if (access === undefined) {
      // Default deny: a service registered without an entry here is open to no one.
      const err = capvendError("WRONG_CALLER", `${req.service.typeName} is not open to any caller`);
      await decisions?.refused({ method: req.method.name, caller: { kind: "unauthenticated", id: "-" }, error: err, traceId: callTraceId(req.contextValues) });
      throw markAudited(err);
    }
    const authorization = req.header.get("authorization");
    let principal: Principal;
    try {
      principal = await authenticator.authenticate(authorization);
    } catch (err) {
      await decisions?.authFailed({ method: req.method.name, authorization, error: err, traceId: callTraceId(req.contextValues) });
      throw markAudited(err);
    }
    const allowed = Object.hasOwn(access, req.method.name) ? access[req.method.name]! : [];
    if (!allowed.includes(principal.kind)) {
      const err = capvendError(
        "WRONG_CALLER",
        allowed.length === 0
          ? `${req.method.name} is not open to any caller`
          : `${req.method.name} cannot be called with ${CALLER_NAMES[principal.kind]}; it needs ${allowed.map((k) => CALLER_NAMES[k]).join(" or ")}`,
      );
      await decisions?.refused({ method: req.method.name, caller: describePrincipal(principal), error: err, traceId: callTraceId(req.contextValues) });
      throw markAudited(err);
    }
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

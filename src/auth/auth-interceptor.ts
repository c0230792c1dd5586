import type { Interceptor } from "@connectrpc/connect";
import type { DecisionLog } from "../audit/decision-log.js";
import { markAudited } from "../audit/decision-log.js";
import { capvendError } from "../errors.js";
import { callTraceId } from "../logging/call-trace.js";
import { VendingService } from "../gen/capvend/v1/vending_pb.js";
import { AdminService } from "../gen/capvend/admin/v1/admin_pb.js";
import type { Authenticator } from "./authenticator.js";
import { describePrincipal, principalKey, type Principal, type PrincipalKind } from "./principal.js";

/**
 * Which callers may call which method. Anything not listed is refused; services other than
 * VendingService (health) are public.
 */
export const METHOD_CALLERS: Readonly<Record<string, readonly PrincipalKind[]>> = {
  [VendingService.method.startSession.name]: ["orchestrator"],
  [VendingService.method.issueToken.name]: ["session"],
  [VendingService.method.watchSession.name]: ["session"],
  [VendingService.method.revoke.name]: ["orchestrator"],
  [VendingService.method.endSession.name]: ["orchestrator", "session"],
  [VendingService.method.introspect.name]: ["orchestrator", "resource_server"],
  // AdminService: orchestrators only; policy then decides which admin actions each may take.
  [AdminService.method.listSessions.name]: ["orchestrator"],
  [AdminService.method.getSession.name]: ["orchestrator"],
  [AdminService.method.rotateKeys.name]: ["orchestrator"],
  [AdminService.method.reloadPolicy.name]: ["orchestrator"],
  [AdminService.method.policyStatus.name]: ["orchestrator"],
};

/** Services whose every call is authenticated; the others (health, reflection) are public. */
const AUTHENTICATED_SERVICES: ReadonlySet<string> = new Set([VendingService.typeName, AdminService.typeName]);

const CALLER_NAMES: Record<PrincipalKind, string> = {
  orchestrator: "an orchestrator credential",
  session: "a session credential",
  resource_server: "a resource-server credential",
};

/**
 * Authenticates every VendingService call and puts the Principal in the context values. With
 * `decisions`, a failed authentication is recorded (rate-limited `auth.failed`) and so is a
 * wrong caller (the method's `*.denied` record, reason `wrong_caller`).
 */
export function authInterceptor(authenticator: Authenticator, decisions?: DecisionLog): Interceptor {
  return (next) => async (req) => {
    if (!AUTHENTICATED_SERVICES.has(req.service.typeName)) return next(req);
    const authorization = req.header.get("authorization");
    let principal: Principal;
    try {
      principal = await authenticator.authenticate(authorization);
    } catch (err) {
      await decisions?.authFailed({ method: req.method.name, authorization, error: err, traceId: callTraceId(req.contextValues) });
      throw markAudited(err);
    }
    const allowed = METHOD_CALLERS[req.method.name] ?? [];
    if (!allowed.includes(principal.kind)) {
      const err = capvendError(
        "WRONG_CALLER",
        `${req.method.name} cannot be called with ${CALLER_NAMES[principal.kind]}; it needs ${allowed.map((k) => CALLER_NAMES[k]).join(" or ")}`,
      );
      await decisions?.refused({ method: req.method.name, caller: describePrincipal(principal), error: err, traceId: callTraceId(req.contextValues) });
      throw markAudited(err);
    }
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

import type { Interceptor } from "@connectrpc/connect";
import { capvendError } from "../errors.js";
import { VendingService } from "../gen/capvend/v1/vending_pb.js";
import type { Authenticator } from "./authenticator.js";
import { principalKey, type PrincipalKind } from "./principal.js";

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
};

const CALLER_NAMES: Record<PrincipalKind, string> = {
  orchestrator: "an orchestrator credential",
  session: "a session credential",
  resource_server: "a resource-server credential",
};

/** Authenticates every VendingService call and puts the Principal in the context values. */
export function authInterceptor(authenticator: Authenticator): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName !== VendingService.typeName) return next(req);
    const principal = await authenticator.authenticate(req.header.get("authorization"));
    const allowed = METHOD_CALLERS[req.method.name] ?? [];
    if (!allowed.includes(principal.kind)) {
      throw capvendError(
        "WRONG_CALLER",
        `${req.method.name} cannot be called with ${CALLER_NAMES[principal.kind]}; it needs ${allowed.map((k) => CALLER_NAMES[k]).join(" or ")}`,
      );
    }
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

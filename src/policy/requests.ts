import { entityValue, type AuthorizationRequest, type ContextValue, type Decision } from "./engine.js";
import type { Principal } from "../auth/principal.js";
import type { SessionRecord } from "../backends/types.js";

/** The slice of the policy engine the service needs. */
export interface PolicyDecider {
  authorize(req: AuthorizationRequest): Decision;
}

/** Cedar request for one scope of one token (docs/architecture.md, "Policy model"). */
export function scopeRequest(session: SessionRecord, resource: string, scope: string, ttlSeconds: number): AuthorizationRequest {
  const context: Record<string, ContextValue> = {
    session_id: session.id,
    ttl_seconds: ttlSeconds,
    labels: { ...session.labels },
  };
  if (session.userId !== undefined) context.user = entityValue("User", session.userId);
  return {
    principal: { type: "Agent", id: session.agentId },
    action: scope,
    resource: { type: "Resource", id: resource },
    context,
  };
}

export type OrchestratorAction = "start_session" | "end_session" | "revoke" | "introspect" | AdminAction;

/** The Cedar actions of capvend.admin.v1.AdminService, on resource `Capvend::"admin"`. */
export type AdminAction = "admin.list_sessions" | "admin.get_session" | "admin.rotate_keys" | "admin.reload_policy" | "admin.policy_status";

/** Cedar request for an orchestrator or resource-server action on an entity (usually `Agent::"<id>"`). */
export function callerRequest(
  caller: Exclude<Principal, { kind: "session" }>,
  action: OrchestratorAction,
  resource: { type: string; id: string },
  context: { userId?: string; labels?: Record<string, string>; audience?: string } = {},
): AuthorizationRequest {
  const ctx: Record<string, ContextValue> = {};
  if (context.userId !== undefined) ctx.user = entityValue("User", context.userId);
  if (context.labels) ctx.labels = { ...context.labels };
  if (context.audience !== undefined) ctx.audience = entityValue("Resource", context.audience);
  return {
    principal: { type: caller.kind === "orchestrator" ? "Orchestrator" : "ResourceServer", id: caller.id },
    action,
    resource,
    context: ctx,
  };
}

/** "policy a, b" or "no policy permits it": how denials are explained to callers. */
export function explainDenial(d: Decision): string {
  return d.policyIds.length > 0 ? `forbidden by policy ${d.policyIds.join(", ")}` : "no policy permits it";
}

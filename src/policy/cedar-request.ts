import type { Context, EntityJson, EntityUidJson } from "@cedar-policy/cedar-wasm/nodejs";

import { toCedarContext, type ContextValue, type EntityRef } from "./context.js";
import type { EntityStore } from "./entity-store.js";

/** Entity type of actions: `Action::"read"`. Scopes are action ids. */
export const ACTION_ENTITY_TYPE = "Action";

/**
 * One authorization question. Issuing asks it once per scope (principal `Agent`, resource
 * `Resource`); orchestrating asks it with principal `Orchestrator` or `ResourceServer` and
 * resource `Agent`.
 */
export interface AuthorizationRequest {
  principal: EntityRef;
  /** The action id, e.g. `"read"`, `"contacts.read"`, `"start_session"`. */
  action: string;
  resource: EntityRef;
  /** Facts about the call, e.g. `{ user: entityValue("User", "alice"), ttl_seconds: 900 }`. */
  context?: Readonly<Record<string, ContextValue>>;
}

/** The parts of a Cedar authorization call that depend on the request, not the policies. */
export interface CedarRequest {
  principal: EntityUidJson;
  action: EntityUidJson;
  resource: EntityUidJson;
  context: Context;
  entities: EntityJson[];
}

/**
 * Builds Cedar's request as JSON values, never as Cedar text, so ids may hold any
 * character. Only the entities the decision can look at go along: the principal, the
 * action, the resource, the entities the context refers to, and their ancestors.
 *
 * @throws ContextError when the context holds a value Cedar cannot take.
 */
export function toCedarRequest(req: AuthorizationRequest, entities: EntityStore): CedarRequest {
  const action: EntityRef = { type: ACTION_ENTITY_TYPE, id: req.action };
  const principal: EntityRef = { type: req.principal.type, id: req.principal.id };
  const resource: EntityRef = { type: req.resource.type, id: req.resource.id };
  const wanted: EntityRef[] = [principal, resource, action];
  const context = req.context ? toCedarContext(req.context, wanted) : {};
  return { principal, action, resource, context, entities: entities.subsetFor(wanted) };
}

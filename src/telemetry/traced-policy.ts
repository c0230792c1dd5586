/** Spans for Cedar decisions, and their outcome folded into the span that asked for them. */
import { trace, type Span, type Tracer } from "@opentelemetry/api";
import { EntityValue, type ContextValue, type Decision } from "../policy/engine.js";
import type { PolicyDecider } from "../policy/requests.js";
import {
  ATTR_AGENT_ID,
  ATTR_ENDUSER_ID,
  ATTR_POLICY_ACTION,
  ATTR_POLICY_DECISION,
  ATTR_POLICY_ENTITY,
  ATTR_POLICY_IDS,
  ATTR_POLICY_PRINCIPAL,
  ATTR_POLICY_VERSION,
  ATTR_RESOURCE,
  ATTR_SESSION_ID,
  SPAN_POLICY,
} from "./attributes.js";

interface Fold {
  denied: boolean;
  allowIds: Set<string>;
  denyIds: Set<string>;
}

const folds = new WeakMap<Span, Fold>();

/**
 * Sets `capvend.policy.decision` and `capvend.policy.ids` on `span` from every decision made
 * under it: "deny" with the ids of the denying decisions once any denied (what the audit
 * record names), else "allow" with the union of the permitting policies. One IssueToken asks
 * Cedar once per scope; the caller's span should show the verdict, not only the last scope.
 */
export function foldDecision(span: Span, d: Decision): void {
  let f = folds.get(span);
  if (!f) folds.set(span, (f = { denied: false, allowIds: new Set(), denyIds: new Set() }));
  if (d.allowed) for (const id of d.policyIds) f.allowIds.add(id);
  else {
    f.denied = true;
    for (const id of d.policyIds) f.denyIds.add(id);
  }
  span.setAttribute(ATTR_POLICY_DECISION, f.denied ? "deny" : "allow");
  span.setAttribute(ATTR_POLICY_IDS, [...(f.denied ? f.denyIds : f.allowIds)]);
}

/**
 * Wraps a decider so every Cedar evaluation is a `capvend.policy.evaluate` span (principal,
 * action, resource, decision, policy ids) under the active span, and its verdict is folded
 * into that active span (see `foldDecision`).
 */
export function tracePolicy(decider: PolicyDecider, tracer: Tracer): PolicyDecider {
  return {
    authorize(req) {
      const parent = trace.getActiveSpan();
      const span = tracer.startSpan(SPAN_POLICY, {
        attributes: {
          [ATTR_POLICY_PRINCIPAL]: `${req.principal.type}::"${req.principal.id}"`,
          [ATTR_POLICY_ACTION]: req.action,
          ...(req.resource.type === "Resource" ? { [ATTR_RESOURCE]: req.resource.id } : { [ATTR_POLICY_ENTITY]: `${req.resource.type}::"${req.resource.id}"` }),
          ...(req.principal.type === "Agent" ? { [ATTR_AGENT_ID]: req.principal.id } : {}),
          ...contextAttributes(req.context),
        },
      });
      try {
        const d = decider.authorize(req);
        span.setAttribute(ATTR_POLICY_DECISION, d.allowed ? "allow" : "deny");
        span.setAttribute(ATTR_POLICY_IDS, d.policyIds);
        const version = policyVersionOf(decider);
        if (version) {
          span.setAttribute(ATTR_POLICY_VERSION, version);
          if (parent?.isRecording()) parent.setAttribute(ATTR_POLICY_VERSION, version);
        }
        if (parent?.isRecording()) foldDecision(parent, d);
        return d;
      } catch (err) {
        span.recordException(err as Error);
        throw err;
      } finally {
        span.end();
      }
    },
  };
}

/** The policy version of a decider that is a policy engine (it has `state.policyVersion`). */
function policyVersionOf(decider: PolicyDecider): string | undefined {
  const state = (decider as { state?: { policyVersion?: unknown } }).state;
  return typeof state?.policyVersion === "string" && state.policyVersion !== "" ? state.policyVersion : undefined;
}

function contextAttributes(ctx: Readonly<Record<string, ContextValue>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!ctx) return out;
  if (typeof ctx.session_id === "string") out[ATTR_SESSION_ID] = ctx.session_id;
  if (ctx.user instanceof EntityValue && ctx.user.type === "User") out[ATTR_ENDUSER_ID] = ctx.user.id;
  return out;
}

import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { capvendError } from "../errors.js";
import type { SessionRecord } from "../backends/types.js";

/** Who is calling, as established by the auth interceptor. */
export type Principal =
  | { kind: "orchestrator"; id: string; via: "token" | "oidc" }
  | { kind: "resource_server"; id: string }
  | { kind: "session"; id: string; session: SessionRecord };

export type PrincipalKind = Principal["kind"];

/** The caller of the current RPC; undefined only for unauthenticated services (health). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "capvend principal" });

/** How a principal is named in audit records, spans and logs. */
export function describePrincipal(p: Principal): { kind: PrincipalKind; id: string } {
  return { kind: p.kind, id: p.id };
}

/**
 * The caller of the current call, typed as one of the kinds the auth interceptor's table lets
 * call the method (the table is where caller kinds are decided; see auth-interceptor.ts). A
 * handler lists the same kinds only so the compiler knows which principal it has: a caller of
 * another kind reaching it is a wiring fault (INTERNAL), never a refusal to the caller.
 */
export function callerOf<K extends PrincipalKind>(ctx: Pick<HandlerContext, "values">, ...kinds: K[]): Extract<Principal, { kind: K }> {
  const p = ctx.values.get(principalKey);
  // The interceptor always sets a principal of an allowed kind; anything else is a wiring fault.
  if (!p || !(kinds as PrincipalKind[]).includes(p.kind)) throw capvendError("INTERNAL", `no caller of the kinds this method serves (${kinds.join(", ")}); the auth table and the handler disagree`);
  return p as Extract<Principal, { kind: K }>;
}

import { createContextKey } from "@connectrpc/connect";
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

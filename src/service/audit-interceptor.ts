/**
 * Writes the audit record of every refused call to a capvend service (VendingService and any
 * admin service beside it; not grpc.health) (one `*.denied` record per
 * call), so no refusal path can forget it. Handlers describe what the call is about as they
 * learn it (`noteSubject`); allowed calls are recorded by the handlers themselves, fail closed,
 * before they answer. Runs after authentication (failed authentications and wrong callers are
 * the auth interceptor's to record).
 */
import { createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { CallSubject, DecisionLog } from "../audit/decision-log.js";
import { isAudited } from "../audit/decision-log.js";
import { describePrincipal, principalKey } from "../auth/principal.js";
import { callTraceId } from "../logging/call-trace.js";
import { relay } from "../stream-relay.js";

/** What the current call is about, for its refusal record. */
export const callSubjectKey = createContextKey<CallSubject | undefined>(undefined, { description: "capvend audit subject" });

/** Adds to what the current call's refusal record will name. */
export function noteSubject(ctx: Pick<HandlerContext, "values">, subject: CallSubject): void {
  const s = ctx.values.get(callSubjectKey);
  if (!s) return;
  for (const [k, v] of Object.entries(subject)) if (v !== undefined) (s as Record<string, unknown>)[k] = v;
}

/** The interceptor; records carry the call's trace id (see callTraceKey). */
export function auditInterceptor(log: DecisionLog): Interceptor {
  return (next) => async (req) => {
    // Every capvend service (VendingService, and admin services beside it); not grpc.health.
    if (req.service.typeName.startsWith("grpc.")) return next(req);
    const subject: CallSubject = {};
    req.contextValues.set(callSubjectKey, subject);
    const record = async (error: unknown) => {
      if (isAudited(error)) return;
      const p = req.contextValues.get(principalKey);
      const caller = p ? describePrincipal(p) : { kind: "unauthenticated" as const, id: "-" };
      await log.refused({ method: req.method.name, caller, subject, error, traceId: callTraceId(req.contextValues) });
    };
    let res;
    try {
      res = await next(req);
    } catch (err) {
      await record(err);
      throw err;
    }
    if (!res.stream) return res;
    // A stream refused before its first message is a refused call; failures later are the
    // stream's end (stream.closed), not a decision.
    let sent = false;
    return {
      ...res,
      message: relay(res.message, {
        value: () => {
          sent = true;
        },
        error: async (err) => {
          if (!sent) await record(err);
          return err;
        },
      }),
    };
  };
}

/** Spans, counters and latency for the one path every token takes. */
import { isSpanContextValid, type Tracer } from "@opentelemetry/api";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Issuer, TokenRequest } from "../service/issuer.js";
import type { SessionRecord } from "../backends/types.js";
import {
  ATTR_AGENT_ID,
  ATTR_ENDUSER_ID,
  ATTR_ISSUE_KIND,
  ATTR_ISSUE_OUTCOME,
  ATTR_RESOURCE,
  ATTR_SESSION_ID,
  ATTR_TOKEN_EXPIRES_AT,
  ATTR_TOKEN_ID,
  ATTR_TOKEN_SCOPES,
  SPAN_ISSUE,
} from "./attributes.js";
import type { Instruments } from "./instruments.js";
import { recordError } from "./span-errors.js";

/** The attributes naming a session: who acts (agent) for whom (user). */
export function sessionAttributes(session: Pick<SessionRecord, "id" | "agentId" | "userId">): Record<string, string> {
  const out: Record<string, string> = { [ATTR_SESSION_ID]: session.id, [ATTR_AGENT_ID]: session.agentId };
  if (session.userId !== undefined) out[ATTR_ENDUSER_ID] = session.userId;
  return out;
}

// A refusal by the session's grants or by policy, as opposed to a failure (audit, store).
const isDenial = (err: unknown) => err instanceof ConnectError && err.code === Code.PermissionDenied;

/**
 * Wraps an issuer so each `issue` is a `capvend.issue` span (session, agent, user, resource,
 * scopes; then the token id and expiry, or the error) under which the policy, mint and audit
 * spans nest; records its duration in `capvend.issuance.duration` and counts it as issued,
 * renewed or denied. The audit record gets this trace's id when the caller gave none (renewals
 * run outside any RPC). `authorize` (the up-front check of a stream's grants) counts denials.
 */
export function traceIssuer(issuer: Issuer, tracer: Tracer, instruments: Instruments, recording = true): Issuer {
  const denied = (req: TokenRequest) => instruments.tokensDenied.add(1, { [ATTR_RESOURCE]: req.resource });
  if (!recording) return meterIssuer(issuer, tracer, instruments, denied);
  return {
    authorize(session, req) {
      try {
        return issuer.authorize(session, req);
      } catch (err) {
        if (isDenial(err)) denied(req);
        throw err;
      }
    },

    issue(session, req, ctx) {
      const kind = ctx.event === "token.renewed" ? "renewed" : "issued";
      const attributes = { ...sessionAttributes(session), [ATTR_RESOURCE]: req.resource, [ATTR_TOKEN_SCOPES]: [...req.scopes], [ATTR_ISSUE_KIND]: kind };
      return tracer.startActiveSpan(SPAN_ISSUE, { attributes }, async (span) => {
        const started = performance.now();
        const sc = span.spanContext();
        let outcome: "issued" | "denied" | "error" = "error";
        try {
          const token = await issuer.issue(session, req, { ...ctx, traceId: ctx.traceId ?? (isSpanContextValid(sc) ? sc.traceId : undefined) });
          outcome = "issued";
          span.setAttribute(ATTR_TOKEN_ID, token.jti);
          span.setAttribute(ATTR_TOKEN_EXPIRES_AT, new Date(token.expiresAtMs).toISOString());
          (kind === "renewed" ? instruments.tokensRenewed : instruments.tokensIssued).add(1, { [ATTR_RESOURCE]: req.resource });
          return token;
        } catch (err) {
          if (isDenial(err)) {
            outcome = "denied";
            denied(req);
          }
          recordError(span, err);
          throw err;
        } finally {
          span.setAttribute(ATTR_ISSUE_OUTCOME, outcome);
          instruments.issuanceDuration.record((performance.now() - started) / 1000, { [ATTR_ISSUE_KIND]: kind, [ATTR_ISSUE_OUTCOME]: outcome, [ATTR_RESOURCE]: req.resource });
          span.end();
        }
      });
    },
  };
}

/**
 * Tracing off: the counters and the latency histogram only. An issuance outside any call
 * (a renewal) still gets a trace id of its own for its audit record, as it would with spans.
 */
function meterIssuer(issuer: Issuer, tracer: Tracer, instruments: Instruments, denied: (req: TokenRequest) => void): Issuer {
  return {
    authorize(session, req) {
      try {
        return issuer.authorize(session, req);
      } catch (err) {
        if (isDenial(err)) denied(req);
        throw err;
      }
    },

    async issue(session, req, ctx) {
      const kind = ctx.event === "token.renewed" ? "renewed" : "issued";
      const started = performance.now();
      let outcome: "issued" | "denied" | "error" = "error";
      try {
        const traceId = ctx.traceId ?? tracer.startSpan(SPAN_ISSUE).spanContext().traceId;
        const token = await issuer.issue(session, req, { ...ctx, traceId });
        outcome = "issued";
        (kind === "renewed" ? instruments.tokensRenewed : instruments.tokensIssued).add(1, { [ATTR_RESOURCE]: req.resource });
        return token;
      } catch (err) {
        if (isDenial(err)) {
          outcome = "denied";
          denied(req);
        }
        throw err;
      } finally {
        instruments.issuanceDuration.record((performance.now() - started) / 1000, { [ATTR_ISSUE_KIND]: kind, [ATTR_ISSUE_OUTCOME]: outcome, [ATTR_RESOURCE]: req.resource });
      }
    },
  };
}

/**
 * Which fields of each VendingService message become span attributes. An allow-list, by
 * method: a token, a session credential or an introspected JWT is never read here, so it
 * cannot reach a span by accident (the redaction processor is the second line, not the first).
 */
import type { Attributes } from "@opentelemetry/api";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Principal } from "../auth/principal.js";
import type {
  EndSessionRequest,
  IntrospectResponse,
  IssueTokenRequest,
  IssueTokenResponse,
  RevokeRequest,
  RevokeResponse,
  StartSessionRequest,
  StartSessionResponse,
} from "../gen/capvend/v1/vending_pb.js";
import { VendingService } from "../gen/capvend/v1/vending_pb.js";
import { USER_SUBJECT_PREFIX } from "../tokens/claims.js";
import {
  ATTR_AGENT_ID,
  ATTR_CALLER_ID,
  ATTR_CALLER_KIND,
  ATTR_ENDUSER_ID,
  ATTR_INTROSPECT_ACTIVE,
  ATTR_RESOURCE,
  ATTR_REVOCATION_ID,
  ATTR_REVOCATION_KIND,
  ATTR_REVOCATION_VALUE,
  ATTR_SESSION_ID,
  ATTR_TOKEN_EXPIRES_AT,
  ATTR_TOKEN_ID,
  ATTR_TOKEN_SCOPES,
} from "./attributes.js";
import { sessionAttributes } from "./traced-issuer.js";

const M = VendingService.method;
const isoOf = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : undefined);

/** Drops undefined values so the result can be spread into `setAttributes`. */
function defined(attrs: Record<string, string | string[] | number | boolean | undefined>): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== "") out[k] = v;
  return out;
}

const REVOKE_KIND = { tokenId: "token_id", sessionId: "session_id", agentId: "agent_id", userId: "user_id", resource: "resource" } as const;
const REVOKE_ATTR = { tokenId: ATTR_TOKEN_ID, sessionId: ATTR_SESSION_ID, agentId: ATTR_AGENT_ID, userId: ATTR_ENDUSER_ID, resource: ATTR_RESOURCE } as const;

/** Attributes of a unary VendingService request. Unknown methods and services give none. */
export function requestAttributes(service: string, method: string, message: unknown): Attributes {
  if (service !== VendingService.typeName) return {};
  switch (method) {
    case M.startSession.name: {
      const m = message as StartSessionRequest;
      return defined({ [ATTR_AGENT_ID]: m.agentId, [ATTR_ENDUSER_ID]: m.userId });
    }
    case M.issueToken.name: {
      const m = message as IssueTokenRequest;
      return defined({ [ATTR_RESOURCE]: m.resource, [ATTR_TOKEN_SCOPES]: m.scopes.length > 0 ? [...m.scopes] : undefined });
    }
    case M.revoke.name: {
      const t = (message as RevokeRequest).target;
      if (t.case === undefined) return {};
      return defined({ [ATTR_REVOCATION_KIND]: REVOKE_KIND[t.case], [ATTR_REVOCATION_VALUE]: t.value, [REVOKE_ATTR[t.case]]: t.value });
    }
    case M.endSession.name:
      return defined({ [ATTR_SESSION_ID]: (message as EndSessionRequest).sessionId });
    default:
      // Introspect carries the token itself: nothing of it is read.
      return {};
  }
}

/** Attributes of a unary VendingService response. */
export function responseAttributes(service: string, method: string, message: unknown): Attributes {
  if (service !== VendingService.typeName) return {};
  switch (method) {
    case M.startSession.name:
      return defined({ [ATTR_SESSION_ID]: (message as StartSessionResponse).sessionId });
    case M.issueToken.name: {
      const t = (message as IssueTokenResponse).token;
      if (!t) return {};
      return defined({ [ATTR_TOKEN_ID]: t.tokenId, [ATTR_TOKEN_EXPIRES_AT]: isoOf(t.expiresAt), [ATTR_RESOURCE]: t.resource, [ATTR_TOKEN_SCOPES]: [...t.scopes] });
    }
    case M.revoke.name:
      return defined({ [ATTR_REVOCATION_ID]: (message as RevokeResponse).revocationId });
    case M.introspect.name: {
      const m = message as IntrospectResponse;
      if (!m.active) return { [ATTR_INTROSPECT_ACTIVE]: false };
      return defined({
        [ATTR_INTROSPECT_ACTIVE]: true,
        [ATTR_TOKEN_ID]: m.jti,
        [ATTR_SESSION_ID]: m.sid,
        [ATTR_AGENT_ID]: m.clientId,
        [ATTR_ENDUSER_ID]: m.sub.startsWith(USER_SUBJECT_PREFIX) ? m.sub.slice(USER_SUBJECT_PREFIX.length) : undefined,
        [ATTR_RESOURCE]: m.aud,
        [ATTR_TOKEN_EXPIRES_AT]: isoOf(m.exp),
      });
    }
    default:
      return {};
  }
}

/** Who called: a session names its session, agent and user; others their kind and id. */
export function principalAttributes(p: Principal): Attributes {
  if (p.kind === "session") return { [ATTR_CALLER_KIND]: p.kind, ...sessionAttributes(p.session) };
  return { [ATTR_CALLER_KIND]: p.kind, [ATTR_CALLER_ID]: p.id };
}

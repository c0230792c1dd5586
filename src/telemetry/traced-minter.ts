/** A span around each signature. */
import type { Tracer } from "@opentelemetry/api";
import type { Minter } from "../tokens/mint.js";
import { ATTR_RESOURCE, ATTR_SESSION_ID, ATTR_TOKEN_EXPIRES_AT, ATTR_TOKEN_ID, ATTR_TOKEN_SCOPES, SPAN_MINT } from "./attributes.js";

/**
 * Wraps a minter so each `mint` is a `capvend.token.mint` span with the token's id, expiry,
 * resource and scopes. The key id is left out on purpose: a JWK thumbprint is a random-looking
 * 43-character string, which the redaction processor cannot tell from a secret and would drop.
 */
export function traceMinter(minter: Minter, tracer: Tracer): Minter {
  return {
    mint(input) {
      const span = tracer.startSpan(SPAN_MINT, {
        attributes: { [ATTR_SESSION_ID]: input.sessionId, [ATTR_RESOURCE]: input.resource, [ATTR_TOKEN_SCOPES]: [...input.scopes] },
      });
      try {
        const t = minter.mint(input);
        span.setAttribute(ATTR_TOKEN_ID, t.jti);
        span.setAttribute(ATTR_TOKEN_EXPIRES_AT, new Date(t.expiresAtMs).toISOString());
        return t;
      } catch (err) {
        span.recordException(err as Error);
        throw err;
      } finally {
        span.end();
      }
    },
  };
}

import type { HttpRoute } from "../transport/http-routes.js";
import type { Jwks } from "../keys/key-ring.js";
import { INTROSPECT_AUTH_METHODS, OAUTH_INTROSPECT_PATH } from "./introspect-endpoint.js";

/** Path of the JSON Web Key Set that verifies every live token. */
export const JWKS_PATH = "/.well-known/jwks.json";
/** Path of the RFC 8414 authorization server metadata. */
export const METADATA_PATH = "/.well-known/oauth-authorization-server";
/** Connect path of the Introspect RPC (the RFC 7662 endpoint is OAUTH_INTROSPECT_PATH). */
export const INTROSPECT_PATH = "/capvend.v1.VendingService/Introspect";

/** Longest time fetchers may cache the JWKS, whatever the publish delay. */
export const JWKS_MAX_AGE_SECONDS = 60;

/**
 * The JWKS `max-age` for a key publish delay: half the delay (at most
 * JWKS_MAX_AGE_SECONDS), so a verifier that refreshes when its copy goes stale has fetched a
 * new key before that key signs, with room for a fetch in flight and clock skew. A delay
 * under 2 s gives `no-cache`.
 */
export function jwksMaxAgeSeconds(keyPublishDelayMs: number): number {
  return Math.max(0, Math.min(JWKS_MAX_AGE_SECONDS, Math.floor(keyPublishDelayMs / 2000)));
}

/**
 * The HTTP endpoints beside the RPCs: the JWKS (every key that still verifies a live
 * token, so keys that rotated out keep working until their last token expires) and the
 * authorization server metadata that points resource servers at it.
 */
export function wellKnownRoutes(opts: { issuer: string; jwks: () => Jwks; jwksMaxAgeSeconds?: number }): HttpRoute[] {
  const maxAge = opts.jwksMaxAgeSeconds ?? JWKS_MAX_AGE_SECONDS;
  const jwksCacheControl = maxAge > 0 ? `public, max-age=${maxAge}` : "no-cache";
  const base = opts.issuer.replace(/\/+$/, "");
  const metadata = JSON.stringify({
    issuer: opts.issuer,
    jwks_uri: `${base}${JWKS_PATH}`,
    introspection_endpoint: `${base}${OAUTH_INTROSPECT_PATH}`,
    introspection_endpoint_auth_methods_supported: [...INTROSPECT_AUTH_METHODS],
    token_endpoint_auth_methods_supported: ["none"],
    response_types_supported: [],
    grant_types_supported: [],
    scopes_supported: [],
    access_token_signing_alg_values_supported: ["EdDSA", "ES256"],
  });
  let cached: { jwks: Jwks; body: string } | undefined;
  return [
    {
      method: "GET",
      path: JWKS_PATH,
      handle(_req, res) {
        const jwks = opts.jwks();
        // The key ring returns the same frozen object until its keys change.
        if (cached?.jwks !== jwks) cached = { jwks, body: JSON.stringify(jwks) };
        res.writeHead(200, { "content-type": "application/jwk-set+json", "cache-control": jwksCacheControl });
        res.end(cached.body);
      },
    },
    {
      method: "GET",
      path: METADATA_PATH,
      handle(_req, res) {
        res.writeHead(200, { "content-type": "application/json", "cache-control": "public, max-age=3600" });
        res.end(metadata);
      },
    },
  ];
}

import { createHash } from "node:crypto";
import type { JsonWebKey } from "node:crypto";

/**
 * RFC 7638 JWK thumbprint (SHA-256, base64url, 43 chars) of a public EC or OKP key.
 * Synchronous on purpose: a kid is derived while loading keys, and jose's version is async.
 */
export function jwkThumbprint(jwk: JsonWebKey): string {
  let canonical: string;
  // RFC 7638 §3.2: only the required members, in lexicographic order, no whitespace.
  switch (jwk.kty) {
    case "OKP":
      canonical = JSON.stringify({ crv: req(jwk.crv, "crv"), kty: "OKP", x: req(jwk.x, "x") });
      break;
    case "EC":
      canonical = JSON.stringify({
        crv: req(jwk.crv, "crv"),
        kty: "EC",
        x: req(jwk.x, "x"),
        y: req(jwk.y, "y"),
      });
      break;
    default:
      throw new TypeError(`unsupported JWK key type ${JSON.stringify(jwk.kty)} for a thumbprint`);
  }
  return createHash("sha256").update(canonical).digest("base64url");
}

function req(value: unknown, name: string): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`JWK member "${name}" is missing`);
  }
  return value;
}

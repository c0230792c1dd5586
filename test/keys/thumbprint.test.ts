import { calculateJwkThumbprint } from "jose";
import { describe, expect, it } from "vitest";
import { jwkThumbprint } from "../../src/keys/thumbprint.js";
import { newPrivateKey } from "./fixtures.js";
import { createPublicKey } from "node:crypto";

describe("jwkThumbprint", () => {
  it.each(["ed25519", "p256"] as const)("matches jose's RFC 7638 thumbprint for %s", async (kind) => {
    const jwk = createPublicKey(newPrivateKey(kind)).export({ format: "jwk" });
    const ours = jwkThumbprint({ ...jwk, kid: "ignored", alg: "x", use: "sig" });
    expect(ours).toBe(await calculateJwkThumbprint(jwk as never, "sha256"));
    expect(ours).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("refuses key types it cannot canonicalize", () => {
    expect(() => jwkThumbprint({ kty: "RSA", n: "x", e: "AQAB" })).toThrow(/unsupported JWK key type "RSA"/);
    expect(() => jwkThumbprint({ kty: "OKP", crv: "Ed25519" })).toThrow(/"x" is missing/);
  });
});

import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { inspect } from "node:util";
import { jwkThumbprint } from "./thumbprint.js";

/** JWS algorithms capvend signs with: Ed25519 (`EdDSA`, the default) or P-256 (`ES256`). */
export type SigningAlg = "EdDSA" | "ES256";

/** Every accepted `SigningAlg`, for validating configuration. */
export const SIGNING_ALGS: readonly SigningAlg[] = ["EdDSA", "ES256"];

/**
 * One signing key. `privateKey` never leaves the process: the object prints, serializes and
 * inspects as its kid and alg only, so it is safe to hand to a logger.
 */
export interface SigningKey {
  /** RFC 7638 thumbprint of the public key. */
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** Public JWK with `kid`, `alg` and `use: "sig"`, ready for a JWKS. */
  readonly publicJwk: JsonWebKey;
  /** When the key was generated or first loaded, ms since the epoch. */
  readonly createdAt: number;
  /** When the key stopped signing, ms since the epoch; unset while it is current. */
  retiredAt?: number;
  /** False for a retired key whose private part was deleted: `privateKey` then throws. */
  readonly canSign: boolean;
}

/** The JWS alg a private or public key signs with; throws for any other key type or curve. */
export function algForKey(key: KeyObject): SigningAlg {
  if (key.asymmetricKeyType === "ed25519") return "EdDSA";
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") {
    return "ES256";
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  throw new TypeError(
    `unsupported key type ${key.asymmetricKeyType ?? "unknown"}${curve ? ` (curve ${curve})` : ""}: ` +
      "only Ed25519 and P-256 keys are accepted",
  );
}

class SigningKeyImpl implements SigningKey {
  readonly canSign = true;
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly publicKey: KeyObject;
  readonly publicJwk: JsonWebKey;
  readonly createdAt: number;
  retiredAt?: number;
  // A private field, not a property: it is invisible to JSON.stringify, util.inspect,
  // structuredClone and object spreads, so a careless log line cannot carry it.
  readonly #privateKey: KeyObject;

  constructor(privateKey: KeyObject, createdAt: number, retiredAt?: number) {
    if (privateKey.type !== "private") throw new TypeError("a signing key must be a private key");
    this.alg = algForKey(privateKey);
    this.#privateKey = privateKey;
    this.publicKey = createPublicKey(privateKey);
    const jwk = this.publicKey.export({ format: "jwk" });
    this.kid = jwkThumbprint(jwk);
    this.publicJwk = Object.freeze({ ...jwk, kid: this.kid, alg: this.alg, use: "sig" });
    this.createdAt = createdAt;
    if (retiredAt !== undefined) this.retiredAt = retiredAt;
  }

  get privateKey(): KeyObject {
    return this.#privateKey;
  }

  toJSON(): { kid: string; alg: SigningAlg; createdAt: number; retiredAt?: number } {
    return this.retiredAt === undefined
      ? { kid: this.kid, alg: this.alg, createdAt: this.createdAt }
      : { kid: this.kid, alg: this.alg, createdAt: this.createdAt, retiredAt: this.retiredAt };
  }

  toString(): string {
    return `SigningKey(${this.alg} ${this.kid})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** A retired key kept for verification only: its private part is gone. */
class VerifyingKeyImpl implements SigningKey {
  readonly canSign = false;
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly publicJwk: JsonWebKey;
  retiredAt?: number;

  constructor(
    readonly publicKey: KeyObject,
    readonly createdAt: number,
    retiredAt: number | undefined,
  ) {
    if (publicKey.type !== "public") throw new TypeError("a verifying key must be a public key");
    this.alg = algForKey(publicKey);
    const jwk = publicKey.export({ format: "jwk" });
    this.kid = jwkThumbprint(jwk);
    this.publicJwk = Object.freeze({ ...jwk, kid: this.kid, alg: this.alg, use: "sig" });
    if (retiredAt !== undefined) this.retiredAt = retiredAt;
  }

  get privateKey(): KeyObject {
    throw new Error(`key ${this.kid} is retired: its private part was deleted`);
  }

  toJSON(): { kid: string; alg: SigningAlg; createdAt: number; retiredAt?: number } {
    return this.retiredAt === undefined
      ? { kid: this.kid, alg: this.alg, createdAt: this.createdAt }
      : { kid: this.kid, alg: this.alg, createdAt: this.createdAt, retiredAt: this.retiredAt };
  }

  toString(): string {
    return `SigningKey(${this.alg} ${this.kid}, verify only)`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Wraps the public part of a retired key (Ed25519 or P-256): it verifies, it cannot sign. */
export function toVerifyingKey(publicKey: KeyObject, createdAt: number, retiredAt?: number): SigningKey {
  return new VerifyingKeyImpl(publicKey, createdAt, retiredAt);
}

/**
 * Wraps a private key (Ed25519 or P-256) as a `SigningKey`, deriving alg, public JWK and kid.
 * Throws a TypeError naming the key type for anything else.
 */
export function toSigningKey(privateKey: KeyObject, createdAt: number, retiredAt?: number): SigningKey {
  return new SigningKeyImpl(privateKey, createdAt, retiredAt);
}

import { ManualClock } from "../../src/clock.js";
import { openKeyRing, type KeyRing } from "../../src/keys/key-ring.js";
import type { SigningAlg } from "../../src/keys/signing-key.js";
import { createMinter, type MintInput, type Minter } from "../../src/tokens/mint.js";
import { tempDirs } from "../keys/fixtures.js";

export const ISSUER = "https://capvend.local";
export const MAX_TTL_MS = 15 * 60 * 1000;

/** A key ring, minter and manual clock over a temp dir; `cleanup()` after each test. */
export function tokenRig() {
  const temp = tempDirs();
  const rings: KeyRing[] = [];
  return {
    async make(alg: SigningAlg = "EdDSA", clock = new ManualClock()): Promise<{ ring: KeyRing; minter: Minter; clock: ManualClock }> {
      const ring = await openKeyRing({ dataDir: await temp.make(), alg, clock, maxTokenTtlMs: MAX_TTL_MS });
      rings.push(ring);
      return { ring, minter: createMinter({ keyRing: ring, issuer: ISSUER, clock }), clock };
    },
    async cleanup() {
      rings.splice(0).forEach((r) => r.close());
      await temp.cleanup();
    },
  };
}

/** A typical request: the sales bot, for alice, read+write on salesforce, for `ttlMs`. */
export function input(clock: ManualClock, overrides: Partial<MintInput> = {}, ttlMs = 5 * 60 * 1000): MintInput {
  return {
    agentId: "sales-bot",
    userId: "alice",
    sessionId: "ses_123",
    resource: "salesforce",
    scopes: ["read", "write"],
    expiresAtMs: clock.now() + ttlMs,
    ...overrides,
  };
}

import type { JsonWebKey } from "node:crypto";
import type { Clock } from "../clock.js";
import type { KeyRing } from "./key-ring.js";

/** A rotation in progress: the new key is published; it signs from `activatesAt`. */
export interface KeyRotation {
  /** The new key. */
  kid: string;
  /** The key it replaces, which stays published until its last token expires. */
  retired: string;
  /** When the new key starts signing, ms since the epoch. */
  activatesAt: number;
  /** Resolves when the new key signs; rejects if the rotation failed after publishing (it is then undone). */
  activated: Promise<void>;
}

export interface RotateOptions {
  clock: Clock;
  /** How long the new key is published before it signs (CAPVEND_KEY_PUBLISH_DELAY), ms. */
  publishDelayMs: number;
  /** Tells the other replicas (the NATS key bucket); resolves once they can find the key. */
  announce?: (jwk: JsonWebKey) => Promise<void>;
  /** With `announce`, the shortest delay (the other replicas' watches need a moment), ms. */
  minAnnouncedDelayMs?: number;
  /** Told when the key is published. */
  onPublished?: (r: { kid: string; retired: string; delayMs: number }) => void;
}

/**
 * Rotates the signing key without a moment where a verifier meets an unknown kid: the new
 * key goes into the JWKS (and, with NATS, every replica's) first, and signs only after the
 * publish delay, by which time verifiers that refresh the JWKS when its `max-age` lapses
 * have fetched it. The old key stays published until its last token has expired.
 * Resolves once the key is published; `activated` follows.
 */
export function rotateWithPublishDelay(keyRing: KeyRing, opts: RotateOptions): Promise<KeyRotation> {
  const retired = keyRing.current().kid;
  let onPublished!: (r: { kid: string; activatesAt: number }) => void;
  const published = new Promise<{ kid: string; activatesAt: number }>((resolve) => (onPublished = resolve));
  const activated = keyRing.rotate({
    beforeActivate: async (key) => {
      const delayMs = Math.max(opts.publishDelayMs, opts.announce ? (opts.minAnnouncedDelayMs ?? 0) : 0);
      if (opts.announce) await opts.announce(key.publicJwk);
      opts.onPublished?.({ kid: key.kid, retired, delayMs });
      onPublished({ kid: key.kid, activatesAt: opts.clock.now() + delayMs });
      await new Promise<void>((resolve) => opts.clock.setTimeout(resolve, delayMs));
    },
  });
  return Promise.race([
    published,
    // Failed before publishing: reject with that error.
    activated.then((k) => ({ kid: k.kid, activatesAt: opts.clock.now() })),
  ]).then((p) => {
    const done = activated.then(() => undefined);
    // The caller may ignore it; a failure is still reported through its own promise.
    done.catch(() => undefined);
    return { ...p, retired, activated: done };
  });
}

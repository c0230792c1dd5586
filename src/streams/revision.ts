/**
 * A stream revision packs two numbers into the uint64 `revision`:
 * the revocation-feed position the stream had applied when it sent the message (high
 * bits), and a counter that keeps revisions growing between feed positions (low bits).
 * Resuming from a revision therefore means "replay what the feed holds after its
 * position". The position is the JetStream sequence with NATS, so a revision means the
 * same on every replica.
 */
export const REVISION_COUNTER_BITS = 24n;

/** The revision of the next message: at least the current feed position, always above the previous revision. */
export function nextRevision(feedPosition: number, previous: bigint): bigint {
  const base = BigInt(feedPosition) << REVISION_COUNTER_BITS;
  return base > previous ? base : previous + 1n;
}

/** The feed position a revision was sent at. */
export function feedPositionOf(revision: bigint): number {
  return Number(revision >> REVISION_COUNTER_BITS);
}

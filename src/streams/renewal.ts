/** Jitter is up to this fraction of the renewal lead, taken off it (renew earlier, never later). */
export const RENEW_JITTER_FRACTION = 0.1;

/**
 * The effective renewal lead for a token: `min(lead, ttl/3)`, so a 3-second test token
 * renews with a second to spare while a 15-minute token renews `lead` before expiry.
 */
export function renewalLead(issuedAtMs: number, expiresAtMs: number, leadMs: number): number {
  return Math.min(leadMs, (expiresAtMs - issuedAtMs) / 3);
}

/**
 * When to mint the next token for a grant, in ms since epoch. `jitter` is a number in
 * [0, 1) (Math.random in production, fixed in tests); it moves the renewal earlier by up
 * to RENEW_JITTER_FRACTION of the lead, so a fleet started together does not renew in one
 * burst. The result is always before `expiresAtMs` and never before `issuedAtMs`.
 */
export function renewAt(issuedAtMs: number, expiresAtMs: number, leadMs: number, jitter: number): number {
  const lead = renewalLead(issuedAtMs, expiresAtMs, leadMs);
  const j = Math.min(Math.max(jitter, 0), 1) * RENEW_JITTER_FRACTION * lead;
  return Math.max(issuedAtMs, Math.floor(expiresAtMs - lead - j));
}

/**
 * Should a grant get another token at all? Not when the session ends before the current
 * token does (the current one already runs to the session's end), nor when less than a
 * second of session is left to give.
 */
export function needsRenewal(currentExpiresAtMs: number, sessionExpiresAtMs: number, nowMs: number): boolean {
  // Tokens expire on whole seconds: one clipped to the session's end expires at the last
  // whole second before it, and a renewal could do no better.
  const lastExp = Math.floor(sessionExpiresAtMs / 1000) * 1000;
  return currentExpiresAtMs < lastExp && sessionExpiresAtMs - nowMs >= 1000;
}

/**
 * Renewals are moved earlier onto a grid of this many ms, so the renewals due around the
 * same moment run in one tick and their audit records share one durable write (one
 * fdatasync per batch instead of one per renewal). Small beside any renewal lead.
 */
export const RENEW_COALESCE_MS = 100;

/** `at` moved earlier onto the {@link RENEW_COALESCE_MS} grid, but never before `notBeforeMs`. */
export function coalesceRenewal(at: number, notBeforeMs: number, gridMs = RENEW_COALESCE_MS): number {
  return Math.max(notBeforeMs, Math.floor(at / gridMs) * gridMs);
}

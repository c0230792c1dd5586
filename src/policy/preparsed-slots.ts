import { preparsePolicySet, type CheckParseAnswer, type PolicySet } from "@cedar-policy/cedar-wasm/nodejs";

/**
 * Names under which policy sets are preparsed inside cedar-wasm.
 *
 * cedar-wasm 4.13 keeps preparsed sets in a process-wide map keyed by the name given to
 * `preparsePolicySet`, and has no call to remove one. Preparsing under an existing name
 * replaces (and frees) the old set; every new name stays in wasm memory for good (measured:
 * ~0.9 MB per 300-policy set, so a fresh name per reload grows without bound). So each
 * engine owns one slot for its whole life and re-preparses into it on reload, and a closed
 * engine's slot is emptied and handed to the next engine instead of minting new names.
 */
const SLOT_PREFIX = "capvend-policy-";

const free: string[] = [];
let minted = 0;

/** A slot no live engine uses. */
export function acquireSlot(): string {
  return free.pop() ?? `${SLOT_PREFIX}${minted++}`;
}

/**
 * Replaces the set in `slot`. Side-effect free on failure: the previous set stays in force.
 */
export function preparseInto(slot: string, policies: PolicySet): CheckParseAnswer {
  return preparsePolicySet(slot, policies);
}

/**
 * Frees the set held in `slot` (by replacing it with an empty one) and returns the slot to
 * the pool. The caller must not use the slot afterwards.
 */
export function releaseSlot(slot: string): void {
  preparsePolicySet(slot, { staticPolicies: {} });
  free.push(slot);
}

/** How many slot names this process has created; for leak tests. */
export function slotsMinted(): number {
  return minted;
}

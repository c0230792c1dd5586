import type { RevocationList } from "../backends/types.js";
import { rethrowAs } from "../errors.js";

/** The write side of the revocation list. */
export type RevocationPublisher = Pick<RevocationList, "publish">;

/**
 * The revocation list's write side as Revoke and EndSession answer for it: a revocation that
 * could not be stored did not take effect, so the call fails with fault `revocation_unavailable`
 * (sent as REVOCATION_UNAVAILABLE; the backend's error kept as `cause`, for the log only).
 */
export function publishOrFail(revocations: RevocationPublisher): RevocationPublisher {
  return {
    async publish(r) {
      await revocations.publish(r).catch(rethrowAs("revocation_unavailable"));
    },
  };
}

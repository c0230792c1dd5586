import type { RevocationList } from "../backends/types.js";
import { capvendError } from "../errors.js";

/** The write side of the revocation list. */
export type RevocationPublisher = Pick<RevocationList, "publish">;

/**
 * The revocation list's write side as Revoke and EndSession answer for it: a revocation that
 * could not be stored did not take effect, so the call fails with REVOCATION_UNAVAILABLE (the
 * backend's error kept as `cause`, for the log only).
 */
export function publishOrFail(revocations: RevocationPublisher): RevocationPublisher {
  return {
    async publish(r) {
      try {
        await revocations.publish(r);
      } catch (err) {
        throw capvendError("REVOCATION_UNAVAILABLE", "the revocation could not be stored, so it did not take effect; retry", {}, err);
      }
    },
  };
}

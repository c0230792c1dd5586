import type { AuditEvent } from "./event.js";
import type { AuditSink } from "./sink.js";

/**
 * Wraps a sink so every record carries the policy version in force (`policy_version`),
 * unless the event names one itself. Decisions and swaps are synchronous and most records
 * are appended in the tick that decided, so this is the version that decided; a call that
 * awaits a store between its decision and its record may, across a swap, name the newer one.
 */
export function stampPolicyVersion(sink: AuditSink, version: () => string): AuditSink {
  return {
    append(event: AuditEvent) {
      const v = version();
      return sink.append(event.policy_version !== undefined || v === "" ? event : { ...event, policy_version: v });
    },
    get state() {
      return sink.state;
    },
    close: () => sink.close(),
  };
}

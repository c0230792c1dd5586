/**
 * Fan-out to several sinks (the local file log plus, later, JetStream): a record counts as
 * written only when every sink has written it.
 */
import { fault } from "../errors.js";
import type { AuditSink, AuditSinkState } from "./sink.js";

/**
 * A sink whose append resolves when `primary` and every one of `others` have resolved, and
 * rejects as soon as any rejects (with that sink's error). A record may then exist in the
 * sinks that succeeded: over-reporting, never under-reporting. `state.file` is the
 * primary's; `healthy` is true only when all are; `close` closes all and rejects if any
 * close failed.
 */
export function combineAuditSinks(primary: AuditSink, ...others: AuditSink[]): AuditSink {
  const sinks = [primary, ...others];
  let closing: Promise<void> | undefined;
  return {
    append(event) {
      return Promise.all(sinks.map((s) => s.append(event))).then(() => undefined);
    },
    get state(): AuditSinkState {
      const states = sinks.map((s) => s.state);
      const p = states[0]!;
      const s: AuditSinkState = {
        ...p,
        healthy: states.every((x) => x.healthy),
        pending: Math.max(...states.map((x) => x.pending)),
      };
      const failing = states.findIndex((x) => !x.healthy);
      if (failing !== -1) {
        const err = states[failing]!.lastError;
        s.lastError = failing === 0 ? err ?? "primary audit sink unhealthy" : `audit sink #${failing}: ${err ?? "unhealthy"}`;
      } else {
        delete s.lastError;
      }
      return s;
    },
    close() {
      closing ??= Promise.allSettled(sinks.map((s) => s.close())).then((results) => {
        const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
        if (failed) {
          throw failed.reason instanceof Error ? failed.reason : fault("audit_unavailable", String(failed.reason));
        }
      });
      return closing;
    },
  };
}

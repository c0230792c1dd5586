import { asFault, isFaultError } from "../errors.js";
import type { AuditEvent } from "./event.js";
import type { AuditSink } from "./sink.js";

/**
 * Appends an audit record for a decision, failing closed: any sink failure rejects with fault
 * `audit_unavailable` (sent as AUDIT_UNAVAILABLE), an event the sink refused with
 * `audit_event_refused` (a bug: inputs are validated first, so retrying cannot help; sent as
 * INTERNAL). `outcome` tells the caller what the failure means for the call, e.g. "nothing
 * was issued" (the default).
 */
export async function appendOrFail(audit: Pick<AuditSink, "append">, event: AuditEvent, outcome = "nothing was issued"): Promise<void> {
  await audit.append(event).catch((err: unknown) => {
    throw asFault(isFaultError(err, "audit_event_refused") ? "audit_event_refused" : "audit_unavailable", err, outcome);
  });
}

/**
 * Errors the audit sink raises. Messages say what failed (timeout, write error, which field
 * was refused) and never carry event contents, so they are safe to log and to map to a
 * caller-facing status.
 */

/**
 * The sink could not make a record durable: a write or fsync failed, it did not answer within
 * the timeout, or the sink is closed. Callers must fail closed (no token without its record),
 * typically as `UNAVAILABLE`.
 */
export class AuditUnavailableError extends Error {
  override readonly name = "AuditUnavailableError";
  readonly code = "audit_unavailable";
}

/**
 * The sink refused an event before writing anything: it carries something that looks like a
 * token, credential or key, or it is not a valid audit event. A programming error, so
 * typically `INTERNAL`; the message names the field, never its value.
 */
export class AuditEventRefusedError extends Error {
  override readonly name = "AuditEventRefusedError";
  readonly code = "audit_event_refused";
}

/**
 * The on-disk log cannot be continued safely (its newest record is corrupt, or a torn tail
 * was found and the sink was told to refuse rather than quarantine it). Raised when opening a
 * file sink; an operator must look at the log (`capvend audit verify`).
 */
export class AuditLogCorruptError extends Error {
  override readonly name = "AuditLogCorruptError";
  readonly code = "audit_log_corrupt";
}

/**
 * The log is shorter than its last signed checkpoint, differs from it, or is missing while the
 * data directory says records were written. Raised when opening a file sink; the server
 * refuses to start until an operator accepts the gap (CAPVEND_ACCEPT_AUDIT_GAP), which is then
 * recorded in the log.
 */
export class AuditGapError extends Error {
  override readonly name = "AuditGapError";
  readonly code = "audit_gap";
}

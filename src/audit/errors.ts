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

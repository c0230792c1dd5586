/** The interface every audit sink implements, and the defaults they share. */
import type { AuditEvent } from "./event.js";

/** How long an append may take before the caller gets `AuditUnavailableError`: 2 s (defined with the other defaults). */
export { DEFAULT_AUDIT_TIMEOUT_MS } from "../config/config.js";

/** Size at which the file sink starts a new segment: 64 MiB. */
export const DEFAULT_AUDIT_MAX_FILE_BYTES = 64 * 1024 * 1024;

/** What a sink reports about itself. */
export interface AuditSinkState {
  /** False after a failed or timed-out write, until a later write succeeds. */
  healthy: boolean;
  /** Why the sink last failed; cleared by the next successful write. */
  lastError?: string;
  /** Appends accepted and not yet settled. */
  pending: number;
  /** The file currently written to, for file-backed sinks. */
  file?: string;
  /** Sequence number of the last durable record, for chained sinks. */
  lastSeq?: number;
  /** Hash of the last durable line (the next record's `prev`); worth publishing elsewhere as an anchor. */
  lastHash?: string;
}

/**
 * Where audit records go. Fail closed: the caller does not act (return a token) until
 * `append` resolves.
 */
export interface AuditSink {
  /**
   * Resolves once the record is durable per the sink's durability setting. Rejects with
   * `AuditUnavailableError` when the sink fails or does not answer within its timeout, and
   * with `AuditEventRefusedError` when the event carries a secret or is invalid. Never
   * resolves after rejecting.
   */
  append(event: AuditEvent): Promise<void>;
  readonly state: AuditSinkState;
  /** Flushes what was accepted and releases resources. Idempotent: later calls return the same promise. */
  close(): Promise<void>;
}

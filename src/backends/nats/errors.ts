/**
 * Errors of the NATS backends. Messages name what failed (publish, KV read, which bucket)
 * and never carry record contents, so callers may log them and map them to UNAVAILABLE.
 */

/** NATS is unreachable, did not answer in time, or refused the operation: retry later. */
export class NatsUnavailableError extends Error {
  override readonly name = "NatsUnavailableError";
  readonly code = "nats_unavailable";
}

/** The backend was closed; nothing more is accepted. */
export class NatsBackendClosedError extends Error {
  override readonly name = "NatsBackendClosedError";
  readonly code = "nats_backend_closed";
}

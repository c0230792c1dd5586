import { randomUUID } from "node:crypto";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { Clock } from "../../clock.js";
import { AuditUnavailableError } from "../../audit/errors.js";
import { prepareAuditEvent, type AuditEvent } from "../../audit/event.js";
import { type AuditSink, type AuditSinkState, DEFAULT_AUDIT_TIMEOUT_MS } from "../../audit/sink.js";
import type { Logger } from "../../logging/logger.js";
import { describeNatsError, withDeadline } from "./deadline.js";
import type { NatsLink } from "./link-state.js";
import { AUDIT_SUBJECT_PREFIX } from "./names.js";
import { sleep } from "./resubscribe.js";

/** Records held while NATS is unreachable, at most; past this, appends fail (fail closed). */
export const DEFAULT_AUDIT_SPOOL_LIMIT = 10_000;
/** Pause between attempts to flush the spool after a failed publish, ms. */
const SPOOL_RETRY_MS = 1000;

/** Options for `createJetStreamAuditSink`. */
export interface JetStreamAuditSinkOptions {
  js: JetStreamClient;
  link: NatsLink;
  clock: Clock;
  logger: Logger;
  /** Stamped into every record (`replica`). */
  replica: string;
  /** Deadline of one publish, ms; default 2000. */
  timeoutMs?: number;
  /** Default `AUDIT_SUBJECT_PREFIX`. */
  subjectPrefix?: string;
  /**
   * Records kept while NATS is unreachable, published in order once it is back; default
   * `DEFAULT_AUDIT_SPOOL_LIMIT`. 0 turns spooling off: every append then needs NATS.
   */
  spoolLimit?: number;
}

/** The JetStream sink and its spool, for monitoring. */
export interface JetStreamAuditSink extends AuditSink {
  /** Records waiting in the spool. */
  readonly spooled: number;
}

interface Spooled {
  subject: string;
  data: Uint8Array;
  msgId: string;
}

/**
 * Audit events on the JetStream stream `CAPVEND_AUDIT`, subject `capvend.audit.<type>`, one
 * JSON object each (the event as the file log stores it, without the chain fields), with a
 * unique `Nats-Msg-Id` so a retried publish is stored once.
 *
 * While NATS is reachable, `append` resolves once JetStream acknowledged the record and
 * rejects with `AuditUnavailableError` on failure or after `timeoutMs`. While it is not (the
 * link is down), records go to a bounded in-memory spool and `append` resolves: this sink
 * sits beside the local file log, which has already made the record durable (the combined
 * sink requires both), and issuance for known sessions must go on through an outage. The
 * spool is flushed in order on reconnect; when it is full, appends fail closed. Spooling
 * is not a failure: `state.healthy` stays true (spooled records count in `pending`) until a
 * write fails or the spool is full.
 */
export function createJetStreamAuditSink(opts: JetStreamAuditSinkOptions): JetStreamAuditSink {
  const { js, link, clock, logger, replica } = opts;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_AUDIT_TIMEOUT_MS;
  const prefix = opts.subjectPrefix ?? AUDIT_SUBJECT_PREFIX;
  const spoolLimit = opts.spoolLimit ?? DEFAULT_AUDIT_SPOOL_LIMIT;
  const spool: Spooled[] = [];
  let pending = 0;
  /** Why the last publish failed; cleared by the next one that succeeds. */
  let publishError: string | undefined;
  let closing: Promise<void> | undefined;
  let flushing: Promise<void> | undefined;
  const stop = new AbortController();

  const publish = (m: Spooled) =>
    withDeadline(js.publish(m.subject, m.data, { msgID: m.msgId, timeout: timeoutMs }), timeoutMs, clock, "audit publish");

  /** Publishes the spool in order; stops at the first failure and retries while connected. */
  const flush = (): Promise<void> => {
    flushing ??= (async () => {
      try {
        while (spool.length > 0 && link.connected && !stop.signal.aborted) {
          try {
            await publish(spool[0]!);
            spool.shift();
            publishError = undefined;
          } catch (err) {
            publishError = describeNatsError(err);
            logger.warn({ spooled: spool.length, error: publishError }, "audit spool flush failed; retrying");
            await sleep(clock, SPOOL_RETRY_MS, stop.signal);
          }
        }
      } finally {
        flushing = undefined;
      }
    })();
    return flushing;
  };
  const unsubscribe = link.onChange((connected) => {
    if (connected && spool.length > 0) void flush();
  });

  return {
    get spooled() {
      return spool.length;
    },
    async append(event: AuditEvent): Promise<void> {
      if (closing) throw new AuditUnavailableError("audit record not written: the JetStream audit sink is closed");
      // Refusals (a secret in the event) come first and are never spooled.
      const body = prepareAuditEvent(event, { replica, now: clock.now() });
      const m: Spooled = { subject: `${prefix}.${event.type}`, data: new TextEncoder().encode(JSON.stringify(body)), msgId: randomUUID() };
      if (!link.connected && spoolLimit > 0) {
        if (spool.length >= spoolLimit) {
          publishError = `spool full (${spoolLimit} records) while NATS is unreachable`;
          throw new AuditUnavailableError(`audit record not written: the JetStream audit spool is full (${spoolLimit} records) while NATS is unreachable`);
        }
        spool.push(m);
        return;
      }
      pending++;
      try {
        await publish(m);
        publishError = undefined;
      } catch (err) {
        publishError = describeNatsError(err);
        throw new AuditUnavailableError(`audit record not written: JetStream did not acknowledge it (${publishError})`, { cause: err });
      } finally {
        pending--;
      }
    },
    get state(): AuditSinkState {
      // Spooling is not failing (appends resolve, the file log holds the records): healthy
      // until a write fails or the spool is full. Spooled records count as pending.
      const s: AuditSinkState = { healthy: publishError === undefined, pending: pending + spool.length };
      if (publishError !== undefined) s.lastError = publishError;
      return s;
    },
    close() {
      closing ??= (async () => {
        unsubscribe();
        // One bounded attempt to hand over what is spooled; what remains is in the file log.
        if (spool.length > 0 && link.connected) await Promise.race([flush(), sleep(clock, timeoutMs, new AbortController().signal)]);
        stop.abort();
        if (spool.length > 0) logger.warn({ spooled: spool.length }, "closing the JetStream audit sink with records still spooled; they remain in the local audit log");
      })();
      return closing;
    },
  };
}

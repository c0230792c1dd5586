import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Clock } from "../../clock.js";
import type { Logger } from "../../logging/logger.js";
import type { ReplicaQueries, ReplicaQueryResult } from "../types.js";
import { REPLICA_QUERY_SUBJECT_PREFIX } from "./names.js";

/** The header naming the replica that answered a query. */
export const REPLICA_HEADER = "capvend-replica";
/** Largest question or answer a replica exchanges, bytes: 512 KiB (below NATS's default 1 MiB payload). */
export const MAX_REPLICA_QUERY_BYTES = 512 * 1024;

export interface ReplicaQueriesOptions {
  nc: NatsConnection;
  /** This replica's id (CAPVEND_REPLICA_ID): its own answers are not gathered. */
  replica: string;
  /** The other replicas believed alive (the policy status bucket's reporters). */
  knownReplicas(): Promise<string[]>;
  clock: Clock;
  logger: Logger;
  /** Longest wait for every answer, ms (CAPVEND_NATS_TIMEOUT). */
  timeoutMs: number;
}

/** Opens replica queries on a connection. Nothing to close beyond the stop functions of `answer`. */
export function createReplicaQueries(opts: ReplicaQueriesOptions): ReplicaQueries {
  const { nc, replica, clock, logger } = opts;
  const subjectOf = (topic: string) => `${REPLICA_QUERY_SUBJECT_PREFIX}.${topic}`;

  return {
    answer(topic, respond) {
      const sub: Subscription = nc.subscribe(subjectOf(topic), {
        callback: (err, msg) => {
          if (err || !msg.reply) return;
          void answerOne(msg, respond).catch((e: unknown) => logger.warn({ err: e, topic }, "could not answer a replica query"));
        },
      });
      return () => sub.unsubscribe();
    },

    async ask(topic, question) {
      let known: string[];
      try {
        known = (await opts.knownReplicas()).filter((r) => r !== replica);
      } catch (err) {
        // Without the directory, every answer that arrives in time is still worth showing.
        logger.warn({ err, topic }, "could not read the replica directory; gathering answers until the timeout");
        known = [];
      }
      const answers = new Map<string, Uint8Array>();
      const inbox = createInbox();
      return await new Promise<ReplicaQueryResult>((resolve) => {
        let sub: Subscription | undefined;
        let done = false;
        const finish = () => {
          if (done) return;
          done = true;
          clock.clearTimeout(timer);
          sub?.unsubscribe();
          resolve({
            answers: [...answers].map(([r, body]) => ({ replica: r, body })).sort((a, b) => a.replica.localeCompare(b.replica)),
            unanswered: known.filter((r) => !answers.has(r)).sort(),
          });
        };
        const timer = clock.setTimeout(finish, opts.timeoutMs);
        try {
          sub = nc.subscribe(inbox, {
            callback: (err, msg) => {
              if (err) return;
              const from = msg.headers?.get(REPLICA_HEADER);
              if (!from || from === replica) return;
              answers.set(from, msg.data);
              if (known.length > 0 && known.every((r) => answers.has(r))) finish();
            },
          });
          nc.publish(subjectOf(topic), question, { reply: inbox });
        } catch (err) {
          // A closed or draining connection: nobody can answer.
          logger.warn({ err, topic }, "could not ask the other replicas");
          finish();
        }
      });
    },
  };

  async function answerOne(msg: Msg, respond: (question: Uint8Array) => Uint8Array | Promise<Uint8Array>): Promise<void> {
    if (msg.data.byteLength > MAX_REPLICA_QUERY_BYTES) return;
    const body = await respond(msg.data);
    if (body.byteLength > MAX_REPLICA_QUERY_BYTES) {
      logger.warn({ bytes: body.byteLength }, "a replica query answer is too large to send; not answered");
      return;
    }
    const h = headers();
    h.set(REPLICA_HEADER, replica);
    msg.respond(body, { headers: h });
  }
}

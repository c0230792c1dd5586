import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Clock } from "../clock.js";
import { GetSessionRequestSchema, GetSessionResponseSchema, type Stream } from "../gen/capvend/admin/v1/admin_pb.js";
import type { Logger } from "../logging/logger.js";
import type { ReplicaQueries } from "../backends/types.js";
import { validateId } from "../service/validate.js";
import type { WatchStream } from "../streams/watch-stream.js";
import { streamMessage } from "./admin-service.js";

/** The replica-query topic on which replicas answer "which of your streams belong to this session?". */
export const STREAMS_TOPIC = "streams";

/** A session's streams held by other replicas, for AdminService.GetSession. */
export interface RemoteStreams {
  remoteStreams(sessionId: string): Promise<{ streams: Stream[]; unanswered: string[] }>;
  /** Stops answering other replicas. Idempotent. */
  stop(): void;
}

/**
 * Shares this replica's streams with the others and asks them for theirs. Questions and
 * answers are `capvend.admin.v1.GetSessionRequest` / `GetSessionResponse` (only `streams`
 * set) in protobuf binary, so the exchange is versioned by the contract. An answer that does
 * not decode counts as unanswered and is logged.
 */
export function shareStreams(opts: {
  queries: ReplicaQueries;
  replica: string;
  streamsOf(sessionId: string): WatchStream[];
  clock: Clock;
  logger: Logger;
}): RemoteStreams {
  const { queries, replica, clock, logger } = opts;
  const stop = queries.answer(STREAMS_TOPIC, (question) => {
    const { sessionId } = fromBinary(GetSessionRequestSchema, question);
    const id = validateId("session_id", sessionId);
    const now = clock.now();
    return toBinary(GetSessionResponseSchema, create(GetSessionResponseSchema, { streams: opts.streamsOf(id).map((s) => streamMessage(replica, s, now)) }));
  });
  return {
    async remoteStreams(sessionId) {
      const result = await queries.ask(STREAMS_TOPIC, toBinary(GetSessionRequestSchema, create(GetSessionRequestSchema, { sessionId })));
      const streams: Stream[] = [];
      const unanswered = [...result.unanswered];
      for (const answer of result.answers) {
        try {
          streams.push(...fromBinary(GetSessionResponseSchema, answer.body).streams);
        } catch (err) {
          logger.warn({ err, replica: answer.replica }, "a replica's stream list did not decode; shown as unanswered");
          unanswered.push(answer.replica);
        }
      }
      return { streams, unanswered: unanswered.sort() };
    },
    stop,
  };
}

/**
 * Renewals as traces of their own. A stream lives for hours; were each renewal a child of
 * the WatchSession span, that trace would grow without end and never be complete. Each
 * renewal is instead a root span linked to the stream's span, so either leads to the other.
 */
import { ROOT_CONTEXT, SpanKind, type SpanContext, type Tracer } from "@opentelemetry/api";
import type { SessionRecord } from "../backends/types.js";
import type { StreamTokens } from "../streams/stream-tokens.js";
import { ATTR_RESOURCE, ATTR_STREAM_ID, ATTR_TOKEN_SCOPES, SPAN_RENEW } from "./attributes.js";
import { recordError } from "./span-errors.js";
import { sessionAttributes } from "./traced-issuer.js";

/**
 * The span context of each open WatchSession call, keyed by the session record the call
 * authenticated with. The hub hands that same object to its WatchStream (`stream.session`),
 * and every call authenticates into a fresh record, so two streams of one session do not
 * share a key; the entry goes when the record does.
 */
export class StreamSpans {
  readonly #bySession = new WeakMap<SessionRecord, SpanContext>();

  remember(session: SessionRecord, span: SpanContext): void {
    this.#bySession.set(session, span);
  }

  of(session: SessionRecord): SpanContext | undefined {
    return this.#bySession.get(session);
  }
}

/**
 * Decorates a stream token source: each renewal (`token.renewed`) runs under a new root span
 * `capvend.renew`, linked to the stream's WatchSession span when it is known, so the
 * issuance, policy, mint and audit spans of the renewal nest under it. A stream's first
 * tokens are minted inside its WatchSession call and need no span of their own.
 */
export function traceRenewals(tokens: StreamTokens, tracer: Tracer, streams: StreamSpans): StreamTokens {
  return {
    mint(stream, grant, event) {
      if (event !== "token.renewed") return tokens.mint(stream, grant, event);
      const link = streams.of(stream.session);
      const options = {
        root: true,
        kind: SpanKind.INTERNAL,
        links: link ? [{ context: link }] : [],
        attributes: { ...sessionAttributes(stream.session), [ATTR_STREAM_ID]: stream.id, [ATTR_RESOURCE]: grant.resource, [ATTR_TOKEN_SCOPES]: [...grant.scopes] },
      };
      return tracer.startActiveSpan(SPAN_RENEW, options, ROOT_CONTEXT, async (span) => {
        try {
          return await tokens.mint(stream, grant, event);
        } catch (err) {
          recordError(span, err);
          throw err;
        } finally {
          span.end();
        }
      });
    },
  };
}

/**
 * Redaction of spans before any exporter sees them. capvend's code never puts a token on a
 * span, but a library, a future change or an error message might; this processor is the
 * guarantee that none leaves the process, whatever was recorded.
 */
import type { Attributes, AttributeValue, Context, Link, SpanStatus } from "@opentelemetry/api";
import type { ReadableSpan, Span, SpanProcessor, TimedEvent } from "@opentelemetry/sdk-trace-base";
import { isSecretKey, looksSecret, REDACTED } from "../security/redact.js";

/**
 * A SpanProcessor that owns the processors behind it (batch or simple processors with their
 * exporters): each ended span reaches them only as a redacted view. An attribute (of the
 * span, an event or a link) whose value looks like a secret (`looksSecret`), or whose last
 * key segment names one (`authorization`, `token`…), is dropped and counted in
 * `droppedAttributesCount`; a span name, event name or status message that looks like a
 * secret becomes `[REDACTED]`. Spans with nothing to redact pass through as they are.
 *
 * Being the only processor the provider knows (rather than the first of several) is what
 * makes the order hold: nothing else can see a span first. For the same reason the
 * experimental `onEnding` hook, which exposes the live span, is not forwarded.
 * `shutdown` is idempotent.
 */
export class RedactingSpanProcessor implements SpanProcessor {
  readonly #downstream: readonly SpanProcessor[];
  #shutdown: Promise<void> | undefined;

  constructor(downstream: readonly SpanProcessor[]) {
    this.#downstream = [...downstream];
  }

  onStart(span: Span, parentContext: Context): void {
    for (const p of this.#downstream) p.onStart(span, parentContext);
  }

  onEnd(span: ReadableSpan): void {
    if (this.#shutdown) return;
    const safe = redactSpan(span);
    for (const p of this.#downstream) p.onEnd(safe);
  }

  async forceFlush(): Promise<void> {
    await Promise.all(this.#downstream.map((p) => p.forceFlush()));
  }

  shutdown(): Promise<void> {
    this.#shutdown ??= Promise.all(this.#downstream.map((p) => p.shutdown())).then(() => undefined);
    return this.#shutdown;
  }
}

/** True when an attribute must not leave the process. */
export function isSecretAttribute(key: string, value: AttributeValue | undefined): boolean {
  if (isSecretKey(key.slice(key.lastIndexOf(".") + 1))) return true;
  if (typeof value === "string") return looksSecret(value);
  if (Array.isArray(value)) return value.some((v) => typeof v === "string" && looksSecret(v));
  return false;
}

/** The attributes without the secret ones, and how many were dropped; the same object when none were. */
function cleanAttributes(attrs: Attributes | undefined): { attrs: Attributes | undefined; dropped: number } {
  if (!attrs) return { attrs, dropped: 0 };
  let out: Attributes | undefined;
  let dropped = 0;
  for (const key of Object.keys(attrs)) {
    if (!isSecretAttribute(key, attrs[key])) continue;
    out ??= { ...attrs };
    delete out[key];
    dropped++;
  }
  return { attrs: out ?? attrs, dropped };
}

const secretText = (s: string | undefined): boolean => s !== undefined && looksSecret(s);

/**
 * The span as exporters may see it: `span` itself when nothing in it looks secret, else a
 * read-only copy with the secrets removed. Exported for tests and for exporters built outside
 * `createTelemetry`.
 */
export function redactSpan(span: ReadableSpan): ReadableSpan {
  const own = cleanAttributes(span.attributes);
  let eventsChanged = false;
  const events: TimedEvent[] = span.events.map((e) => {
    const c = cleanAttributes(e.attributes);
    if (c.dropped === 0 && !secretText(e.name)) return e;
    eventsChanged = true;
    return {
      ...e,
      name: secretText(e.name) ? REDACTED : e.name,
      attributes: c.attrs,
      droppedAttributesCount: (e.droppedAttributesCount ?? 0) + c.dropped,
    };
  });
  let linksChanged = false;
  const links: Link[] = span.links.map((l) => {
    const c = cleanAttributes(l.attributes);
    if (c.dropped === 0) return l;
    linksChanged = true;
    return { ...l, attributes: c.attrs, droppedAttributesCount: (l.droppedAttributesCount ?? 0) + c.dropped };
  });
  const statusSecret = secretText(span.status.message);
  const nameSecret = secretText(span.name);
  if (own.dropped === 0 && !eventsChanged && !linksChanged && !statusSecret && !nameSecret) return span;

  const status: SpanStatus = statusSecret ? { ...span.status, message: REDACTED } : span.status;
  return Object.freeze({
    name: nameSecret ? REDACTED : span.name,
    kind: span.kind,
    spanContext: () => span.spanContext(),
    parentSpanContext: span.parentSpanContext,
    startTime: span.startTime,
    endTime: span.endTime,
    status,
    attributes: own.attrs ?? {},
    links,
    events,
    duration: span.duration,
    ended: span.ended,
    resource: span.resource,
    instrumentationScope: span.instrumentationScope,
    droppedAttributesCount: span.droppedAttributesCount + own.dropped,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  });
}

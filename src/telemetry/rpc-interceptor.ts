/**
 * A server span for every RPC, continuing the caller's W3C `traceparent`. It goes outermost
 * in the interceptor chain, so a call refused by authentication is traced like any other.
 */
import {
  context,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
  type Tracer,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { Code, ConnectError, createContextKey, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { principalKey } from "../auth/principal.js";
import { callTraceKey } from "../logging/call-trace.js";
import {
  ATTR_RPC_CONNECT_RPC_ERROR_CODE,
  ATTR_RPC_GRPC_STATUS_CODE,
  ATTR_RPC_METHOD,
  ATTR_RPC_SERVICE,
  ATTR_RPC_SYSTEM,
  RPC_SYSTEM_CONNECT_RPC,
  RPC_SYSTEM_GRPC,
} from "./attributes.js";
import type { StreamSpans } from "./renewal-tracing.js";
import { principalAttributes, requestAttributes, responseAttributes } from "./rpc-attributes.js";
import { codeName, recordError } from "./span-errors.js";

/** The server span of the current call. */
export const rpcSpanKey = createContextKey<Span | undefined>(undefined, { description: "capvend rpc span" });

/** Puts the call's span in its context values, and its ids where logs and audit records look for them. */
function setCallSpan(values: ContextValues, span: Span): void {
  values.set(rpcSpanKey, span);
  const sc = span.spanContext();
  if (isSpanContextValid(sc)) values.set(callTraceKey, { traceId: sc.traceId, spanId: sc.spanId });
}

const headersGetter: TextMapGetter<Headers> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};

/** "grpc" for gRPC and gRPC-Web (application/grpc*), "connect_rpc" for the Connect protocol. */
export function rpcSystemOf(header: Headers): string {
  return (header.get("content-type") ?? "").startsWith("application/grpc") ? RPC_SYSTEM_GRPC : RPC_SYSTEM_CONNECT_RPC;
}

/**
 * The tracing interceptor. Each call gets a SERVER span named `<service>/<Method>` with
 * `rpc.*` attributes, the caller (session, agent, user; or orchestrator id), the allow-listed
 * fields of its request and response (see rpc-attributes.ts), and `rpc.grpc.status_code`.
 * A failure sets status ERROR with the caller-facing message and `error.type`; a stream the
 * client abandons gets CANCELLED (1) without an error status: that is how streams end.
 *
 * The span is the active context while the handler runs, including every step of a server
 * stream, so the work below it (and log lines) attach to it. `streams` learns the span of
 * every WatchSession-like stream opened by a session credential, for renewal links.
 */
export function rpcTracingInterceptor(tracer: Tracer, streams?: StreamSpans, recording = true): Interceptor {
  const propagator = new W3CTraceContextPropagator();
  if (!recording) {
    // Tracing is off: the call still gets its ids (continuing the caller's trace id) for
    // audit records and log lines, and nothing else is spent on it.
    return (next) => (req) => {
      const parent = req.header.has("traceparent") ? propagator.extract(ROOT_CONTEXT, req.header, headersGetter) : ROOT_CONTEXT;
      setCallSpan(req.contextValues, tracer.startSpan(req.method.name, { kind: SpanKind.SERVER }, parent));
      return next(req);
    };
  }
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    const system = rpcSystemOf(req.header);
    const parent = propagator.extract(ROOT_CONTEXT, req.header, headersGetter);
    const span = tracer.startSpan(
      `${service}/${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [ATTR_RPC_SYSTEM]: system,
          [ATTR_RPC_SERVICE]: service,
          [ATTR_RPC_METHOD]: method,
          ...(req.stream ? {} : requestAttributes(service, method, req.message)),
        },
      },
      parent,
    );
    setCallSpan(req.contextValues, span);
    const active = trace.setSpan(parent, span);

    let ended = false;
    let principalSeen = false;
    const notePrincipal = () => {
      if (principalSeen) return;
      const p = req.contextValues.get(principalKey);
      if (!p) return;
      principalSeen = true;
      span.setAttributes(principalAttributes(p));
    };
    const finish = (err?: unknown, cancelled = false) => {
      if (ended) return;
      ended = true;
      notePrincipal();
      if (err !== undefined) {
        const code = err instanceof ConnectError ? err.code : Code.Unknown;
        span.setAttribute(ATTR_RPC_GRPC_STATUS_CODE, code);
        if (system === RPC_SYSTEM_CONNECT_RPC) span.setAttribute(ATTR_RPC_CONNECT_RPC_ERROR_CODE, codeName(code));
        recordError(span, err);
      } else if (cancelled) {
        span.setAttribute(ATTR_RPC_GRPC_STATUS_CODE, Code.Canceled);
      } else {
        span.setAttribute(ATTR_RPC_GRPC_STATUS_CODE, 0);
        span.setStatus({ code: SpanStatusCode.OK });
      }
      span.end();
    };

    let res;
    try {
      res = await context.with(active, () => next(req));
    } catch (err) {
      finish(err);
      throw err;
    }
    notePrincipal();
    if (!res.stream) {
      span.setAttributes(responseAttributes(service, method, res.message));
      finish();
      return res;
    }
    const p = req.contextValues.get(principalKey);
    if (streams && p?.kind === "session") streams.remember(p.session, span.spanContext());
    // A handler parked in a write the client never reads may never resume; the call's signal still fires.
    req.signal.addEventListener("abort", () => finish(undefined, true), { once: true });
    return { ...res, message: bindToContext(res.message, active, finish) };
  };
}

/**
 * Runs every step of `source` inside `ctx` and reports how it ended. An iterator object
 * rather than a generator: `return()` must reach the source at once, even while a `next()`
 * is pending, or an abandoned stream would keep its handler alive.
 */
function bindToContext<T>(source: AsyncIterable<T>, ctx: Context, finish: (err?: unknown, cancelled?: boolean) => void): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = source[Symbol.asyncIterator]();
      return {
        next: () =>
          context.with(ctx, () => it.next()).then(
            (r) => {
              if (r.done) finish();
              return r;
            },
            (err: unknown) => {
              finish(err);
              throw err;
            },
          ),
        return: (value?: unknown) => {
          finish(undefined, true);
          return it.return ? context.with(ctx, () => it.return!(value)) : Promise.resolve({ done: true as const, value: value as T });
        },
        throw: (err?: unknown) => {
          finish(err);
          return it.throw ? context.with(ctx, () => it.throw!(err)) : Promise.reject(err);
        },
      };
    },
  };
}

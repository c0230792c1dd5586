/**
 * Runs a service method with the Connect interceptors, outside connect-node's protocol
 * handlers: the one piece that the gRPC front and the lean Connect unary path share, so
 * authentication, tracing and error handling are the same interceptors on every protocol.
 */
import { create, isMessage, type DescMessage, type DescMethod, type DescService, type MessageShape } from "@bufbuild/protobuf";
import {
  createConnectRouter,
  createServiceImplSpec,
  type ConnectRouter,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";

/** Every method the routes register, by its gRPC path (`/pkg.Service/Method`). */
export type MethodTable = ReadonlyMap<string, MethodImplSpec>;

/**
 * The methods `routes` registers, read by running it against a router that only records.
 * The same implementation objects serve connect-node and the lean paths.
 */
export function methodTable(routes: (router: ConnectRouter) => void): MethodTable {
  const table = new Map<string, MethodImplSpec>();
  const real = createConnectRouter();
  const recorder: ConnectRouter = {
    handlers: [],
    service(service, impl, options) {
      const spec = createServiceImplSpec(service, impl);
      for (const m of Object.values(spec.methods)) table.set(`/${service.typeName}/${m.method.name}`, m);
      real.service(service, impl, options);
      return recorder;
    },
    rpc(method, impl, options) {
      real.rpc(method, impl, options);
      const spec = { kind: method.methodKind, method, impl } as MethodImplSpec;
      table.set(`/${method.parent.typeName}/${method.name}`, spec);
      return recorder;
    },
  };
  routes(recorder);
  return table;
}

/** What a transport knows about one call. */
export interface CallInit {
  /** "grpc" or "connect": what `HandlerContext.protocolName` says. */
  protocolName: string;
  url: string;
  header: Headers;
  /** Aborted when the client goes away. */
  cancel: LazyAbort;
  contextValues: ContextValues;
  /** ms left until the client's deadline, when it set one. */
  timeoutMs?: number;
}

const EMPTY = new Headers();

/**
 * An abort signal made only when something reads it: most unary calls never do, and an
 * AbortController per call is a measurable share of a cheap call.
 */
export class LazyAbort {
  #controller: AbortController | undefined;
  #aborted = false;

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort();
    }
    return this.#controller.signal;
  }

  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#controller?.abort();
  }
}

// Responses made here: their headers are read from the call context, so none is made unless
// something set one. An interceptor that returns a response of its own is read as it is.
const ownResponses = new WeakSet<object>();

/**
 * The HandlerContext of one call. Response headers and trailers are made only when a handler
 * or interceptor asks for them: most calls never do.
 */
class CallContext implements HandlerContext {
  readonly method: DescMethod;
  readonly service: DescService;
  readonly requestMethod = "POST";
  readonly requestHeader: Headers;
  readonly protocolName: string;
  readonly values: ContextValues;
  readonly url: string;
  readonly #deadline: number | undefined;
  readonly #cancel: LazyAbort;
  #responseHeader: Headers | undefined;
  #responseTrailer: Headers | undefined;

  constructor(spec: MethodImplSpec, init: CallInit) {
    this.method = spec.method;
    this.service = spec.method.parent;
    this.#cancel = init.cancel;
    this.requestHeader = init.header;
    this.protocolName = init.protocolName;
    this.values = init.contextValues;
    this.url = init.url;
    this.#deadline = init.timeoutMs === undefined ? undefined : Date.now() + init.timeoutMs;
  }
  get signal(): AbortSignal {
    return this.#cancel.signal;
  }
  timeoutMs = (): number | undefined => (this.#deadline === undefined ? undefined : this.#deadline - Date.now());
  get responseHeader(): Headers {
    return (this.#responseHeader ??= new Headers());
  }
  get responseTrailer(): Headers {
    return (this.#responseTrailer ??= new Headers());
  }
  /** Response headers when any were set, else a shared empty object (never written to). */
  get headerOrEmpty(): Headers {
    return this.#responseHeader ?? EMPTY;
  }
  get trailerOrEmpty(): Headers {
    return this.#responseTrailer ?? EMPTY;
  }
}

/** The result of a unary call: the response message and any headers or trailers set. */
export interface UnaryResult {
  message: MessageShape<DescMessage>;
  header: Headers;
  trailer: Headers;
}

/** The result of a server-streaming call, once the interceptors let it start. */
export interface StreamResult {
  messages: AsyncIterable<MessageShape<DescMessage>>;
  header: Headers;
  trailer: () => Headers;
}

/** Runs methods through the interceptor chain; chains are built once per method. */
export interface RpcInvoker {
  unary(spec: MethodImplSpec, input: MessageShape<DescMessage>, init: CallInit): Promise<UnaryResult>;
  serverStream(spec: MethodImplSpec, input: MessageShape<DescMessage>, init: CallInit): Promise<StreamResult>;
}

const toMessage = (schema: DescMessage, value: unknown): MessageShape<DescMessage> =>
  isMessage(value, schema) ? value : create(schema, value as never);

/**
 * `source` with each value made a message. An iterator object rather than a generator: one
 * promise per message instead of a generator's queue, and `return()` reaches the source at
 * once, as it would through connect-node.
 */
function normalized(schema: DescMessage, source: AsyncIterable<unknown>): AsyncIterable<MessageShape<DescMessage>> {
  return {
    [Symbol.asyncIterator]() {
      const it = source[Symbol.asyncIterator]();
      const map = (r: IteratorResult<unknown>): IteratorResult<MessageShape<DescMessage>> =>
        r.done ? (r as IteratorReturnResult<MessageShape<DescMessage>>) : { done: false, value: toMessage(schema, r.value) };
      return {
        next: () => it.next().then(map),
        return: (value?: unknown) => (it.return ? it.return(value).then(map) : Promise.resolve({ done: true as const, value: value as MessageShape<DescMessage> })),
        throw: (err?: unknown) => (it.throw ? it.throw(err).then(map) : Promise.reject(err)),
      };
    },
  };
}

type AnyFn = (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>;

// The request object carries its context to the innermost function, which interceptors
// cannot see past (they pass the request on, possibly copied, with the same fields).
const contextOf = new WeakMap<ContextValues, CallContext>();

/** Builds the invoker for a set of interceptors (outermost first, as connect applies them). */
export function createRpcInvoker(interceptors: readonly Interceptor[]): RpcInvoker {
  const chains = new WeakMap<MethodImplSpec, AnyFn>();

  function chain(spec: MethodImplSpec): AnyFn {
    let fn = chains.get(spec);
    if (fn) return fn;
    const output = spec.method.output;
    let inner: AnyFn;
    if (spec.kind === "unary") {
      const impl = spec.impl as (m: unknown, ctx: HandlerContext) => unknown;
      inner = async (req) => {
        const ctx = contextOf.get(req.contextValues)!;
        const message = toMessage(output, await impl(req.message, ctx));
        const res = {
          stream: false,
          service: ctx.service,
          method: spec.method,
          message,
          get header() {
            return ctx.responseHeader;
          },
          get trailer() {
            return ctx.responseTrailer;
          },
        } as UnaryResponse;
        ownResponses.add(res);
        return res;
      };
    } else if (spec.kind === "server_streaming") {
      const impl = spec.impl as (m: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;
      inner = async (req) => {
        const ctx = contextOf.get(req.contextValues)!;
        const it = (req.message as AsyncIterable<unknown>)[Symbol.asyncIterator]();
        const first = await it.next();
        const message = normalized(output, impl(first.value, ctx));
        return { stream: true, service: ctx.service, method: spec.method, header: ctx.responseHeader, trailer: ctx.responseTrailer, message } as StreamResponse;
      };
    } else {
      throw new Error(`${spec.method.parent.typeName}.${spec.method.name}: only unary and server-streaming methods are served here`);
    }
    fn = interceptors.reduceRight<AnyFn>((next, interceptor) => interceptor(next) as AnyFn, inner);
    chains.set(spec, fn);
    return fn;
  }

  function request(spec: MethodImplSpec, init: CallInit, stream: boolean, message: unknown) {
    const ctx = new CallContext(spec, init);
    contextOf.set(init.contextValues, ctx);
    const req = {
      stream,
      service: ctx.service,
      method: spec.method,
      requestMethod: "POST",
      url: init.url,
      get signal() {
        return init.cancel.signal;
      },
      header: init.header,
      contextValues: init.contextValues,
      message,
    } as UnaryRequest | StreamRequest;
    return { ctx, req };
  }

  return {
    async unary(spec, input, init) {
      const { ctx, req } = request(spec, init, false, input);
      const res = (await chain(spec)(req)) as UnaryResponse;
      if (ownResponses.has(res)) return { message: res.message, header: ctx.headerOrEmpty, trailer: ctx.trailerOrEmpty };
      return { message: res.message, header: res.header, trailer: res.trailer };
    },
    async serverStream(spec, input, init) {
      const { ctx, req } = request(spec, init, true, once(input));
      const res = (await chain(spec)(req)) as StreamResponse;
      return { messages: res.message, header: res.header, trailer: () => res.trailer };
    },
  };
}

async function* once<T>(value: T): AsyncGenerator<T> {
  yield value;
}

/**
 * One unary or server-streaming gRPC call on a node:http2 stream: reads its one request
 * message, runs the method through the {@link RpcInvoker} in its turn (fair dispatch), and
 * writes the response headers, messages and status trailers, or a trailers-only response for
 * an error before any message.
 *
 * Lean by design, since this is the hot path of every gRPC call: the call object is also its
 * request reader, the stream's listeners are shared functions that find their call on the
 * stream, the abort signal is made only if something reads it, and nothing is allocated for
 * cancellation unless the client goes away first.
 */
import * as http2 from "node:http2";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type MethodImplSpec } from "@connectrpc/connect";
import { decodeRequestMessage } from "./decode-message.js";
import { decompress } from "./grpc-decompress.js";
import { COMPRESSED_FLAG, GrpcRequestReader } from "./grpc-request-reader.js";
import {
  GRPC_ACCEPT_ENCODING,
  GRPC_RESPONSE_CONTENT_TYPE,
  MAX_TIMER_MS,
  copyFields,
  envelope,
  errorTrailers,
  isEmpty,
  parseGrpcTimeout,
} from "./grpc-wire.js";
import type { FairDispatch } from "./fair-dispatch.js";
import type { HttpRequest } from "./http-routes.js";
import { requestHeadersFrom } from "./request-headers.js";
import { LazyAbort, type CallInit, type RpcInvoker, type StreamResult, type UnaryResult } from "./rpc-invoker.js";

const { NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR } = http2.constants;

/** What every call of one front shares. */
export interface GrpcCallDeps {
  invoker: RpcInvoker;
  dispatch: FairDispatch;
  readMaxBytes: number;
  /** Context values of one call, from a view of its stream (see streamRequestView). */
  contextValues(req: HttpRequest): ContextValues;
}

/** Request headers that describe the transport, not the call: interceptors never saw them. */
const TRANSPORT_HEADERS = new Set(["grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "accept-encoding", "te", "content-type", "content-length"]);

const kCall = Symbol("capvend.grpcCall");
type CallStream = http2.ServerHttp2Stream & { [kCall]?: GrpcCall };

/** Calls without a known connection share one turn. */
const unknownConnection = {};

const RESPONSE_HEADERS: http2.OutgoingHttpHeaders = {
  ":status": 200,
  "content-type": GRPC_RESPONSE_CONTENT_TYPE,
  "grpc-accept-encoding": GRPC_ACCEPT_ENCODING,
};
const OK_TRAILERS: http2.OutgoingHttpHeaders = { "grpc-status": "0" };
const UNSENDABLE_TRAILERS: http2.OutgoingHttpHeaders = { "grpc-status": String(Code.Internal), "grpc-message": "internal error: the response has a field HTTP/2 cannot carry" };
const WITH_TRAILERS = { waitForTrailers: true, sendDate: false } as http2.ServerStreamResponseOptions;
const TRAILERS_ONLY = { endStream: true, sendDate: false } as http2.ServerStreamResponseOptions;

/**
 * A stand-in for the Node request of a gRPC call, for `contextValues` and the stream reset
 * (`resetStream` closes `stream`). Only these fields exist.
 */
export function streamRequestView(stream: http2.ServerHttp2Stream | undefined, headers: http2.IncomingHttpHeaders, path: string): HttpRequest {
  return {
    httpVersion: "2.0",
    httpVersionMajor: 2,
    httpVersionMinor: 0,
    method: "POST",
    url: path,
    headers,
    stream,
    socket: stream?.session?.socket,
  } as unknown as HttpRequest;
}

/**
 * Answers a stream with a trailers-only status (UNIMPLEMENTED for an unknown method, say)
 * and stops its request body: RST_STREAM NO_ERROR after the response (RFC 9113 §8.1) when
 * the client is still sending, and what was sent is read and dropped, so the stream is
 * released at once.
 */
export function refuseGrpcStream(stream: http2.ServerHttp2Stream, err: ConnectError): void {
  stream.on("error", ignore);
  if (stream.destroyed || stream.headersSent) return;
  if (respondSafely(stream, errorTrailers(err, { ...RESPONSE_HEADERS }), TRAILERS_ONLY) && !stream.endAfterHeaders) stream.close(NGHTTP2_NO_ERROR);
  stream.resume();
}

/** Starts serving `stream` as a call of `spec`; everything after this is event-driven. */
export function serveGrpcCall(deps: GrpcCallDeps, spec: MethodImplSpec, path: string, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  let timeoutMs: number | undefined;
  try {
    timeoutMs = parseGrpcTimeout(headers["grpc-timeout"]);
  } catch (err) {
    refuseGrpcStream(stream, err as ConnectError);
    return;
  }
  const call = new GrpcCall(deps, spec, path, stream, headers, timeoutMs);
  (stream as CallStream)[kCall] = call;
  stream.on("error", ignore);
  stream.on("close", onClose);
  stream.on("data", onData);
  stream.on("end", onEnd);
  if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) call.timer = setTimeout(onDeadline, timeoutMs, call);
}

function ignore(): void {}

function onData(this: CallStream, chunk: Buffer): void {
  this[kCall]!.data(chunk);
}

function onEnd(this: CallStream): void {
  this[kCall]!.end();
}

function onClose(this: CallStream): void {
  this[kCall]!.closed();
}

// Listeners are added with on(), not once(): each event comes once per stream at most (or,
// for 'drain', is harmless again), and once() would wrap each in a closure per call.
function onWantTrailers(this: CallStream): void {
  const call = this[kCall]!;
  try {
    this.sendTrailers(call.trailers ?? OK_TRAILERS);
  } catch {
    // A trailer the handler set that HTTP/2 cannot carry: the status alone, or a reset.
    try {
      this.sendTrailers(UNSENDABLE_TRAILERS);
    } catch {
      this.close(NGHTTP2_INTERNAL_ERROR);
    }
  }
}

/**
 * Sends response headers; when HTTP/2 refuses them (a field the handler or an error's
 * metadata set that is not a valid header), a plain INTERNAL status instead, so a bad header
 * never escapes as an exception. False when `headers` were not sent (the call is over).
 */
function respondSafely(stream: http2.ServerHttp2Stream, headers: http2.OutgoingHttpHeaders, options: http2.ServerStreamResponseOptions): boolean {
  try {
    stream.respond(headers, options);
    return true;
  } catch {
    try {
      stream.respond({ ...RESPONSE_HEADERS, ...UNSENDABLE_TRAILERS }, TRAILERS_ONLY);
    } catch {
      stream.close(NGHTTP2_INTERNAL_ERROR);
    }
    return false;
  }
}

/** The response headers of a call whose handler set `header` (most set none: shared then). */
function responseHeaders(header: Headers): http2.OutgoingHttpHeaders {
  return isEmpty(header) ? RESPONSE_HEADERS : copyFields(header, { ...RESPONSE_HEADERS });
}

function onDrain(this: CallStream): void {
  this[kCall]!.wake();
}

function onDeadline(call: GrpcCall): void {
  call.timer = undefined;
  call.deadline();
}

class GrpcCall extends GrpcRequestReader {
  readonly #deps: GrpcCallDeps;
  readonly #spec: MethodImplSpec;
  readonly #path: string;
  readonly #stream: CallStream;
  readonly #headers: http2.IncomingHttpHeaders;
  readonly #timeoutMs: number | undefined;
  /** The client ended its side of the stream. */
  #ended = false;
  /** The outcome is decided (response ended, error sent, or the client gone): nothing more is sent. */
  #done = false;
  /** Made when the method starts; aborted if the client goes away before the call is done. */
  #abort: LazyAbort | undefined;
  #wake: (() => void) | undefined;
  #drainListening = false;
  /** The trailers to send when the stream asks for them; undefined: grpc-status 0. */
  trailers: http2.OutgoingHttpHeaders | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;

  constructor(deps: GrpcCallDeps, spec: MethodImplSpec, path: string, stream: CallStream, headers: http2.IncomingHttpHeaders, timeoutMs: number | undefined) {
    super(deps.readMaxBytes, spec.kind === "unary" ? "unary" : "server streaming");
    this.#deps = deps;
    this.#spec = spec;
    this.#path = path;
    this.#stream = stream;
    this.#headers = headers;
    this.#timeoutMs = timeoutMs;
  }

  data(chunk: Buffer): void {
    if (this.#done) return;
    const err = this.readChunk(chunk);
    if (err) this.#fail(err);
  }

  end(): void {
    this.#ended = true;
    if (this.#done) return;
    const err = this.readEnd();
    if (err) {
      this.#fail(err);
      return;
    }
    if (this.messageFlags & COMPRESSED_FLAG) {
      decompress(this.messageBytes!, this.#headers["grpc-encoding"], this.readMaxBytes).then(
        (bytes) => {
          this.messageBytes = bytes;
          this.#enqueue();
        },
        (e: unknown) => this.#fail(e),
      );
    } else {
      this.#enqueue();
    }
  }

  /** The stream is gone: a call still running is cancelled (its signal aborted, once). */
  closed(): void {
    this.#clearTimer();
    if (!this.#done) {
      this.#done = true;
      this.#abort?.abort();
    }
    this.wake();
  }

  deadline(): void {
    if (this.#done) return;
    this.#fail(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    this.#abort?.abort();
    this.wake();
  }

  wake(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  #enqueue(): void {
    const session = this.#stream.session;
    this.#deps.dispatch.run(session ?? unknownConnection, () => this.#start());
  }

  #start(): void {
    // Gone (or past its deadline) while it waited its turn.
    if (this.#done || this.#stream.destroyed) return;
    let input: MessageShape<DescMessage>;
    try {
      input = decodeRequestMessage(this.#spec.method.input, this.messageBytes!);
    } catch (err) {
      this.#fail(err);
      return;
    }
    this.messageBytes = undefined;
    const init = this.#init();
    if (this.#spec.kind === "unary") {
      this.#deps.invoker.unary(this.#spec, input, init).then(
        (res) => this.#respondUnary(res),
        (err: unknown) => this.#fail(err),
      );
    } else {
      this.#deps.invoker.serverStream(this.#spec, input, init).then(
        (res) => void this.#respondStream(res),
        (err: unknown) => this.#fail(err),
      );
    }
  }

  #init(): CallInit {
    const raw = this.#headers;
    const header = requestHeadersFrom(raw, TRANSPORT_HEADERS);
    // The tracing interceptor reads the protocol from it.
    header.set("content-type", GRPC_RESPONSE_CONTENT_TYPE);
    this.#abort = new LazyAbort();
    const contextValues = this.#deps.contextValues(streamRequestView(this.#stream, raw, this.#path));
    return { protocolName: "grpc", url: this.#path, header: header.asHeaders(), cancel: this.#abort, contextValues, timeoutMs: this.#timeoutMs };
  }

  #respondUnary(res: UnaryResult): void {
    if (this.#done) return;
    let frame: Buffer;
    try {
      frame = envelope(toBinary(this.#spec.method.output, res.message));
    } catch (err) {
      this.#fail(new ConnectError("failed to serialize the response", Code.Internal, undefined, undefined, err));
      return;
    }
    this.#done = true;
    this.#clearTimer();
    const stream = this.#stream;
    if (stream.destroyed) return;
    if (!isEmpty(res.trailer)) this.trailers = copyFields(res.trailer, { "grpc-status": "0" });
    if (!respondSafely(stream, responseHeaders(res.header), WITH_TRAILERS)) return;
    stream.on("wantTrailers", onWantTrailers);
    stream.end(frame);
  }

  async #respondStream(res: StreamResult): Promise<void> {
    const stream = this.#stream;
    const it = res.messages[Symbol.asyncIterator]();
    try {
      for (;;) {
        if (this.#done) {
          // Cancelled: the source's finally blocks run, as a for-await break would run them.
          await it.return?.();
          return;
        }
        // Each result goes straight to #send and is named nowhere here: a suspended async
        // function keeps its registers, so a message held in one would live until the next
        // arrives (seconds, on a WatchSession stream) and be promoted to the old generation.
        const step = this.#send(res, await it.next());
        if (step === "end") break;
        if (step === "stop") {
          await it.return?.();
          return;
        }
        if (step === "full") await this.#drained();
      }
    } catch (err) {
      this.#fail(err);
      return;
    }
    if (this.#done) return;
    this.#done = true;
    this.#clearTimer();
    if (stream.destroyed) return;
    const trailer = res.trailer();
    if (!stream.headersSent) {
      // No message: a trailers-only response, as grpc-js sends it.
      const out = copyFields(res.header, { ...RESPONSE_HEADERS, "grpc-status": "0" });
      respondSafely(stream, isEmpty(trailer) ? out : copyFields(trailer, out), TRAILERS_ONLY);
      return;
    }
    if (!isEmpty(trailer)) this.trailers = copyFields(trailer, { "grpc-status": "0" });
    stream.on("wantTrailers", onWantTrailers);
    stream.end();
  }

  /**
   * Writes one result of a server stream: "end" when the stream is over, "stop" when the
   * response could not start (the call is done), "full" when the write filled the stream's
   * buffer, else "sent" (a message of a call already done or gone is dropped).
   */
  #send(res: StreamResult, r: IteratorResult<MessageShape<DescMessage>>): "end" | "stop" | "full" | "sent" {
    if (r.done) return "end";
    const stream = this.#stream;
    if (this.#done || stream.destroyed) return "sent";
    if (!stream.headersSent && !respondSafely(stream, responseHeaders(res.header), WITH_TRAILERS)) {
      this.#done = true;
      this.#clearTimer();
      return "stop";
    }
    return stream.write(envelope(toBinary(this.#spec.method.output, r.value))) ? "sent" : "full";
  }

  /** Resolves on the stream's next 'drain', or once it is gone. */
  #drained(): Promise<void> {
    if (this.#done) return Promise.resolve();
    if (!this.#drainListening) {
      this.#drainListening = true;
      this.#stream.on("drain", onDrain);
    }
    return new Promise((resolve) => (this.#wake = resolve));
  }

  /** Ends the call with the status of `err`: in the trailers, or trailers-only before any message. */
  #fail(err: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearTimer();
    const stream = this.#stream;
    if (stream.destroyed) return;
    if (stream.headersSent) {
      this.trailers = errorTrailers(err);
      stream.on("wantTrailers", onWantTrailers);
      stream.end();
      return;
    }
    if (!respondSafely(stream, errorTrailers(err, { ...RESPONSE_HEADERS }), TRAILERS_ONLY)) return;
    // Still sending its request (an oversized or malformed body): tell the client to stop.
    // The 'data' listener stays, dropping whatever still comes, so Node releases the stream.
    if (!this.#ended) stream.close(NGHTTP2_NO_ERROR);
  }

  #clearTimer(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}

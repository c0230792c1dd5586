/**
 * A lean path for unary Connect calls (POST with `application/json` or `application/proto`,
 * uncompressed), over HTTP/1.1 and HTTP/2: the body is read once, decoded and handed to the
 * same interceptors and implementation connect-node would call, and the answer is written in
 * one piece. It skips connect-node's universal request and response plumbing (async
 * iterables, abort controllers and header copies per call), which costs more than the call.
 * Everything else (GET, compression, streaming, other content types, malformed protocol
 * headers) goes on to connect-node unchanged, and so do the wire formats: success and error
 * bodies, status codes and headers are connect-es's own.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type MethodImplSpec } from "@connectrpc/connect";
import { createMethodSerializationLookup, type MethodSerializationLookup } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { withErrorInfo } from "../errors.js";
import { decodeRequestMessage } from "./decode-message.js";
import type { HttpRequest, HttpResponse, RequestListener } from "./http-routes.js";
import { requestHeadersFrom } from "./request-headers.js";
import { LazyAbort, type MethodTable, type RpcInvoker } from "./rpc-invoker.js";

/** Options of {@link createConnectUnaryListener}. */
export interface ConnectUnaryOptions {
  methods: MethodTable;
  invoker: RpcInvoker;
  /** Largest request body, in bytes; larger ones get RESOURCE_EXHAUSTED. */
  readMaxBytes: number;
  contextValues(req: HttpRequest): ContextValues;
}

const JSON_TYPE = /^application\/json(?:;\s*charset=utf-?8)?$/i;
const PROTO_TYPE = /^application\/proto$/i;

/** Serves lean unary Connect calls; passes every other request to `next`. */
export function createConnectUnaryListener(opts: ConnectUnaryOptions, next: RequestListener): RequestListener {
  const { methods, invoker, readMaxBytes } = opts;
  const serializers = new Map<MethodImplSpec, MethodSerializationLookup<DescMessage, DescMessage>>();
  const serialization = (spec: MethodImplSpec) => {
    let s = serializers.get(spec);
    if (!s) serializers.set(spec, (s = createMethodSerializationLookup(spec.method, undefined, undefined, { readMaxBytes, writeMaxBytes: 0xffffffff })));
    return s;
  };

  return (req, res) => {
    if (req.method !== "POST") return next(req, res);
    const url = req.url ?? "";
    const spec = methods.get(url);
    if (!spec || spec.kind !== "unary") return next(req, res);
    const h = req.headers;
    const type = h["content-type"];
    const binary = type !== undefined && PROTO_TYPE.test(type);
    if (!binary && (type === undefined || !JSON_TYPE.test(type))) return next(req, res);
    const encoding = h["content-encoding"];
    if (encoding !== undefined && encoding !== "identity") return next(req, res);
    const version = h["connect-protocol-version"];
    if (version !== undefined && version !== "1") return next(req, res);
    const timeoutHeader = h["connect-timeout-ms"];
    let timeoutMs: number | undefined;
    if (timeoutHeader !== undefined) {
      if (typeof timeoutHeader !== "string" || !/^\d{1,10}$/.test(timeoutHeader)) return next(req, res);
      timeoutMs = Number(timeoutHeader);
    }
    void serve(req, res, spec, binary, timeoutMs);
  };

  async function serve(req: HttpRequest, res: HttpResponse, spec: MethodImplSpec, binary: boolean, timeoutMs: number | undefined): Promise<void> {
    const cancel = new LazyAbort();
    const onClose = () => {
      if (!res.writableFinished) cancel.abort();
    };
    res.once("close", onClose);
    req.on("error", () => undefined);
    let status = 200;
    let body: Uint8Array;
    // Names as Headers gives them (lower case); a later value replaces an earlier one.
    const headers: Record<string, string> = {};
    try {
      const bytes = await readBody(req, readMaxBytes);
      const s = serialization(spec);
      // This path owns the decode: a body that is not the method's message is the caller's
      // bad input (INVALID_ARGUMENT), in protobuf as in JSON (connect-es's JSON parse says so).
      const input = binary ? decodeRequestMessage(spec.method.input, bytes) : s.getI(false).parse(bytes);
      const header = requestHeadersFrom(req.headers).asHeaders();
      const result = await invoker.unary(spec, input, {
        protocolName: "connect",
        url: `http://${req.headers.host ?? req.headers[":authority"] ?? "localhost"}${req.url}`,
        header,
        cancel,
        contextValues: opts.contextValues(req),
        timeoutMs,
      });
      result.header.forEach((v, k) => (headers[k] = v));
      result.trailer.forEach((v, k) => (headers[`trailer-${k}`] = v));
      body = s.getO(binary).serialize(result.message);
      headers["content-type"] = binary ? "application/proto" : "application/json";
    } catch (err) {
      // Errors raised before the interceptors (decoding, size limit) get their ErrorInfo here.
      const error = withErrorInfo(err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err));
      status = codeToHttpStatus(error.code);
      error.metadata.forEach((v, k) => (headers[k] = v));
      headers["content-type"] = "application/json";
      body = errorToJsonBytes(error, {});
    }
    res.off("close", onClose);
    if (res.destroyed || res.writableEnded) return;
    headers["content-length"] = String(body.byteLength);
    res.writeHead(status, headers);
    res.end(body);
  }
}

/** The whole request body; RESOURCE_EXHAUSTED past `max` bytes, as connect-es answers. */
function readBody(req: HttpRequest, max: number): Promise<Uint8Array> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) {
    return Promise.reject(new ConnectError(`message size ${declared} is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted));
  }
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > max) {
        cleanup();
        reject(new ConnectError(`message size is larger than configured readMaxBytes ${max}`, Code.ResourceExhausted));
        return;
      }
      parts.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    };
    const onAbort = () => {
      cleanup();
      reject(new ConnectError("the client closed the request", Code.Canceled));
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("aborted", onAbort);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("aborted", onAbort);
  });
}

import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { ERROR_DOMAIN, reasonForCode } from "../errors.js";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";

/**
 * Two fixes to errors connect-es (2.1) answers before any interceptor or handler runs, in
 * each protocol's encoding, leaving every other response untouched and unbuffered:
 *
 * - a request body that does not decode as protobuf is reported as INTERNAL ("parse binary:
 *   …"); for a server that is bad input (INVALID_ARGUMENT), as malformed JSON already is;
 * - such errors (bad envelopes, bodies over the size limit, undecodable messages) carry no
 *   details; capvend promises a google.rpc.ErrorInfo on every refusal, so one chosen by the
 *   code (src/errors.ts `reasonForCode`) is added where an error has no details at all.
 */
export function reportUndecodableRequestsAsInvalid(router: ConnectRouter): void {
  router.handlers.forEach((handler, i) => {
    const wrapped = ((req) => handler(req).then(rewrite)) as UniversalHandler;
    router.handlers[i] = Object.assign(wrapped, handler);
  });
}

const PARSE_FAILURE = "parse binary: ";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const DETAILS_HEADER = "grpc-status-details-bin";

/** The ErrorInfo an error of `code` gets when it has none, as google.protobuf.Any. */
function errorInfoAny(code: Code) {
  const reason = reasonForCode(code);
  return reason ? anyPack(ErrorInfoSchema, create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN })) : undefined;
}

/** grpc-status-details-bin for a status without details, or undefined when none applies. */
function statusDetailsBin(code: Code, message: string): string | undefined {
  const any = errorInfoAny(code);
  return any && Buffer.from(toBinary(StatusSchema, create(StatusSchema, { code, message, details: [any] }))).toString("base64");
}

/** Connect's JSON error with an ErrorInfo detail added when it has no details. */
function withConnectDetails(error: { code?: unknown; details?: unknown }): Record<string, unknown> {
  if (error.details !== undefined || typeof error.code !== "string") return error;
  const code = codeFromString(error.code);
  const any = code === undefined ? undefined : errorInfoAny(code);
  if (!any) return error;
  return { ...error, details: [{ type: ErrorInfoSchema.typeName, value: Buffer.from(any.value).toString("base64").replace(/=+$/, "") }] };
}

async function rewrite(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  // gRPC: the status is in the trailers (or, trailers-only, in the headers).
  for (const h of [res.header, res.trailer]) {
    const status = h?.get("grpc-status");
    if (!h || status === null || status === undefined || status === "0") continue;
    const message = decodeURIComponent(h.get("grpc-message") ?? "");
    if (status === "13" && message.startsWith(PARSE_FAILURE)) {
      h.set("grpc-status", "3");
      h.delete(DETAILS_HEADER); // an INTERNAL ErrorInfo, if the error passed the interceptors
    }
    if (!h.has(DETAILS_HEADER)) {
      const bin = statusDetailsBin(Number(h.get("grpc-status")) as Code, message);
      if (bin) h.set(DETAILS_HEADER, bin);
    }
  }
  if (!res.body) return res;
  const type = res.header?.get("content-type") ?? "";
  // Connect unary: an error is a small JSON body with a non-200 status.
  if (res.status !== 200 && type.startsWith("application/json")) {
    const bytes = await collect(res.body);
    const parsed = safeJson(bytes);
    if (!parsed || typeof parsed.code !== "string") return { ...res, body: once(bytes) };
    let status = res.status;
    let error: Record<string, unknown> = parsed;
    if (parsed.code === "internal" && typeof parsed.message === "string" && parsed.message.startsWith(PARSE_FAILURE)) {
      error = { ...parsed, code: "invalid_argument", details: undefined };
      status = 400;
    }
    error = withConnectDetails(error);
    if (error === parsed) return { ...res, body: once(bytes) };
    const out = encoder.encode(JSON.stringify(error));
    res.header?.set("content-length", String(out.byteLength));
    return { ...res, status, body: once(out) };
  }
  // Connect streaming and gRPC-Web carry the error in the first frame when nothing else was sent.
  if (type.startsWith("application/connect+") || type.startsWith("application/grpc-web")) {
    return { ...res, body: rewriteFirstFrame(res.body) };
  }
  return res;
}

async function* rewriteFirstFrame(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let first = true;
  for await (const chunk of body) {
    if (first) {
      first = false;
      yield rewriteFrame(chunk);
      continue;
    }
    yield chunk;
  }
}

/** Rewrites an end-of-stream frame (Connect 0x02, gRPC-Web trailers 0x80) that holds an error. */
function rewriteFrame(chunk: Uint8Array): Uint8Array {
  if (chunk.byteLength < 5 || (chunk[0]! & 0x82) === 0) return chunk;
  const len = new DataView(chunk.buffer, chunk.byteOffset).getUint32(1);
  if (chunk.byteLength !== 5 + len) return chunk;
  const text = decoder.decode(chunk.subarray(5));
  let replaced: string | undefined;
  if (chunk[0]! & 0x80) {
    const status = /grpc-status: ?(\d+)\r\n/.exec(text)?.[1];
    if (status === undefined || status === "0") return chunk;
    const message = decodeURIComponent(/grpc-message: ?(.*)\r\n/.exec(text)?.[1] ?? "");
    let code = Number(status) as Code;
    replaced = text;
    if (status === "13" && message.startsWith(PARSE_FAILURE)) {
      replaced = replaced.replace(/grpc-status: ?13/, "grpc-status: 3").replace(/grpc-status-details-bin: ?\S*\r\n/i, "");
      code = Code.InvalidArgument;
    }
    const bin = /grpc-status-details-bin:/i.test(replaced) ? undefined : statusDetailsBin(code, message);
    if (bin) replaced += `${DETAILS_HEADER}: ${bin}\r\n`;
    if (replaced === text) return chunk;
  } else {
    const parsed = safeJson(chunk.subarray(5)) as { error?: { code?: string; message?: string; details?: unknown } } | undefined;
    if (!parsed?.error) return chunk;
    let error: Record<string, unknown> = parsed.error;
    if (parsed.error.code === "internal" && parsed.error.message?.startsWith(PARSE_FAILURE)) error = { ...error, code: "invalid_argument", details: undefined };
    error = withConnectDetails(error);
    if (error === parsed.error) return chunk;
    replaced = JSON.stringify({ ...parsed, error });
  }
  const payload = encoder.encode(replaced);
  const out = new Uint8Array(5 + payload.byteLength);
  out[0] = chunk[0]!;
  new DataView(out.buffer).setUint32(1, payload.byteLength);
  out.set(payload, 5);
  return out;
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of body) parts.push(p);
  return Buffer.concat(parts);
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

function safeJson(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(decoder.decode(bytes));
    return v && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

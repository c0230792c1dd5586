import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";

/**
 * connect-es (2.1) reports a request body that does not decode as protobuf as INTERNAL
 * ("parse binary: …"), and does so before any interceptor or handler runs. For a server that
 * is bad input (INVALID_ARGUMENT), as malformed JSON already is. This wraps every handler
 * of the router and rewrites exactly that error, in each protocol's encoding, leaving every
 * other response untouched and unbuffered.
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

async function rewrite(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  // gRPC: the status is in the trailers (or, trailers-only, in the headers).
  for (const h of [res.header, res.trailer]) {
    if (h?.get("grpc-status") === "13" && decodeURIComponent(h.get("grpc-message") ?? "").startsWith(PARSE_FAILURE)) {
      h.set("grpc-status", "3");
    }
  }
  if (!res.body) return res;
  const type = res.header?.get("content-type") ?? "";
  // Connect unary: an error is a small JSON body with a 500.
  if (res.status === 500 && type.startsWith("application/json")) {
    const bytes = await collect(res.body);
    const parsed = safeJson(bytes);
    if (parsed?.code === "internal" && typeof parsed.message === "string" && parsed.message.startsWith(PARSE_FAILURE)) {
      const out = encoder.encode(JSON.stringify({ ...parsed, code: "invalid_argument" }));
      res.header?.set("content-length", String(out.byteLength));
      return { ...res, status: 400, body: once(out) };
    }
    return { ...res, body: once(bytes) };
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

/** Rewrites an end-of-stream frame (Connect 0x02, gRPC-Web trailers 0x80) that holds the parse failure. */
function rewriteFrame(chunk: Uint8Array): Uint8Array {
  if (chunk.byteLength < 5 || (chunk[0]! & 0x82) === 0) return chunk;
  const len = new DataView(chunk.buffer, chunk.byteOffset).getUint32(1);
  if (chunk.byteLength !== 5 + len) return chunk;
  const text = decoder.decode(chunk.subarray(5));
  let replaced: string | undefined;
  if (chunk[0]! & 0x80) {
    if (/grpc-status: ?13\r\n/.test(text) && decodeURIComponent(/grpc-message: ?(.*)\r\n/.exec(text)?.[1] ?? "").startsWith(PARSE_FAILURE)) {
      replaced = text.replace(/grpc-status: ?13/, "grpc-status: 3");
    }
  } else {
    const parsed = safeJson(chunk.subarray(5)) as { error?: { code?: string; message?: string } } | undefined;
    if (parsed?.error?.code === "internal" && parsed.error.message?.startsWith(PARSE_FAILURE)) {
      replaced = JSON.stringify({ ...parsed, error: { ...parsed.error, code: "invalid_argument" } });
    }
  }
  if (replaced === undefined) return chunk;
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

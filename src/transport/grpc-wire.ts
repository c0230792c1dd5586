/**
 * The pieces of the gRPC wire format (PROTOCOL-HTTP2.md) that the gRPC front writes itself:
 * message envelopes, the status trailers of an error, `grpc-message` percent-encoding and the
 * `grpc-timeout` header. Pure functions, no I/O.
 */
import type { OutgoingHttpHeaders } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { toWireError } from "../errors.js";

/** The content type of every gRPC response (the protobuf codec). */
export const GRPC_RESPONSE_CONTENT_TYPE = "application/grpc+proto";

/** Request encodings the front decompresses, as advertised in `grpc-accept-encoding`. */
export const GRPC_ACCEPT_ENCODING = "identity,deflate,gzip";

/** Bytes before each message: one flags byte (bit 0: compressed), a big-endian uint32 length. */
export const ENVELOPE_HEADER_BYTES = 5;

/** A message in its envelope, uncompressed, in one buffer (one DATA write). */
export function envelope(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + message.byteLength);
  out[0] = 0;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, ENVELOPE_HEADER_BYTES);
  return out;
}

/** Largest delay Node's timers take, in ms; longer ones would fire at once. */
export const MAX_TIMER_MS = 0x7fffffff;

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;

/**
 * The call's timeout from a `grpc-timeout` value ("TimeoutValue TimeoutUnit": up to 8
 * digits, then H, M, S, m, u or n), in ms; undefined without the header. A malformed value
 * is the caller's bad input: INVALID_ARGUMENT, as connect-es answers it.
 */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = typeof value === "string" ? TIMEOUT.exec(value) : null;
  if (!m) throw new ConnectError(`protocol error: invalid grpc timeout value: ${String(value).slice(0, 32)}`, Code.InvalidArgument);
  return Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]!;
}

/**
 * `grpc-message` percent-encoded as the gRPC spec asks: every byte of the UTF-8 text outside
 * 0x20–0x7E, and "%" itself, becomes %XX; the rest is sent as it is.
 */
export function encodeGrpcMessage(text: string): string {
  let plain = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return text;
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte < 16 ? "0" : ""}${byte.toString(16).toUpperCase()}` : String.fromCharCode(byte);
  }
  return out;
}

/**
 * The status of a failed call as HTTP/2 trailer fields: `grpc-status`, `grpc-message`, the
 * error's metadata, and `grpc-status-details-bin` (a base64 google.rpc.Status with the
 * error's details, ErrorInfo among them) exactly as connect-node encodes it. Errors raised
 * before the interceptors (decoding, size limit, deadline) get their ErrorInfo here.
 */
export function errorTrailers(err: unknown, into: OutgoingHttpHeaders = {}): OutgoingHttpHeaders {
  const e = toWireError(err);
  setTrailerStatus(headerSink(into), e);
  into["grpc-message"] = encodeGrpcMessage(e.rawMessage);
  return into;
}

/** `target` where setTrailerStatus expects a Headers: it only appends and sets. */
function headerSink(target: OutgoingHttpHeaders): Headers {
  return {
    // connect-es names the status fields "Grpc-Status"…; HTTP/2 wants lower case.
    set(k: string, v: string) {
      target[k.toLowerCase()] = v;
    },
    append(k: string, v: string) {
      const key = k.toLowerCase();
      const had = target[key];
      target[key] = had === undefined ? v : `${String(had)}, ${v}`;
    },
  } as unknown as Headers;
}

/** Adds each field of `h` to `into` (`-bin` values stay base64, as they travel). */
export function copyFields(h: Headers, into: OutgoingHttpHeaders): OutgoingHttpHeaders {
  h.forEach((value, key) => (into[key] = value));
  return into;
}

/** True when `h` has no field (most calls set no response header or trailer). */
export function isEmpty(h: Headers): boolean {
  for (const _ of h.keys()) return false;
  return true;
}

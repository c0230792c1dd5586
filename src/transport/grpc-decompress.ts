/**
 * Request messages compressed by the client (`grpc-encoding` gzip or deflate, with the
 * message's compressed flag set), decompressed without ever holding more than the message
 * limit. The front never compresses its responses (as grpc-js did not), so clients get
 * identity whatever they accept.
 */
import * as zlib from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import { GRPC_ACCEPT_ENCODING } from "./grpc-wire.js";

/**
 * The message from the bytes of a compressed envelope. `encoding` is the request's
 * `grpc-encoding`. Fails with INTERNAL for a compressed message without an encoding, or
 * bytes that are not in that encoding (as gRPC implementations answer both), UNIMPLEMENTED for
 * an encoding not supported here, RESOURCE_EXHAUSTED when the message would exceed
 * `readMaxBytes` once decompressed.
 */
export function decompress(bytes: Buffer, encoding: string | string[] | undefined, readMaxBytes: number): Promise<Buffer> {
  const name = typeof encoding === "string" ? encoding.trim().toLowerCase() : undefined;
  if (name === undefined || name === "" || name === "identity") {
    return Promise.reject(new ConnectError("protocol error: received a compressed message, but grpc-encoding names no compression", Code.Internal));
  }
  const inflate = name === "gzip" ? zlib.gunzip : name === "deflate" ? zlib.inflate : undefined;
  if (!inflate) {
    // Every response, this one included, advertises them in grpc-accept-encoding.
    return Promise.reject(new ConnectError(`grpc-encoding "${name.slice(0, 32)}" is not supported: supported encodings are ${GRPC_ACCEPT_ENCODING}`, Code.Unimplemented));
  }
  return new Promise((resolve, reject) => {
    inflate(bytes, { maxOutputLength: Math.max(1, readMaxBytes) }, (err, out) => {
      if (!err) resolve(out);
      else if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        reject(new ConnectError(`message is larger than configured readMaxBytes ${readMaxBytes} after decompression`, Code.ResourceExhausted));
      } else reject(new ConnectError(`protocol error: failed to decompress a ${name} message`, Code.Internal));
    });
  });
}

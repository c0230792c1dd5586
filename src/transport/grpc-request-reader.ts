/**
 * Reads the one request message of a unary or server-streaming gRPC call from the DATA
 * chunks of its stream, straight from the received buffers: a message that arrives in one
 * chunk (the usual case) is a view of it, never copied. The size limit is checked on the
 * envelope's length prefix, before any of the message is kept, so an oversized request costs
 * no more memory than its first chunk.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ENVELOPE_HEADER_BYTES } from "./grpc-wire.js";

/** Set in an envelope's flags byte when the message is compressed (`grpc-encoding`). */
export const COMPRESSED_FLAG = 0x01;

const NO_PARTS: Buffer[] = [];

/**
 * The reading state of one call. A class to extend (the call object is its reader) rather
 * than an object of its own: one allocation per call.
 */
export class GrpcRequestReader {
  /** Largest message accepted, in bytes. */
  protected readonly readMaxBytes: number;
  /** "unary" or "server streaming", for the error messages. */
  protected readonly kindName: string;
  /** Bytes of the current envelope header seen (0-5) while its header is incomplete. */
  #headerSeen = 0;
  #header: Buffer | undefined;
  /** Message bytes still to come; -1 while reading an envelope header. */
  #need = -1;
  #parts: Buffer[] = NO_PARTS;
  #messages = 0;
  /** The flags byte of the request message. */
  protected messageFlags = 0;
  /** The request message, once complete. */
  protected messageBytes: Buffer | undefined;

  constructor(readMaxBytes: number, kindName: string) {
    this.readMaxBytes = readMaxBytes;
    this.kindName = kindName;
  }

  /** Takes one DATA chunk; returns the error that ends the call, if this chunk breaks the rules. */
  protected readChunk(chunk: Buffer): ConnectError | undefined {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.#need < 0) {
        let flags: number;
        let length: number;
        if (this.#headerSeen === 0 && n - i >= ENVELOPE_HEADER_BYTES) {
          flags = chunk[i]!;
          length = chunk.readUInt32BE(i + 1);
          i += ENVELOPE_HEADER_BYTES;
        } else {
          const header = (this.#header ??= Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES));
          while (i < n && this.#headerSeen < ENVELOPE_HEADER_BYTES) header[this.#headerSeen++] = chunk[i++]!;
          if (this.#headerSeen < ENVELOPE_HEADER_BYTES) return undefined;
          this.#headerSeen = 0;
          flags = header[0]!;
          length = header.readUInt32BE(1);
        }
        if (this.#messages > 0) {
          return new ConnectError(`protocol error: received extra input message for ${this.kindName} method`, Code.Unimplemented);
        }
        if (length > this.readMaxBytes) {
          return new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.readMaxBytes}`, Code.ResourceExhausted);
        }
        this.#messages++;
        this.messageFlags = flags;
        if (length === 0) {
          this.messageBytes = Buffer.alloc(0);
          continue;
        }
        this.#need = length;
      }
      const take = Math.min(this.#need, n - i);
      if (take === this.#need && this.#parts.length === 0) {
        this.messageBytes = chunk.subarray(i, i + take);
      } else {
        if (this.#parts === NO_PARTS) this.#parts = [];
        this.#parts.push(chunk.subarray(i, i + take));
        if (take === this.#need) {
          this.messageBytes = Buffer.concat(this.#parts);
          this.#parts = NO_PARTS;
        }
      }
      this.#need -= take;
      i += take;
      if (this.#need === 0) this.#need = -1;
    }
    return undefined;
  }

  /** At the end of the request body: the error, if it did not hold exactly one whole message. */
  protected readEnd(): ConnectError | undefined {
    if (this.#need >= 0 || this.#headerSeen > 0) return new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    if (this.#messages === 0) return new ConnectError(`protocol error: missing input message for ${this.kindName} method`, Code.Unimplemented);
    return undefined;
  }
}

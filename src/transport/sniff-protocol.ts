import type { Socket } from "node:net";

/** Which server a cleartext connection belongs to. */
export type CleartextProtocol = "h2c" | "http1";

/** The client connection preface of HTTP/2 (RFC 9113 §3.4), sent first by h2c prior-knowledge clients. */
export const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Classifies the first bytes of a cleartext connection. Returns `undefined` while the bytes
 * seen so far are a proper prefix of the HTTP/2 preface (more are needed to decide), "h2c"
 * once the whole preface is there, and "http1" as soon as a byte differs.
 */
export function classifyFirstBytes(bytes: Uint8Array): CleartextProtocol | undefined {
  const n = Math.min(bytes.length, HTTP2_PREFACE.length);
  for (let i = 0; i < n; i++) {
    if (bytes[i] !== HTTP2_PREFACE[i]) return "http1";
  }
  return bytes.length >= HTTP2_PREFACE.length ? "h2c" : undefined;
}

/**
 * Reads from `socket` until its protocol is known, then puts every byte read back
 * (`unshift`) so the chosen server parses the connection from its first byte.
 *
 * Resolves `undefined`, with the socket destroyed, when the peer closes, errors or is still
 * undecided `timeoutMs` after the call (an absolute deadline: a peer trickling one byte at a
 * time does not extend it). Never rejects.
 */
export function sniffProtocol(socket: Socket, timeoutMs: number): Promise<CleartextProtocol | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;

    const settle = (protocol: CleartextProtocol | undefined) => {
      if (settled) return;
      settled = true;
      socket.off("readable", onReadable);
      socket.off("end", onGone);
      socket.off("close", onGone);
      clearTimeout(timer);
      if (protocol === undefined) {
        socket.destroy();
      } else {
        socket.unshift(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      }
      resolve(protocol);
    };

    // 'readable' with read() keeps the socket out of flowing mode, so nothing is lost
    // between here and the server that takes the socket over.
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) chunks.push(chunk);
      if (chunks.length === 0) return;
      const protocol = classifyFirstBytes(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      if (protocol !== undefined) settle(protocol);
    };
    const onGone = () => settle(undefined);
    const onTimeout = () => settle(undefined);

    const timer = setTimeout(onTimeout, timeoutMs);
    socket.on("readable", onReadable);
    socket.once("end", onGone);
    socket.once("close", onGone);
  });
}

/**
 * Reads a segment as raw lines. Works on bytes, not strings, because the chain hashes the
 * exact bytes of each line, and reports whether the last line ended with a newline, which
 * is how a torn write shows.
 */
import { open } from "node:fs/promises";

/** One line of a file, without its newline. */
export interface RawLine {
  bytes: Buffer;
  /** 1-based line number within the file. */
  line: number;
  /** Byte offset of the line's first byte. */
  offset: number;
  /** False only for a final line with no newline after it. */
  terminated: boolean;
}

const CHUNK_BYTES = 256 * 1024;

/** Yields every line of `path` in order, including an unterminated final one. */
export async function* readRawLines(path: string): AsyncGenerator<RawLine> {
  const fh = await open(path, "r");
  try {
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let carry: Buffer = Buffer.alloc(0);
    let carryOffset = 0;
    let position = 0;
    let lineNo = 0;
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, CHUNK_BYTES, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
      let start = 0;
      for (let nl = data.indexOf(0x0a, start); nl !== -1; nl = data.indexOf(0x0a, start)) {
        lineNo++;
        yield { bytes: Buffer.from(data.subarray(start, nl)), line: lineNo, offset: carryOffset + start, terminated: true };
        start = nl + 1;
      }
      // Copy: `chunk` is reused by the next read.
      carry = Buffer.from(data.subarray(start));
      carryOffset += start;
    }
    if (carry.length > 0) {
      lineNo++;
      yield { bytes: carry, line: lineNo, offset: carryOffset, terminated: false };
    }
  } finally {
    await fh.close();
  }
}

/**
 * Line and column lookup for a text file, so load errors can say `file:line:column`.
 *
 * Cedar reports error locations as UTF-8 byte offsets (it is Rust underneath), while our
 * own scanners work on JavaScript string indexes; both are converted here. Lines and
 * columns are 1-based and columns count Unicode code points, as editors do.
 */
export interface LineColumn {
  line: number;
  column: number;
}

export class SourceText {
  readonly text: string;
  /** String index of the first character of each line. */
  readonly #lineStarts: number[];

  constructor(text: string) {
    this.text = text;
    this.#lineStarts = [0];
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) === 10) this.#lineStarts.push(i + 1);
    }
  }

  /** Position of the character at string index `index` (clamped to the text). */
  positionOfIndex(index: number): LineColumn {
    const at = Math.max(0, Math.min(index, this.text.length));
    let lo = 0;
    let hi = this.#lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#lineStarts[mid]! <= at) lo = mid;
      else hi = mid - 1;
    }
    const lineStart = this.#lineStarts[lo]!;
    return { line: lo + 1, column: codePointCount(this.text, lineStart, at) + 1 };
  }

  /** Position of UTF-8 byte offset `byteOffset`, as Cedar reports it. */
  positionOfByteOffset(byteOffset: number): LineColumn {
    return this.positionOfIndex(this.indexOfByteOffset(byteOffset));
  }

  /** String index of the character that starts at (or contains) UTF-8 byte `byteOffset`. */
  indexOfByteOffset(byteOffset: number): number {
    let bytes = 0;
    let i = 0;
    while (i < this.text.length && bytes < byteOffset) {
      const cp = this.text.codePointAt(i)!;
      const width = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      if (bytes + width > byteOffset) break;
      bytes += width;
      i += cp >= 0x10000 ? 2 : 1;
    }
    return i;
  }
}

function codePointCount(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by its low half is one code point.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < to) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

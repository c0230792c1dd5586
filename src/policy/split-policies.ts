/**
 * Splits the text of a `.cedar` file into its policies, keeping where each one starts.
 *
 * Cedar's own parser names policies `policy0`, `policy1`, … and does not tell where they
 * start, but a decision must name its policies stably (`@id`, else `file:line`), so we cut
 * the text ourselves. In Cedar a `;` outside a string literal or a `//` comment always ends
 * a policy, so a scanner that knows those two lexical forms is enough. The caller parses
 * the whole file with Cedar first; this runs only on text Cedar has accepted.
 */
export interface PolicySlice {
  /** The policy's text, from its first annotation or effect keyword through its `;`. */
  text: string;
  /** String index of the slice's first character in the file. */
  start: number;
}

export function splitPolicies(source: string): PolicySlice[] {
  const slices: PolicySlice[] = [];
  let start = -1;
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i]!;
    if (c === "/" && source[i + 1] === "/") {
      const eol = source.indexOf("\n", i);
      i = eol === -1 ? n : eol + 1;
      continue;
    }
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
      continue;
    }
    if (start === -1) start = i;
    if (c === '"') {
      i = endOfString(source, i);
      continue;
    }
    if (c === ";") {
      slices.push({ text: source.slice(start, i + 1), start });
      start = -1;
    }
    i++;
  }
  return slices;
}

/** Index just past the string literal that opens at `open`. */
function endOfString(source: string, open: number): number {
  let i = open + 1;
  while (i < source.length) {
    const c = source[i];
    if (c === "\\") i += 2;
    else if (c === '"') return i + 1;
    else i++;
  }
  return i;
}

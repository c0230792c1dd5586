/**
 * Reads the head of one policy's text — its annotations and its effect — without a full
 * parse.
 *
 * cedar-wasm's `policyToJson` would tell us the same, but costs about a millisecond per
 * policy, which made reloading a few hundred policies take a noticeable fraction of a
 * second. The head's grammar is small (`{ '@' IDENT [ '(' STR ')' ] } ('permit' | 'forbid')`)
 * and the text has already been accepted by Cedar, so reading it directly is safe. The one
 * thing left to Cedar is unescaping an annotation value that holds a backslash.
 */
export interface PolicyHead {
  effect: "permit" | "forbid";
  /** Annotation values by name, with `undefined` for an escaped value the caller must decode. */
  annotations: Map<string, string | undefined>;
}

export function readPolicyHead(text: string): PolicyHead | undefined {
  const annotations = new Map<string, string | undefined>();
  let i = skipTrivia(text, 0);
  while (text[i] === "@") {
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1, i + 256));
    if (!name) return undefined;
    i = skipTrivia(text, i + 1 + name[0].length);
    let value: string | undefined = "";
    if (text[i] === "(") {
      i = skipTrivia(text, i + 1);
      if (text[i] !== '"') return undefined;
      const close = closingQuote(text, i);
      if (close < 0) return undefined;
      const raw = text.slice(i + 1, close);
      value = raw.includes("\\") ? undefined : raw;
      i = skipTrivia(text, close + 1);
      if (text[i] !== ")") return undefined;
      i = skipTrivia(text, i + 1);
    }
    annotations.set(name[0], value);
  }
  const effect = /^(permit|forbid)\b/.exec(text.slice(i, i + 7));
  if (!effect) return undefined;
  return { effect: effect[1] as "permit" | "forbid", annotations };
}

function skipTrivia(text: string, from: number): number {
  let i = from;
  for (;;) {
    const c = text[i];
    if (c === " " || c === "\t" || c === "\n" || c === "\r") i++;
    else if (c === "/" && text[i + 1] === "/") {
      const eol = text.indexOf("\n", i);
      i = eol < 0 ? text.length : eol + 1;
    } else return i;
  }
}

/** Index of the `"` that closes the string opening at `open`, or -1. */
function closingQuote(text: string, open: number): number {
  for (let i = open + 1; i < text.length; i++) {
    const c = text[i];
    if (c === "\\") i++;
    else if (c === '"') return i;
  }
  return -1;
}

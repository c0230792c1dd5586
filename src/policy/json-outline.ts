/**
 * Where things are in a JSON text: the first syntax error, and where each element of a
 * top-level array starts.
 *
 * `JSON.parse` on Node 20 names a position for some errors and none for others ("Unexpected
 * token '}', ... is not valid JSON"), and never says where the n-th element is. We need
 * both to point at the line of a bad entity in `entities.json`, so this small scanner
 * follows RFC 8259's grammar without building values. Values still come from `JSON.parse`.
 */
export interface JsonOutline {
  /** String index and description of the first syntax error, if any. */
  error?: { index: number; message: string };
  /** When the text is an array: string index where each element starts. */
  elementStarts: number[];
}

export function outlineJson(text: string): JsonOutline {
  const scanner = new Scanner(text);
  try {
    scanner.document();
    return { elementStarts: scanner.elementStarts };
  } catch (e) {
    if (e instanceof JsonSyntax) return { error: { index: e.index, message: e.message }, elementStarts: scanner.elementStarts };
    throw e;
  }
}

class JsonSyntax extends Error {
  constructor(
    readonly index: number,
    message: string,
  ) {
    super(message);
  }
}

// Bounded so a hostile file cannot overflow the stack; entity JSON is a few levels deep.
const MAX_DEPTH = 512;

class Scanner {
  i = 0;
  readonly elementStarts: number[] = [];

  constructor(readonly s: string) {}

  document(): void {
    this.ws();
    if (this.s[this.i] === "[") this.array(0, true);
    else this.value(0);
    this.ws();
    if (this.i < this.s.length) this.fail("unexpected data after the JSON value");
  }

  fail(message: string): never {
    throw new JsonSyntax(this.i, message);
  }

  ws(): void {
    for (;;) {
      const c = this.s[this.i];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") this.i++;
      else return;
    }
  }

  value(depth: number): void {
    if (depth > MAX_DEPTH) this.fail("JSON nested too deeply");
    const c = this.s[this.i];
    if (c === "{") this.object(depth);
    else if (c === "[") this.array(depth, false);
    else if (c === '"') this.string();
    else if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) this.number();
    else if (this.s.startsWith("true", this.i)) this.i += 4;
    else if (this.s.startsWith("false", this.i)) this.i += 5;
    else if (this.s.startsWith("null", this.i)) this.i += 4;
    else if (c === undefined) this.fail("unexpected end of JSON");
    else this.fail(`unexpected character ${JSON.stringify(c)}`);
  }

  object(depth: number): void {
    this.i++;
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("expected a double-quoted property name");
      this.string();
      this.ws();
      if (this.s[this.i] !== ":") this.fail("expected ':' after a property name");
      this.i++;
      this.ws();
      this.value(depth + 1);
      this.ws();
      const c = this.s[this.i];
      if (c === ",") this.i++;
      else if (c === "}") {
        this.i++;
        return;
      } else this.fail("expected ',' or '}' after a property value");
    }
  }

  array(depth: number, topLevel: boolean): void {
    this.i++;
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return;
    }
    for (;;) {
      this.ws();
      if (topLevel) this.elementStarts.push(this.i);
      this.value(depth + 1);
      this.ws();
      const c = this.s[this.i];
      if (c === ",") this.i++;
      else if (c === "]") {
        this.i++;
        return;
      } else this.fail("expected ',' or ']' after an array element");
    }
  }

  string(): void {
    this.i++;
    for (;;) {
      const c = this.s[this.i];
      if (c === undefined) this.fail("unterminated string");
      if (c === '"') {
        this.i++;
        return;
      }
      if (c === "\\") {
        const e = this.s[this.i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(this.s.slice(this.i + 2, this.i + 6))) this.fail("bad \\u escape");
          this.i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) this.i += 2;
        else this.fail("bad escape in string");
        continue;
      }
      if (c < " ") this.fail("control character in string");
      this.i++;
    }
  }

  number(): void {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (!m) this.fail("bad number");
    this.i += m[0].length;
  }
}

import { describe, expect, it } from "vitest";

import { outlineJson } from "../../src/policy/json-outline.js";
import { readPolicyHead } from "../../src/policy/policy-head.js";
import { SourceText } from "../../src/policy/source-position.js";
import { splitPolicies } from "../../src/policy/split-policies.js";

describe("splitPolicies", () => {
  it("cuts at top-level semicolons and keeps where each policy starts", () => {
    const text = '// head; comment\n@id("a;b") permit (principal, action, resource) when { "x;\\"y" == "" };\n\n  forbid (principal, action, resource);\n// tail;';
    const slices = splitPolicies(text);
    expect(slices.map((s) => s.text)).toEqual([
      '@id("a;b") permit (principal, action, resource) when { "x;\\"y" == "" };',
      "forbid (principal, action, resource);",
    ]);
    expect(slices.map((s) => s.start)).toEqual([text.indexOf("@id"), text.indexOf("forbid")]);
  });

  it("treats // inside a string as text, not a comment", () => {
    const slices = splitPolicies('permit (principal, action, resource) when { context.url == "https://x;y" };');
    expect(slices).toHaveLength(1);
  });

  it("finds nothing in a file of comments", () => {
    expect(splitPolicies("// only\n   // comments\n")).toEqual([]);
  });
});

describe("readPolicyHead", () => {
  it("reads the effect and annotations across comments and newlines", () => {
    const head = readPolicyHead('@id( "x" ) // why\n @advice\n@owner("team")\nforbid (principal, action, resource);');
    expect(head?.effect).toBe("forbid");
    expect([...head!.annotations]).toEqual([
      ["id", "x"],
      ["advice", ""],
      ["owner", "team"],
    ]);
  });

  it("leaves escaped values to Cedar", () => {
    expect(readPolicyHead('@id("a\\"b") permit (principal, action, resource);')?.annotations.get("id")).toBeUndefined();
    expect(readPolicyHead('@id("a\\"b") permit (principal, action, resource);')?.annotations.has("id")).toBe(true);
  });

  it("does not take a word that only starts like an effect", () => {
    expect(readPolicyHead("permits (principal, action, resource);")).toBeUndefined();
  });
});

describe("SourceText", () => {
  const text = "ab\né日本x\n🤖y";
  const src = new SourceText(text);

  it("gives 1-based lines and code-point columns", () => {
    expect(src.positionOfIndex(0)).toEqual({ line: 1, column: 1 });
    expect(src.positionOfIndex(text.indexOf("x"))).toEqual({ line: 2, column: 4 });
    expect(src.positionOfIndex(text.indexOf("y"))).toEqual({ line: 3, column: 2 });
  });

  it("maps UTF-8 byte offsets to positions", () => {
    // "ab\n" is 3 bytes, "é" 2, "日本" 6: "x" starts at byte 11; "🤖" is 4 bytes.
    expect(src.positionOfByteOffset(11)).toEqual({ line: 2, column: 4 });
    expect(src.positionOfByteOffset(Buffer.byteLength(text.slice(0, text.indexOf("y"))))).toEqual({ line: 3, column: 2 });
  });
});

describe("outlineJson", () => {
  it("finds where each top-level element starts", () => {
    const text = '[\n  {"a": [1, 2]},\n  "s,]",\n  3\n]';
    const { error, elementStarts } = outlineJson(text);
    expect(error).toBeUndefined();
    expect(elementStarts).toEqual([text.indexOf("{"), text.indexOf('"s'), text.indexOf("3")]);
  });

  it("points at the first syntax error", () => {
    expect(outlineJson('[{"a": 1,}]').error?.index).toBe(9);
    expect(outlineJson("[1, 2").error?.message).toMatch(/expected ',' or ']'/);
    expect(outlineJson('["abc').error?.message).toMatch(/unterminated/);
    expect(outlineJson("[] x").error?.index).toBe(3);
  });

  it("agrees with JSON.parse on what is valid", () => {
    for (const s of ['{"a":[true,false,null,-1.5e3,"\\u00e9\\n"]}', "[]", " 7 ", '"x"', "[01]", "[1.]", '["\t"]', "{,}", "tru"]) {
      let valid = true;
      try {
        JSON.parse(s);
      } catch {
        valid = false;
      }
      expect(outlineJson(s).error === undefined, s).toBe(valid);
    }
  });
});

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { GENESIS_PREV, canonicalJson, openRecord, sealRecord, sha256Hex } from "../../src/audit/chain.js";
import type { JsonValue } from "../../src/audit/event.js";

describe("canonicalJson", () => {
  it("sorts keys at every level, integer-like keys included, and keeps array order", () => {
    expect(canonicalJson({ b: 1, a: { z: [3, 1, { y: true, x: null }], "10": "s", "2": "t" } })).toBe(
      '{"a":{"10":"s","2":"t","z":[3,1,{"x":null,"y":true}]},"b":1}',
    );
  });
  it("escapes strings like JSON.stringify", () => {
    expect(canonicalJson({ s: 'a"b\\c\n\u0001é' })).toBe(JSON.stringify({ s: 'a"b\\c\n\u0001é' }));
  });
});

describe("sealRecord / openRecord", () => {
  const body = { type: "token.issued", jti: "tok_1", time: "2026-01-01T00:00:00.000Z", replica: "r1", scopes: ["read"] } as const;

  it("hashes prev + canonical JSON of the event with seq, and writes chain fields first", () => {
    const sealed = sealRecord(GENESIS_PREV, 1, { ...body, scopes: [...body.scopes] });
    const expectedHash = createHash("sha256")
      .update(GENESIS_PREV + '{"jti":"tok_1","replica":"r1","scopes":["read"],"seq":1,"time":"2026-01-01T00:00:00.000Z","type":"token.issued"}')
      .digest("hex");
    expect(sealed.hash).toBe(expectedHash);
    expect(sealed.line).toBe(
      `{"seq":1,"prev":"${GENESIS_PREV}","hash":"${expectedHash}","jti":"tok_1","replica":"r1","scopes":["read"],"time":"2026-01-01T00:00:00.000Z","type":"token.issued"}`,
    );
    expect(sealed.lineHash).toBe(sha256Hex(sealed.line));
  });

  it("puts seq at its sorted place whichever keys come before or after it", () => {
    const bodies: { [key: string]: JsonValue }[] = [{}, { a: 1 }, { z: 1 }, { seq0: 1 }, { sep: 1, seq0: 2, sez: 3 }, { "": 1, SEQ: 2, "\u00e9": 3 }, { a: 1, z: [1, { b: 2, a: "x" }] }];
    for (const b of bodies) {
      const sealed = sealRecord(GENESIS_PREV, 7, b);
      expect(sealed.hash, JSON.stringify(b)).toBe(sha256Hex(GENESIS_PREV + canonicalJson({ ...b, seq: 7 })));
      expect(openRecord(Buffer.from(sealed.line)), JSON.stringify(b)).toMatchObject({ ok: true, record: { seq: 7, body: b } });
    }
  });

  it("opens what it sealed and rejects altered, re-ordered or malformed lines", () => {
    const { line } = sealRecord(GENESIS_PREV, 7, { ...body, scopes: ["read"] });
    const ok = openRecord(Buffer.from(line));
    expect(ok).toMatchObject({ ok: true, record: { seq: 7, prev: GENESIS_PREV, body: { jti: "tok_1" } } });

    expect(openRecord(Buffer.from(line.replace("tok_1", "tok_2")))).toMatchObject({ ok: false, fault: "hash_mismatch", seq: 7 });
    const swappedKeys = line.replace('"jti":"tok_1","replica":"r1"', '"replica":"r1","jti":"tok_1"');
    expect(openRecord(Buffer.from(swappedKeys))).toMatchObject({ ok: false, fault: "not_canonical" });
    const duplicateKey = line.replace('"type":"token.issued"}', '"type":"token.denied","type":"token.issued"}');
    expect(openRecord(Buffer.from(duplicateKey))).toMatchObject({ ok: false, fault: "not_canonical" });
    expect(openRecord(Buffer.from(line.replace('"seq":7', '"seq":"7"')))).toMatchObject({ ok: false, fault: "malformed" });
    expect(openRecord(Buffer.from("[1,2]"))).toMatchObject({ ok: false, fault: "malformed" });
  });
});

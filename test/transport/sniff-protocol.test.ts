import { describe, expect, it } from "vitest";
import { classifyFirstBytes, HTTP2_PREFACE } from "../../src/transport/sniff-protocol.js";

describe("classifyFirstBytes", () => {
  it("waits while the bytes are a proper prefix of the HTTP/2 preface", () => {
    expect(classifyFirstBytes(Buffer.alloc(0))).toBeUndefined();
    for (let n = 1; n < HTTP2_PREFACE.length; n++) {
      expect(classifyFirstBytes(HTTP2_PREFACE.subarray(0, n))).toBeUndefined();
    }
  });

  it("says h2c for the whole preface, with or without the frames that follow", () => {
    expect(classifyFirstBytes(HTTP2_PREFACE)).toBe("h2c");
    expect(classifyFirstBytes(Buffer.concat([HTTP2_PREFACE, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]))).toBe("h2c");
  });

  it("says http1 as soon as a byte differs", () => {
    expect(classifyFirstBytes(Buffer.from("GET / HTTP/1.1\r\n"))).toBe("http1");
    expect(classifyFirstBytes(Buffer.from("P"))).toBeUndefined();
    expect(classifyFirstBytes(Buffer.from("PO"))).toBe("http1");
    expect(classifyFirstBytes(Buffer.from("PRI * HTTP/1.1\r\n"))).toBe("http1");
    expect(classifyFirstBytes(Buffer.from([0x16, 0x03, 0x01]))).toBe("http1"); // a TLS ClientHello on the cleartext port
  });
});

/**
 * The same call answered the same way on every path through the transport: gRPC with
 * protobuf (served by @grpc/grpc-js), gRPC with JSON and gRPC-Web (connect-node), and unary
 * Connect over HTTP/1.1 and HTTP/2 (the lean path) — codes, messages, the
 * ErrorInfo details (grpc-status-details-bin on gRPC), audit records and the token itself.
 */
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryAuditSink, type MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { errorInfoOf } from "../../src/errors.js";
import { VendingService } from "../../src/gen/capvend/v1/vending_pb.js";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

let h: Harness;
let sink: MemoryAuditSink;

beforeAll(async () => {
  sink = createMemoryAuditSink({ timeoutMs: 1000 });
  h = await startHarness({ audit: sink });
});
afterAll(async () => {
  await h?.close();
});

const bearer = (token: string): Interceptor => (next) => (req) => {
  req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

const PATHS: Array<[string, (baseUrl: string, interceptors: Interceptor[]) => Transport]> = [
  ["gRPC, protobuf (grpc-js)", (baseUrl, interceptors) => createGrpcTransport({ baseUrl, interceptors })],
  ["gRPC, JSON (connect-node)", (baseUrl, interceptors) => createGrpcTransport({ baseUrl, interceptors, useBinaryFormat: false })],
  ["gRPC-Web over HTTP/1.1 (connect-node)", (baseUrl, interceptors) => createGrpcWebTransport({ baseUrl, interceptors, httpVersion: "1.1" })],
  ["Connect JSON over HTTP/1.1 (lean)", (baseUrl, interceptors) => createConnectTransport({ baseUrl, interceptors, httpVersion: "1.1" })],
  ["Connect protobuf over HTTP/1.1 (lean)", (baseUrl, interceptors) => createConnectTransport({ baseUrl, interceptors, httpVersion: "1.1", useBinaryFormat: true })],
  ["Connect JSON over h2c (lean)", (baseUrl, interceptors) => createConnectTransport({ baseUrl, interceptors, httpVersion: "2" })],
];

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  return p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );
}

describe("every protocol path", () => {
  it("answers a refusal with the same code, message, reason and details", async () => {
    const s = await startSalesSession(h);
    const seen = [];
    for (const [name, make] of PATHS) {
      const client = createClient(VendingService, make(h.url, [bearer(s.sessionCredential)]));
      const err = await failure(client.issueToken({ resource: "salesforce", scopes: ["delete"] }));
      const info = errorInfoOf(err);
      seen.push({ name, code: err.code, message: err.rawMessage, reason: info?.reason, domain: info?.domain, metadata: info?.metadata, details: err.details.length });
    }
    for (const s2 of seen) expect({ ...s2, name: undefined }, s2.name).toEqual({ ...seen[0], name: undefined });
    expect(seen[0]).toMatchObject({ code: Code.PermissionDenied, reason: "SCOPE_NOT_GRANTED", details: 1 });
  });

  it("answers a caller without a credential UNAUTHENTICATED on every path", async () => {
    for (const [name, make] of PATHS) {
      const err = await failure(createClient(VendingService, make(h.url, [])).issueToken({ resource: "salesforce", scopes: ["read"] }));
      expect(err.code, name).toBe(Code.Unauthenticated);
      expect(errorInfoOf(err)?.reason, name).toBe("MISSING_CREDENTIAL");
    }
  });

  it("issues a valid token with one token.issued record per call on every path", async () => {
    const s = await startSalesSession(h);
    const jwks = jose.createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`));
    for (const [name, make] of PATHS) {
      const client = createClient(VendingService, make(h.url, [bearer(s.sessionCredential)]));
      const { token } = await client.issueToken({ resource: "salesforce", scopes: ["read"] });
      const { payload } = await jose.jwtVerify(token!.accessToken, jwks, { audience: "salesforce" });
      expect(payload.sid, name).toBe(s.sessionId);
      expect(sink.find({ type: "token.issued", jti: token!.tokenId }), name).toHaveLength(1);
    }
  });

  it("answers bad input INVALID_ARGUMENT naming the field on every path", async () => {
    const s = await startSalesSession(h);
    for (const [name, make] of PATHS) {
      const err = await failure(createClient(VendingService, make(h.url, [bearer(s.sessionCredential)])).issueToken({ resource: "", scopes: ["read"] }));
      expect(err.code, name).toBe(Code.InvalidArgument);
      expect(err.rawMessage, name).toMatch(/^resource: /);
    }
  });
});

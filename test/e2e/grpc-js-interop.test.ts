/**
 * Interop: a plain @grpc/grpc-js client with the .proto files loaded at run time by
 * @grpc/proto-loader (no generated code from this repo) talks to a real capvend server.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as jose from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { errorInfoFromStatusDetails } from "../helpers/error-info.js";
import { GATEWAY_TOKEN, ORCHESTRATOR_TOKEN, startHarness, type Harness } from "../helpers/harness.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const LOADER_OPTIONS: protoLoader.Options = {
  // The contract and the third-party files it imports (buf.validate) or that the server also serves (health).
  includeDirs: [path.join(ROOT, "proto"), path.join(ROOT, "proto-vendor")],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

// proto-loader gives untyped plain objects; these describe the parts the tests read.
interface Duration {
  seconds: string;
  nanos?: number;
}
interface Timestamp {
  seconds: string;
  nanos: number;
}
interface TokenMsg {
  tokenId: string;
  accessToken: string;
  resource: string;
  scopes: string[];
  issuedAt: Timestamp | null;
  expiresAt: Timestamp | null;
}
interface WatchEvent {
  resumeToken: string;
  event?: "tokenIssued" | "tokensRevoked" | "sessionEnded" | "heartbeat" | "reconnect";
  tokenIssued?: { grantIndex: number; token: TokenMsg; replacesTokenId: string };
  sessionEnded?: { reason: string };
}
type Unary<Req, Res> = (req: Req, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;
interface VendingClient extends grpc.Client {
  StartSession: Unary<Record<string, unknown>, { sessionId: string; sessionCredential: string; expiresAt: Timestamp }>;
  IssueToken: Unary<{ resource: string; scopes: string[]; ttl?: Duration }, { token: TokenMsg }>;
  Revoke: Unary<Record<string, unknown>, { revocationId: string; revokedAt: Timestamp }>;
  EndSession: Unary<{ sessionId: string; reason?: string }, { endedAt: Timestamp }>;
  Introspect: Unary<{ token: string }, { active: boolean; scope: string; sub: string; actSub: string; jti: string; sid: string; exp: Timestamp }>;
  WatchSession(req: { grants: { resource: string; scopes: string[]; ttl?: Duration }[]; resumeToken?: string }, md: grpc.Metadata): grpc.ClientReadableStream<WatchEvent>;
}
interface HealthClient extends grpc.Client {
  Check: Unary<{ service: string }, { status: string }>;
}

type Ctor<T> = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => T;

function loadService<T>(file: string, pkgPath: string[], service: string): Ctor<T> {
  const def = protoLoader.loadSync(file, LOADER_OPTIONS);
  let node: unknown = grpc.loadPackageDefinition(def);
  for (const p of pkgPath) node = (node as Record<string, unknown>)[p];
  return (node as Record<string, Ctor<T>>)[service]!;
}

/** The ErrorInfo of a failed call, decoded from grpc-status-details-bin as any gRPC client would. */
function errorInfoOf(err: { metadata: grpc.Metadata }) {
  const [bin] = err.metadata.get("grpc-status-details-bin");
  return errorInfoFromStatusDetails(bin as Buffer | undefined);
}

const bearer = (token: string) => {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
};

function call<Req, Res>(client: grpc.Client, fn: Unary<Req, Res>, req: Req, md: grpc.Metadata): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn.call(client, req, md, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

async function rejection(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error("expected the call to fail");
}

/** Reads events until one matches, with a deadline. */
function firstEvent(stream: grpc.ClientReadableStream<WatchEvent>, match: (e: WatchEvent) => boolean, timeoutMs = 10_000): Promise<WatchEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no matching WatchSession event within ${timeoutMs} ms`));
    }, timeoutMs);
    const onData = (e: WatchEvent) => {
      if (!match(e)) return;
      cleanup();
      resolve(e);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onEnd = () => {
      cleanup();
      reject(new Error("stream ended before a matching event"));
    };
    const cleanup = () => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("error", onError);
      stream.off("end", onEnd);
    };
    stream.on("data", onData);
    stream.on("error", onError);
    stream.on("end", onEnd);
  });
}

/** Resolves with the stream's final status (grpc-js emits 'status' after end or error). */
function finalStatus(stream: grpc.ClientReadableStream<WatchEvent>, timeoutMs = 10_000): Promise<grpc.StatusObject> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("stream did not finish")), timeoutMs);
    stream.on("error", () => {});
    stream.on("status", (s: grpc.StatusObject) => {
      clearTimeout(timer);
      resolve(s);
    });
  });
}

let h: Harness;
let vending: VendingClient;
let health: HealthClient;
const streams: grpc.ClientReadableStream<WatchEvent>[] = [];

beforeAll(async () => {
  h = await startHarness();
  const address = h.url.replace(/^http:\/\//, "");
  const Vending = loadService<VendingClient>("capvend/v1/vending.proto", ["capvend", "v1"], "VendingService");
  const Health = loadService<HealthClient>("grpc/health/v1/health.proto", ["grpc", "health", "v1"], "Health");
  vending = new Vending(address, grpc.credentials.createInsecure());
  health = new Health(address, grpc.credentials.createInsecure());
});
afterEach(() => {
  for (const s of streams.splice(0)) {
    // Cancelling surfaces as an 'error' (CANCELLED) on the stream: expected here.
    s.on("error", () => {});
    s.cancel();
  }
});
afterAll(async () => {
  vending?.close();
  health?.close();
  await h?.close();
});

async function startSession(grants: { resource: string; scopes: string[]; ttl?: Duration }[], agentId = "sales-bot", userId: string | undefined = "alice") {
  const req: Record<string, unknown> = { agentId, grants, labels: { env: "interop" } };
  if (userId !== undefined) req.userId = userId;
  return call(vending, vending.StartSession, req, bearer(ORCHESTRATOR_TOKEN));
}

describe("grpc-js client against capvend", () => {
  it("host:port from the harness URL", () => {
    expect(h.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it("StartSession, then IssueToken with the session credential; the JWT carries what was asked", async () => {
    const s = await startSession([{ resource: "salesforce", scopes: ["read", "write"] }]);
    expect(s.sessionId).toMatch(/^ses_[A-Za-z0-9_-]{22}$/);
    expect(s.sessionCredential).toMatch(/^ses_[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
    expect(s.sessionCredential.startsWith(`${s.sessionId}.`)).toBe(true);
    // longs: String — 64-bit seconds arrive as decimal strings.
    expect(typeof s.expiresAt.seconds).toBe("string");
    expect(Number(s.expiresAt.seconds)).toBeGreaterThan(Date.now() / 1000);

    const { token } = await call(vending, vending.IssueToken, { resource: "salesforce", scopes: ["read"], ttl: { seconds: "600" } }, bearer(s.sessionCredential));
    expect(token.resource).toBe("salesforce");
    expect(token.scopes).toEqual(["read"]);
    expect(token.tokenId).toMatch(/^tok_/);

    // Signature and claims are checked against the JWKS in vending.test.ts; here, that what
    // this client sent (a ttl as a decimal string) arrived.
    const payload = jose.decodeJwt(token.accessToken);
    expect(payload.sid).toBe(s.sessionId);
    expect(payload.jti).toBe(token.tokenId);
    expect(payload.scope).toBe("read");
    // The issuer and the minter read the clock one after the other: a second boundary between them costs one second.
    expect(payload.exp! - payload.iat!).toBeGreaterThanOrEqual(599);
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(600);
    expect(token.expiresAt?.seconds).toBe(String(payload.exp));
    expect(token.issuedAt?.seconds).toBe(String(payload.iat));
  });

  it("Introspect (resource-server bearer) and Revoke by token_id (oneof) work from grpc-js", async () => {
    const s = await startSession([{ resource: "calendar", scopes: ["read"] }]);
    const { token } = await call(vending, vending.IssueToken, { resource: "calendar", scopes: ["read"] }, bearer(s.sessionCredential));
    const before = await call(vending, vending.Introspect, { token: token.accessToken }, bearer(GATEWAY_TOKEN));
    expect(before.active).toBe(true);
    expect(before.scope).toBe("read");
    expect(before.actSub).toBe("agent:sales-bot");
    expect(before.sid).toBe(s.sessionId);

    const rev = await call(vending, vending.Revoke, { tokenId: token.tokenId, reason: "interop" }, bearer(ORCHESTRATOR_TOKEN));
    expect(rev.revocationId).toMatch(/^rev_/);
    const after = await call(vending, vending.Introspect, { token: token.accessToken }, bearer(GATEWAY_TOKEN));
    expect(after.active).toBe(false);
  });

  it("standard gRPC health check answers SERVING for \"\" and for the vending service", async () => {
    const none = new grpc.Metadata();
    expect((await call(health, health.Check, { service: "" }, none)).status).toBe("SERVING");
    expect((await call(health, health.Check, { service: "capvend.v1.VendingService" }, none)).status).toBe("SERVING");
  });

  it("a denied scope → status 7 (PERMISSION_DENIED) with the scope in the message and ErrorInfo SCOPE_DENIED naming it", async () => {
    // The report bot's warehouse tokens are capped at 900 s by policy: a one-hour one is denied.
    const s = await startSession([{ resource: "warehouse", scopes: ["read"] }], "report-bot");
    const err = await rejection(call(vending, vending.IssueToken, { resource: "warehouse", scopes: ["read"], ttl: { seconds: "3600" } }, bearer(s.sessionCredential)));
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.code).toBe(7);
    expect(err.details).toContain('scope "read"');
    expect(err.details).toContain('resource "warehouse"');
    expect(errorInfoOf(err)).toMatchObject({ reason: "SCOPE_DENIED", domain: "capvend.dev", metadata: { resource: "warehouse", scope: "read" } });
    expect(err.metadata.get("capvend-reason")).toEqual([]);
    expect(err.details).not.toContain(s.sessionCredential.split(".")[1]);
    expect((h.audit as MemoryAuditSink).find({ type: "token.denied", session_id: s.sessionId })).toHaveLength(1);
  });

  it("no credential → status 16 (UNAUTHENTICATED) with ErrorInfo MISSING_CREDENTIAL", async () => {
    const err = await rejection(call(vending, vending.StartSession, { agentId: "sales-bot", grants: [{ resource: "calendar", scopes: ["read"] }] }, new grpc.Metadata()));
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(errorInfoOf(err)?.reason).toBe("MISSING_CREDENTIAL");
  });

  it("bad input → status 3 (INVALID_ARGUMENT) naming the field and the rule", async () => {
    const err = await rejection(call(vending, vending.StartSession, { agentId: "sales-bot", grants: [] }, bearer(ORCHESTRATOR_TOKEN)));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(errorInfoOf(err)).toMatchObject({ reason: "INVALID_ARGUMENT", metadata: { field: "grants" } });
    expect(err.details).toMatch(/^grants/);
    expect(err.details).toContain("must contain at least one grant");
    // connect-es writes grpc-message with encodeURIComponent and grpc-js 1.14.7 reads it with
    // decodeURI, which leaves %3A, %2C, %2F… encoded: grpc-js callers see "grants%3A must…".
    // The full text is recoverable with decodeURIComponent (docs/architecture.md notes it).
    expect(decodeURIComponent(err.details)).toBe("grants: must contain at least one grant");
  });

  it("WatchSession as a server stream: the first event is token_issued for grant 0, for this session", async () => {
    const s = await startSession([{ resource: "calendar", scopes: ["read"] }]);
    const stream = vending.WatchSession({ grants: [{ resource: "calendar", scopes: ["read"] }] }, bearer(s.sessionCredential));
    streams.push(stream);
    const first = await firstEvent(stream, () => true);
    expect(first.event).toBe("tokenIssued");
    expect(first.tokenIssued?.grantIndex).toBe(0);
    expect(first.tokenIssued?.replacesTokenId).toBe("");
    expect(first.resumeToken).toMatch(/^[A-Za-z0-9_-]{42}$/);
    const token = first.tokenIssued!.token;
    expect(token.resource).toBe("calendar");
    expect(token.scopes).toEqual(["read"]);
    // Stream tokens are verified against the JWKS in watch.test.ts.
    const payload = jose.decodeJwt(token.accessToken);
    expect(payload.sid).toBe(s.sessionId);
    expect(payload.jti).toBe(token.tokenId);
  });

  it("WatchSession: EndSession pushes session_ended and the stream then closes OK", async () => {
    const s = await startSession([{ resource: "calendar", scopes: ["read"] }]);
    const stream = vending.WatchSession({ grants: [{ resource: "calendar", scopes: ["read"] }] }, bearer(s.sessionCredential));
    streams.push(stream);
    const status = finalStatus(stream);
    const first = await firstEvent(stream, (e) => e.event === "tokenIssued");
    const ended = firstEvent(stream, (e) => e.event === "sessionEnded");
    await call(vending, vending.EndSession, { sessionId: s.sessionId, reason: "interop done" }, bearer(ORCHESTRATOR_TOKEN));
    const e = await ended;
    expect(e.sessionEnded?.reason).toBe("interop done");
    expect(e.resumeToken).toMatch(/^[A-Za-z0-9_-]{42}$/);
    expect(first.resumeToken).toMatch(/^[A-Za-z0-9_-]{42}$/);
    expect((await status).code).toBe(grpc.status.OK);
  });

  it("WatchSession with a credential of an unknown session fails with UNAUTHENTICATED", async () => {
    const stream = vending.WatchSession({ grants: [{ resource: "calendar", scopes: ["read"] }] }, bearer(`ses_${"A".repeat(22)}.${"B".repeat(43)}`));
    streams.push(stream);
    const status = await finalStatus(stream);
    expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(errorInfoOf(status)?.reason).toBe("UNKNOWN_CREDENTIAL");
  });
});

/**
 * Every reason the server can return, read as a client in any language reads it: the
 * google.rpc.ErrorInfo in the standard status details. Each case is provoked three ways
 * against a real server: a Connect client over the Connect protocol and over gRPC
 * (ConnectError.findDetails), and a plain @grpc/grpc-js client that decodes
 * grpc-status-details-bin as google.rpc.Status.
 *
 * SLOW_READER is not here: the server resets the stuck stream (HTTP/2 ENHANCE_YOUR_CALM), so
 * no status can carry it (test/e2e/watch.test.ts covers the reset). STREAM_LIMIT belongs to
 * the stream and connection limits (test/transport/abuse.test.ts). The reasons the contract
 * declares for later versions (GRANT_REVOKED, TTL_EXCEEDS_GRANT, SESSION_QUOTA,
 * POLICY_CHANGED, TOKEN_REVOKED) are not returned yet.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryAuditSink, type MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { parseSessionCredential } from "../../src/auth/credentials.js";
import { ERROR_DOMAIN, REASONS, codeOf, errorInfoOf, type Reason } from "../../src/errors.js";
import {
  EndSessionRequestSchema,
  IntrospectRequestSchema,
  IssueTokenRequestSchema,
  RevokeRequestSchema,
  StartSessionRequestSchema,
  VendingService,
  WatchSessionRequestSchema,
  WatchSessionResponseSchema,
} from "../../src/gen/capvend/v1/vending_pb.js";
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import { MemorySessionStore } from "../../src/backends/memory/memory-session-store.js";
import { systemClock } from "../../src/clock.js";
import { DEFAULT_POLICY_DIR } from "../../src/config/config.js";
import { encodeResumeToken } from "../../src/streams/resume-token.js";
import { errorInfoFromStatusDetails } from "../helpers/error-info.js";
import { GATEWAY_TOKEN, ORCHESTRATOR_TOKEN, startHarness, type Harness } from "../helpers/harness.js";

/** Memory stores whose next operations can be made to fail, as a store that is away would. */
class FlakySessions extends MemorySessionStore {
  down = false;
  override async get(id: string) {
    if (this.down) throw new Error("session store down");
    return super.get(id);
  }
}
class FlakyRevocations extends MemoryRevocationList {
  publishFails = false;
  lookupsThrow = false;
  override async publish(r: Parameters<MemoryRevocationList["publish"]>[0]) {
    if (this.publishFails) throw new Error("revocation feed down");
    return super.publish(r);
  }
  override tokenRevocation(t: Parameters<MemoryRevocationList["tokenRevocation"]>[0]) {
    if (this.lookupsThrow) throw new Error("an unexpected fault");
    return super.tokenRevocation(t);
  }
}

let h: Harness;
let audit: MemoryAuditSink;
let sessions: FlakySessions;
let revocations: FlakyRevocations;
let grpcClient: grpc.Client;

let policyDir: string;

beforeAll(async () => {
  // The example policy, except that orchestrator "dev" may revoke by agent only: a revoke
  // by resource is an action policy denies.
  policyDir = await mkdtemp(path.join(os.tmpdir(), "capvend-reasons-"));
  for (const f of await readdir(DEFAULT_POLICY_DIR)) {
    const text = await readFile(path.join(DEFAULT_POLICY_DIR, f), "utf8");
    await writeFile(path.join(policyDir, f), text.replace(/(@id\("orchestrator-dev-revoke"\)[^;]*?)resource\s*\);/s, "$1resource is Agent\n);"));
  }
  audit = createMemoryAuditSink({ timeoutMs: 200 });
  sessions = new FlakySessions(systemClock);
  revocations = new FlakyRevocations(systemClock);
  h = await startHarness({ audit, sessions, revocations, policyDir });
  grpcClient = new grpc.Client(h.url.replace("http://", ""), grpc.credentials.createInsecure());
});
afterAll(async () => {
  grpcClient?.close();
  await h?.close();
  await rm(policyDir, { recursive: true, force: true });
});

type Method = keyof typeof VendingService.method;
interface Call {
  method: Method;
  request: MessageShape<DescMessage>;
  bearer?: string;
}

/** A request message for a method, from its init shape. */
function req<D extends DescMessage>(schema: D, init: MessageInitShape<D>): MessageShape<DescMessage> {
  return create(schema, init) as MessageShape<DescMessage>;
}

const SCHEMAS: Record<Method, DescMessage> = {
  startSession: StartSessionRequestSchema,
  issueToken: IssueTokenRequestSchema,
  watchSession: WatchSessionRequestSchema,
  revoke: RevokeRequestSchema,
  endSession: EndSessionRequestSchema,
  introspect: IntrospectRequestSchema,
};

/** Calls through a Connect client (Connect protocol or gRPC); the ConnectError it fails with. */
async function viaConnect(call: Call, protocol: "connect" | "grpc"): Promise<ConnectError> {
  const client = createClient(VendingService, h.transport(call.bearer, protocol));
  const fn = client[call.method] as (r: unknown) => unknown;
  try {
    const res = fn(call.request);
    if (call.method === "watchSession") for await (const _ of res as AsyncIterable<unknown>) void _;
    else await res;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error(`${call.method} did not fail over ${protocol}`);
}

/** Calls through @grpc/grpc-js with no generated client; the status it fails with. */
function viaGrpcJs(call: Call): Promise<grpc.StatusObject> {
  const md = new grpc.Metadata();
  if (call.bearer !== undefined) md.set("authorization", `Bearer ${call.bearer}`);
  const method = VendingService.method[call.method];
  const path = `/${VendingService.typeName}/${method.name}`;
  const serialize = (m: MessageShape<DescMessage>) => Buffer.from(toBinary(SCHEMAS[call.method], m));
  return new Promise((resolve, reject) => {
    if (call.method === "watchSession") {
      const stream = grpcClient.makeServerStreamRequest(path, serialize, (b: Buffer) => fromBinary(WatchSessionResponseSchema, b), call.request, md);
      stream.on("data", () => undefined);
      stream.on("error", (e: grpc.ServiceError) => resolve(e));
      stream.on("end", () => reject(new Error("WatchSession did not fail over grpc-js")));
      return;
    }
    grpcClient.makeUnaryRequest(path, serialize, (b: Buffer) => b, call.request, md, (err) => {
      if (err) resolve(err);
      else reject(new Error(`${call.method} did not fail over grpc-js`));
    });
  });
}

const grants = [{ resource: "salesforce", scopes: ["read"] }, { resource: "calendar", scopes: ["read"] }];

async function session(init: { grants?: typeof grants; requestId?: string } = {}) {
  return h.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: init.grants ?? grants, requestId: init.requestId ?? "" });
}

/** How each reason is provoked: the call, and what must hold around it. */
interface Case {
  reason: Reason;
  metadata?: Record<string, string>;
  /** Builds a fresh call (a case may need a fresh session per protocol). */
  call(): Promise<Call>;
  /** Runs around the call (turns a failure on and off again). */
  around?<T>(run: () => Promise<T>): Promise<T>;
}

const withFlag = (on: () => void, off: () => void) => async <T,>(run: () => Promise<T>): Promise<T> => {
  on();
  try {
    return await run();
  } finally {
    off();
  }
};

const CASES: Case[] = [
  {
    reason: "INVALID_ARGUMENT",
    metadata: { field: "grants" },
    call: async () => ({ method: "startSession", bearer: ORCHESTRATOR_TOKEN, request: req(StartSessionRequestSchema, { agentId: "sales-bot", grants: [] }) }),
  },
  { reason: "MISSING_CREDENTIAL", call: async () => ({ method: "startSession", request: req(StartSessionRequestSchema, { agentId: "sales-bot", grants }) }) },
  {
    reason: "UNKNOWN_CREDENTIAL",
    call: async () => ({ method: "issueToken", bearer: `ses_${"A".repeat(22)}.${"B".repeat(43)}`, request: req(IssueTokenRequestSchema, { resource: "calendar", scopes: ["read"] }) }),
  },
  {
    reason: "WRONG_CALLER",
    call: async () => ({ method: "startSession", bearer: GATEWAY_TOKEN, request: req(StartSessionRequestSchema, { agentId: "sales-bot", grants }) }),
  },
  {
    reason: "SESSION_NOT_FOUND",
    metadata: { field: "session_id", sessionId: `ses_${"C".repeat(22)}` },
    call: async () => ({ method: "endSession", bearer: ORCHESTRATOR_TOKEN, request: req(EndSessionRequestSchema, { sessionId: `ses_${"C".repeat(22)}` }) }),
  },
  {
    reason: "SESSION_ENDED",
    call: async () => {
      const s = await session();
      await h.orchestrator.endSession({ sessionId: s.sessionId });
      return { method: "issueToken", bearer: s.sessionCredential, request: req(IssueTokenRequestSchema, { resource: "calendar", scopes: ["read"] }) };
    },
  },
  {
    reason: "RESOURCE_NOT_GRANTED",
    metadata: { resource: "warehouse" },
    call: async () => ({ method: "issueToken", bearer: (await session()).sessionCredential, request: req(IssueTokenRequestSchema, { resource: "warehouse", scopes: ["read"] }) }),
  },
  {
    reason: "SCOPE_NOT_GRANTED",
    metadata: { resource: "calendar", scope: "write" },
    call: async () => ({ method: "issueToken", bearer: (await session()).sessionCredential, request: req(IssueTokenRequestSchema, { resource: "calendar", scopes: ["write"] }) }),
  },
  {
    reason: "SCOPE_DENIED",
    metadata: { resource: "salesforce", scope: "delete", grantIndex: "0" },
    // A grant no policy can ever allow is refused at StartSession, naming it.
    call: async () => ({ method: "startSession", bearer: ORCHESTRATOR_TOKEN, request: req(StartSessionRequestSchema, { agentId: "sales-bot", userId: "alice", grants: [{ resource: "salesforce", scopes: ["delete"] }] }) }),
  },
  {
    reason: "ACTION_DENIED",
    call: async () => ({ method: "revoke", bearer: ORCHESTRATOR_TOKEN, request: req(RevokeRequestSchema, { target: { case: "resource", value: "calendar" }, reason: "x" }) }),
  },
  {
    reason: "AUDIT_UNAVAILABLE",
    call: async () => ({ method: "issueToken", bearer: (await session()).sessionCredential, request: req(IssueTokenRequestSchema, { resource: "calendar", scopes: ["read"] }) }),
    around: withFlag(() => audit.setMode("fail"), () => audit.setMode("ok")),
  },
  {
    reason: "REVOCATION_UNAVAILABLE",
    call: async () => ({ method: "revoke", bearer: ORCHESTRATOR_TOKEN, request: req(RevokeRequestSchema, { target: { case: "agentId", value: "sales-bot" }, reason: "x" }) }),
    around: withFlag(() => (revocations.publishFails = true), () => (revocations.publishFails = false)),
  },
  {
    reason: "SESSION_STORE_UNAVAILABLE",
    call: async () => ({ method: "issueToken", bearer: (await session()).sessionCredential, request: req(IssueTokenRequestSchema, { resource: "calendar", scopes: ["read"] }) }),
    around: withFlag(() => (sessions.down = true), () => (sessions.down = false)),
  },
  {
    reason: "RESUME_AHEAD",
    metadata: { field: "resume_token" },
    call: async () => {
      const s = await session();
      const token = encodeResumeToken({ id: s.sessionId, credentialHash: parseSessionCredential(s.sessionCredential)!.secretHash }, { feedPosition: revocations.lastSeq + 1000, issuedAtMs: Date.now() });
      return { method: "watchSession", bearer: s.sessionCredential, request: req(WatchSessionRequestSchema, { grants, resumeToken: token }) };
    },
  },
  {
    reason: "RESUME_TOKEN_EXPIRED",
    metadata: { field: "resume_token" },
    call: async () => {
      const s = await session();
      const token = encodeResumeToken({ id: s.sessionId, credentialHash: parseSessionCredential(s.sessionCredential)!.secretHash }, { feedPosition: 0, issuedAtMs: Date.now() - 400 * 86_400_000 });
      return { method: "watchSession", bearer: s.sessionCredential, request: req(WatchSessionRequestSchema, { grants, resumeToken: token }) };
    },
  },
  {
    reason: "REQUEST_ID_REUSED",
    metadata: { field: "request_id" },
    call: async () => {
      const requestId = randomUUID();
      await session({ requestId });
      return { method: "startSession", bearer: ORCHESTRATOR_TOKEN, request: req(StartSessionRequestSchema, { agentId: "sales-bot", userId: "bob", grants, requestId }) };
    },
  },
  {
    reason: "MESSAGE_TOO_LARGE",
    call: async () => ({ method: "startSession", bearer: ORCHESTRATOR_TOKEN, request: req(StartSessionRequestSchema, { agentId: "a".repeat(70 * 1024), grants }) }),
  },
  {
    reason: "INTERNAL",
    call: async () => {
      const s = await session();
      const { token } = await h.client(s.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] });
      return { method: "introspect", bearer: ORCHESTRATOR_TOKEN, request: req(IntrospectRequestSchema, { token: token!.accessToken }) };
    },
    around: withFlag(() => (revocations.lookupsThrow = true), () => (revocations.lookupsThrow = false)),
  },
];

describe("every reason arrives as google.rpc.ErrorInfo with its code", () => {
  const run = <T,>(c: Case, fn: () => Promise<T>) => (c.around ? c.around(fn) : fn());

  it.each(CASES.map((c) => [c.reason, c] as const))("%s", async (reason, c) => {
    for (const protocol of ["connect", "grpc"] as const) {
      const call = await c.call();
      const err = await run(c, () => viaConnect(call, protocol));
      expect(err.code, `${protocol}: ${err.message}`).toBe(codeOf(reason));
      const info = errorInfoOf(err);
      expect(info, `${protocol}: ErrorInfo`).toMatchObject({ reason, domain: ERROR_DOMAIN });
      if (c.metadata) expect(info?.metadata).toMatchObject(c.metadata);
      expect(err.metadata.get("capvend-reason")).toBeNull();
    }
    const call = await c.call();
    const status = await run(c, () => viaGrpcJs(call));
    expect(status.code, status.details).toBe(codeOf(reason));
    const [bin] = status.metadata.get("grpc-status-details-bin");
    const info = errorInfoFromStatusDetails(bin as Buffer | undefined);
    expect(info, "grpc-js: ErrorInfo").toMatchObject({ reason, domain: ERROR_DOMAIN });
    if (c.metadata) expect(info?.metadata).toMatchObject(c.metadata);
  });

  it("DRAINING: a stream opened on a draining server is refused, on every client", async () => {
    const s = await session();
    const call: Call = { method: "watchSession", bearer: s.sessionCredential, request: req(WatchSessionRequestSchema, { grants }) };
    h.server.hub.drain("test drain");
    for (const protocol of ["connect", "grpc"] as const) {
      const err = await viaConnect(call, protocol);
      expect(err.code).toBe(Code.Unavailable);
      expect(errorInfoOf(err)).toMatchObject({ reason: "DRAINING", domain: ERROR_DOMAIN });
    }
    const status = await viaGrpcJs(call);
    expect(status.code).toBe(grpc.status.UNAVAILABLE);
    const [bin] = status.metadata.get("grpc-status-details-bin");
    expect(errorInfoFromStatusDetails(bin as Buffer | undefined)?.reason).toBe("DRAINING");
  });

  it("covers every reason the server returns today", () => {
    const notReturned: Reason[] = ["SLOW_READER", "TOKEN_REVOKED", "GRANT_REVOKED", "TTL_EXCEEDS_GRANT", "STREAM_LIMIT", "SESSION_QUOTA", "OVERLOADED", "POLICY_CHANGED"];
    const covered = new Set<Reason>([...CASES.map((c) => c.reason), "DRAINING"]);
    expect(notReturned.filter((r) => covered.has(r))).toEqual([]);
    expect(REASONS.filter((r) => !covered.has(r) && !notReturned.includes(r))).toEqual([]);
  });
});

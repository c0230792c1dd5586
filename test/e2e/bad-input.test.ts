import { rm } from "node:fs/promises";
/**
 * Bad input end to end: every refusal has the right gRPC code, a message naming the field
 * and the rule, no token or secret in it, and leaves nothing half-recorded behind.
 */
import http2 from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryAuditSink, type MemoryAuditSink } from "../../src/audit/memory-sink.js";
import { newSessionCredential } from "../../src/auth/credentials.js";
import { reasonOf } from "../../src/errors.js";
import { errorInfoFromStatusDetails } from "../helpers/error-info.js";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import {
  IssueTokenRequestSchema,
  RevokeRequestSchema,
  StartSessionRequestSchema,
  VendingService,
} from "../../src/gen/capvend/v1/vending_pb.js";
import { GATEWAY_TOKEN, ORCHESTRATOR_TOKEN, startHarness, startSalesSession, type Harness } from "../helpers/harness.js";
import { examplePolicyPlus, LIMITS_LABEL_POLICY } from "../helpers/policy-fixtures.js";

type StartInit = MessageInitShape<typeof StartSessionRequestSchema>;
type IssueInit = MessageInitShape<typeof IssueTokenRequestSchema>;
type RevokeInit = MessageInitShape<typeof RevokeRequestSchema>;

interface Failure {
  code: Code;
  reason: string | null;
  message: string;
}

async function failure(p: Promise<unknown>): Promise<Failure> {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, reason: reasonOf(e) ?? null, message: e.rawMessage };
  }
  throw new Error("expected the call to fail");
}

/** The message of a refusal never carries a credential, token or secret we sent. */
function expectNoSecrets(f: Failure, secrets: readonly string[]) {
  for (const s of secrets) expect(f.message, "error message leaks a secret").not.toContain(s);
}

const secretOf = (credential: string) => credential.split(".")[1]!;

let h: Harness;
let audit: MemoryAuditSink;
let policyDir: string;
beforeAll(async () => {
  policyDir = await examplePolicyPlus(LIMITS_LABEL_POLICY);
  h = await startHarness({ policyDir });
  audit = h.audit as MemoryAuditSink;
});
afterAll(async () => {
  await h?.close();
  await rm(policyDir, { recursive: true, force: true });
});

/** What a refused call must not have changed (it adds exactly one refusal record: see expectOneDenial). */
function snapshot() {
  return {
    sessions: h.sessions.size,
    revocations: h.revocations.size,
    revocationSeq: h.revocations.lastSeq,
    allowRecords: audit.records.filter((r) => r.decision !== "deny").length,
    denials: audit.records.filter((r) => r.decision === "deny").length,
    started: audit.find({ type: "session.started" }).length,
  };
}

/** Nothing changed and nothing recorded: the request never reached a decision (it did not decode). */
function expectNothingRecorded(before: ReturnType<typeof snapshot>): void {
  expect(snapshot()).toEqual(before);
}

/** Nothing changed but one new audit record: the refusal, decision "deny". */
function expectOneDenial(before: ReturnType<typeof snapshot>): void {
  expect(snapshot()).toEqual({ ...before, denials: before.denials + 1 });
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const bytes = (n: number, ch = "a") => ch.repeat(n);
/** 129 two-byte characters: 258 bytes, under 256 characters. */
const MULTIBYTE_257 = "é".repeat(129);
const secs = (s: number, nanos = 0) => ({ seconds: BigInt(s), nanos });
const OK_GRANT = { resource: "calendar", scopes: ["read"] };
const startBase: StartInit = { agentId: "sales-bot", userId: "alice", grants: [OK_GRANT] };

// [what, request, field named in the message, rule named in the message]
const startCases: [string, StartInit, string, RegExp][] = [
  ["agent_id with ZERO WIDTH SPACE", { ...startBase, agentId: "sales\u200bbot" }, "agent_id", /zero-width/],
  ["user_id of white space only", { ...startBase, userId: " \u3000 " }, "user_id", /white space/],
  ['a grant resource "."', { ...startBase, grants: [{ resource: ".", scopes: ["read"] }] }, "grants[0].resource", /must not be "\." or "\.\."/],
  ['a scope with a double quote', { ...startBase, grants: [{ resource: "calendar", scopes: ['read"'] }] }, "grants[0].scopes[0]", /scope-token/],
  ["a label key \"..\"", { ...startBase, labels: { "..": "v" } }, 'labels[".."]', /key must not be "\." or "\.\."/],
  ["a label value with RIGHT-TO-LEFT OVERRIDE", { ...startBase, labels: { env: "prod\u202e" } }, 'labels["env"]', /bidirectional/],
  ["a request_id that is not a UUID", { ...startBase, requestId: "retry-1" }, "request_id", /must be a UUID/],
  ["empty agent_id", { ...startBase, agentId: "" }, "agent_id", /must not be empty/],
  ["257-byte agent_id", { ...startBase, agentId: bytes(257) }, "agent_id", /at most 256 bytes/],
  ["agent_id of 129 two-byte characters", { ...startBase, agentId: MULTIBYTE_257 }, "agent_id", /at most 256 bytes/],
  ["agent_id with a newline", { ...startBase, agentId: "sales-bot\nforged log line" }, "agent_id", /control characters/],
  ["agent_id with U+2028", { ...startBase, agentId: "sales\u2028bot" }, "agent_id", /control characters/],
  ["agent_id with C1 control U+0085 (NEL)", { ...startBase, agentId: "sales\u0085bot" }, "agent_id", /control characters/],
  ["a label value with C1 control U+009B (CSI)", { ...startBase, labels: { env: "\u009b31mred" } }, "labels[\"env\"]", /control characters/],
  ["a label key with C1 control U+0085", { ...startBase, labels: { "env\u0085x": "v" } }, "labels[", /key must be/],
  ["empty user_id (set but empty)", { ...startBase, userId: "" }, "user_id", /must not be empty/],
  ["257-byte user_id", { ...startBase, userId: bytes(257) }, "user_id", /at most 256 bytes/],
  ["zero grants", { ...startBase, grants: [] }, "grants", /at least one grant/],
  ["65 grants", { ...startBase, grants: Array.from({ length: 65 }, (_, i) => ({ resource: `r${i}`, scopes: ["read"] })) }, "grants", /at most 64 grants/],
  ["a grant with an empty resource", { ...startBase, grants: [{ resource: "", scopes: ["read"] }] }, "grants[0].resource", /must not be empty/],
  ["a grant with a 257-byte resource", { ...startBase, grants: [{ resource: bytes(257), scopes: ["read"] }] }, "grants[0].resource", /at most 256 bytes/],
  ["duplicate grant resources", { ...startBase, grants: [OK_GRANT, { resource: "calendar", scopes: ["write"] }] }, "grants[1].resource", /duplicate grant for resource "calendar"/],
  ["a grant with no scopes", { ...startBase, grants: [{ resource: "calendar", scopes: [] }] }, "grants[0].scopes", /at least one scope/],
  ["duplicate scopes", { ...startBase, grants: [{ resource: "calendar", scopes: ["read", "write", "read"] }] }, "grants[0].scopes[2]", /duplicate scope "read"/],
  ["an empty scope", { ...startBase, grants: [{ resource: "calendar", scopes: ["read", ""] }] }, "grants[0].scopes[1]", /must not be empty/],
  ["a scope with a space", { ...startBase, grants: [{ resource: "calendar", scopes: ["read write"] }] }, "grants[0].scopes[0]", /whitespace/],
  ["a scope with a tab", { ...startBase, grants: [{ resource: "calendar", scopes: ["read\twrite"] }] }, "grants[0].scopes[0]", /whitespace/],
  ["a 129-byte scope", { ...startBase, grants: [{ resource: "calendar", scopes: [bytes(129)] }] }, "grants[0].scopes[0]", /at most 128 bytes/],
  ["65 scopes", { ...startBase, grants: [{ resource: "calendar", scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }] }, "grants[0].scopes", /at most 64 scopes/],
  ["a zero ttl", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(0) }] }, "grants[0].ttl", /at least 1s/],
  ["a negative ttl", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(-60) }] }, "grants[0].ttl", /must be at least 1s/],
  ["a negative sub-second ttl", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(0, -500_000_000) }] }, "grants[0].ttl", /must be at least 1s/],
  ["a 999 ms ttl", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(0, 999_000_000) }] }, "grants[0].ttl", /at least 1s/],
  ["a ttl above CAPVEND_MAX_TOKEN_TTL", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(3601) }] }, "grants[0].ttl", /at most 3600s/],
  ["a ttl 1 ms above the maximum", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(3600, 1_000_000) }] }, "grants[0].ttl", /at most 3600s/],
  ["a huge ttl", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(Number.MAX_SAFE_INTEGER) }] }, "grants[0].ttl", /at most 3600s/],
  ["a ttl with nanos out of range (not a valid Duration)", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(5, 1_500_000_000) }] }, "grants[0].ttl", /nanos/],
  ["a ttl with seconds and nanos of opposite signs", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(60, -1) }] }, "grants[0].ttl", /must be positive/],
  ["a zero max_duration", { ...startBase, maxDuration: secs(0) }, "max_duration", /at least 1s/],
  ["a max_duration above the maximum", { ...startBase, maxDuration: secs(8 * 3600 + 1) }, "max_duration", /at most 28800s/],
  ["33 labels", { ...startBase, labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"])) }, "labels", /at most 32 entries/],
  ["a label key with a space", { ...startBase, labels: { "bad key": "v" } }, 'labels["bad key"]', /key must be 1 to 64 characters/],
  ["an empty label key", { ...startBase, labels: { "": "v" } }, 'labels[""]', /key must be 1 to 64 characters/],
  ["a 65-character label key", { ...startBase, labels: { [bytes(65, "k")]: "v" } }, "labels[", /key must be 1 to 64 characters/],
  ["a label key with a slash", { ...startBase, labels: { "team/owner": "v" } }, "labels[", /key must be/],
  ["a label key with a newline", { ...startBase, labels: { "env\n2026-01-01 INFO forged": "v" } }, "labels[", /key must be/],
  ["a label key with U+2028", { ...startBase, labels: { "env\u2028forged": "v" } }, "labels[", /key must be/],
  ["a 257-byte label value", { ...startBase, labels: { env: bytes(257) } }, 'labels["env"]', /at most 256 bytes/],
  ["a label value with a newline", { ...startBase, labels: { env: "prod\nx" } }, 'labels["env"]', /control characters/],
];

describe("StartSession refuses bad input with INVALID_ARGUMENT and records only the refusal", () => {
  it.each(startCases)("%s", async (_what, req, field, rule) => {
    const before = snapshot();
    const f = await failure(h.orchestrator.startSession(req));
    expect(f.code).toBe(Code.InvalidArgument);
    expect(f.reason).toBe("INVALID_ARGUMENT");
    expect(f.message.startsWith(field)).toBe(true);
    expect(f.message).toMatch(rule);
    // The message never echoes control characters back (they would forge lines where it is logged).
    expect(f.message).not.toMatch(CONTROL_CHARS);
    expectNoSecrets(f, [ORCHESTRATOR_TOKEN]);
    expectOneDenial(before);
  });

  // The limits are inclusive: the largest allowed value of each passes.
  it.each<[string, StartInit]>([
    // StartSession refuses grants no policy can allow: these are allowed by the `limits` label.
    ["a 256-byte agent_id", { ...startBase, agentId: bytes(256), labels: { limits: "" } }],
    ["64 scopes of 128 bytes", { ...startBase, labels: { limits: "" }, grants: [{ resource: "calendar", scopes: Array.from({ length: 64 }, (_, i) => `${i}`.padEnd(128, "x")) }] }],
    ["64 grants", { ...startBase, labels: { limits: "" }, grants: Array.from({ length: 64 }, (_, i) => ({ resource: `r${i}`, scopes: ["read"] })) }],
    ["ttl of exactly 1 s and exactly the maximum", { ...startBase, grants: [{ ...OK_GRANT, ttl: secs(1) }, { resource: "salesforce", scopes: ["read"], ttl: secs(3600) }] }],
    ["max_duration of exactly the maximum", { ...startBase, maxDuration: secs(8 * 3600) }],
    ["32 labels with 64-character keys and 256-byte values", { ...startBase, labels: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`${i}`.padEnd(64, "k"), bytes(256)])) }],
  ])("accepts %s", async (_what, req) => {
    const before = snapshot();
    const res = await h.orchestrator.startSession(req);
    expect(res.sessionId).toMatch(/^ses_/);
    expect(h.sessions.size).toBe(before.sessions + 1);
    expect(audit.find({ type: "session.started", session_id: res.sessionId })).toHaveLength(1);
  });
});

const issueCases: [string, IssueInit, string, RegExp][] = [
  ["a resource with RIGHT-TO-LEFT OVERRIDE", { resource: "sales\u202eforce", scopes: ["read"] }, "resource", /bidirectional/],
  ["a resource of white space only", { resource: "   ", scopes: ["read"] }, "resource", /white space/],
  ['a resource ".."', { resource: "..", scopes: ["read"] }, "resource", /must not be "\." or "\.\."/],
  ['a scope with a double quote', { resource: "salesforce", scopes: ['read"'] }, "scopes[0]", /scope-token/],
  ["a non-ASCII scope", { resource: "salesforce", scopes: ["lecture-é"] }, "scopes[0]", /scope-token/],
  ["empty resource", { resource: "", scopes: ["read"] }, "resource", /must not be empty/],
  ["257-byte resource", { resource: bytes(257), scopes: ["read"] }, "resource", /at most 256 bytes/],
  ["no scopes", { resource: "salesforce", scopes: [] }, "scopes", /at least one scope/],
  ["duplicate scopes", { resource: "salesforce", scopes: ["read", "read"] }, "scopes[1]", /duplicate scope "read"/],
  ["an empty scope", { resource: "salesforce", scopes: [""] }, "scopes[0]", /must not be empty/],
  ["a scope with a space", { resource: "salesforce", scopes: ["read write"] }, "scopes[0]", /whitespace/],
  ["65 scopes", { resource: "salesforce", scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }, "scopes", /at most 64 scopes/],
  ["a zero ttl", { resource: "salesforce", scopes: ["read"], ttl: secs(0) }, "ttl", /at least 1s/],
  ["a negative ttl", { resource: "salesforce", scopes: ["read"], ttl: secs(-1) }, "ttl", /must be at least 1s/],
  ["a 500 ms ttl", { resource: "salesforce", scopes: ["read"], ttl: secs(0, 500_000_000) }, "ttl", /at least 1s/],
  ["a ttl above the maximum", { resource: "salesforce", scopes: ["read"], ttl: secs(2 * 3600) }, "ttl", /at most 3600s/],
];

describe("IssueToken refuses bad input with INVALID_ARGUMENT and issues nothing", () => {
  let session: Awaited<ReturnType<typeof startSalesSession>>;
  beforeAll(async () => {
    session = await startSalesSession(h);
  });

  it.each(issueCases)("%s", async (_what, req, field, rule) => {
    const before = snapshot();
    const f = await failure(session.runtime.issueToken(req));
    expect(f.code).toBe(Code.InvalidArgument);
    expect(f.reason).toBe("INVALID_ARGUMENT");
    expect(f.message.startsWith(field)).toBe(true);
    expect(f.message).toMatch(rule);
    expectNoSecrets(f, [session.sessionCredential, secretOf(session.sessionCredential)]);
    expectOneDenial(before);
    expect(audit.find({ type: "token.issued", session_id: session.sessionId })).toHaveLength(0);
  });

  it("the session still works afterwards", async () => {
    const { token } = await session.runtime.issueToken({ resource: "salesforce", scopes: ["read"], ttl: secs(3600) });
    expect(token?.tokenId).toBeTruthy();
  });
});

const revokeCases: [string, RevokeInit, string, RegExp][] = [
  ["no target", { reason: "oops" }, "target", /set one of token_id, session_id, agent_id, user_id, resource/],
  ...(["tokenId", "sessionId", "agentId", "userId", "resource"] as const).flatMap((k): [string, RevokeInit, string, RegExp][] => {
    const field = { tokenId: "token_id", sessionId: "session_id", agentId: "agent_id", userId: "user_id", resource: "resource" }[k];
    return [
      [`an empty ${field}`, { target: { case: k, value: "" } }, field, /must not be empty/],
      [`a 257-byte ${field}`, { target: { case: k, value: bytes(257) } }, field, /at most 256 bytes/],
    ];
  }),
  ["a 513-byte reason", { target: { case: "agentId", value: "sales-bot" }, reason: bytes(513) }, "reason", /at most 512 bytes/],
  ["a reason of 257 two-byte characters (514 bytes)", { target: { case: "agentId", value: "sales-bot" }, reason: "é".repeat(257) }, "reason", /at most 512 bytes/],
  ["a reason with a newline", { target: { case: "agentId", value: "sales-bot" }, reason: "a\nb" }, "reason", /control characters/],
];

describe("Revoke refuses bad input and revokes nothing", () => {
  it.each(revokeCases)("%s → INVALID_ARGUMENT", async (_what, req, field, rule) => {
    const before = snapshot();
    const f = await failure(h.orchestrator.revoke(req));
    expect(f.code).toBe(Code.InvalidArgument);
    expect(f.reason).toBe("INVALID_ARGUMENT");
    expect(f.message.startsWith(field)).toBe(true);
    expect(f.message).toMatch(rule);
    expectNoSecrets(f, [ORCHESTRATOR_TOKEN]);
    expectOneDenial(before);
  });

  it("a 512-byte reason is accepted", async () => {
    const res = await h.orchestrator.revoke({ target: { case: "tokenId", value: "tok_does_not_exist" }, reason: bytes(512) });
    expect(res.revocationId).toMatch(/^rev_/);
  });

  it("an unknown session → NOT_FOUND session_not_found, nothing revoked", async () => {
    const before = snapshot();
    const f = await failure(h.orchestrator.revoke({ target: { case: "sessionId", value: "ses_AAAAAAAAAAAAAAAAAAAAAA" }, reason: "x" }));
    expect(f.code).toBe(Code.NotFound);
    expect(f.reason).toBe("SESSION_NOT_FOUND");
    expect(f.message).toContain("session_id");
    expect(f.message).toContain("ses_AAAAAAAAAAAAAAAAAAAAAA");
    expectOneDenial(before);
  });
});

describe("EndSession refuses bad input", () => {
  it.each<[string, string, string, Code, RegExp]>([
    ["an empty session_id", "", "ok", Code.InvalidArgument, /^session_id: must not be empty/],
    ["a 257-byte session_id", bytes(257), "ok", Code.InvalidArgument, /^session_id: must be at most 256 bytes/],
    ["an unknown session", "ses_BBBBBBBBBBBBBBBBBBBBBB", "ok", Code.NotFound, /^session_id: no session "ses_BBBBBBBBBBBBBBBBBBBBBB"/],
  ])("%s", async (_what, sessionId, reason, code, rule) => {
    const before = snapshot();
    const f = await failure(h.orchestrator.endSession({ sessionId, reason }));
    expect(f.code).toBe(code);
    expect(f.message).toMatch(rule);
    expectNoSecrets(f, [ORCHESTRATOR_TOKEN]);
    expectOneDenial(before);
  });

  it("a 513-byte reason → INVALID_ARGUMENT and the session stays open", async () => {
    const s = await startSalesSession(h);
    const before = snapshot();
    const f = await failure(h.orchestrator.endSession({ sessionId: s.sessionId, reason: bytes(513) }));
    expect(f.code).toBe(Code.InvalidArgument);
    expect(f.message).toMatch(/^reason: must be at most 512 bytes/);
    expectOneDenial(before);
    expect((await h.sessions.get(s.sessionId))?.endedAt).toBeUndefined();
    expect((await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token).toBeDefined();
  });

  it("another session's credential → PERMISSION_DENIED, and the target session is untouched", async () => {
    const a = await startSalesSession(h);
    const b = await startSalesSession(h);
    const before = snapshot();
    const f = await failure(a.runtime.endSession({ sessionId: b.sessionId, reason: "hostile" }));
    expect(f.code).toBe(Code.PermissionDenied);
    expect(f.reason).toBe("WRONG_CALLER");
    expect(f.message).toContain("own session");
    expectNoSecrets(f, [a.sessionCredential, secretOf(a.sessionCredential), secretOf(b.sessionCredential)]);
    expectOneDenial(before);
    expect((await h.sessions.get(b.sessionId))?.endedAt).toBeUndefined();
    expect((await b.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token).toBeDefined();
  });
});

describe("Introspect", () => {
  const gateway = () => h.client(GATEWAY_TOKEN);

  it("an empty token → INVALID_ARGUMENT naming the field", async () => {
    const f = await failure(gateway().introspect({ token: "" }));
    expect(f.code).toBe(Code.InvalidArgument);
    expect(f.message).toBe("token: must not be empty");
  });

  it("a 9 KiB token → INVALID_ARGUMENT naming the limit, without quoting the token", async () => {
    const big = `eyJ${"A".repeat(9 * 1024)}`;
    const f = await failure(gateway().introspect({ token: big }));
    expect(f.code).toBe(Code.InvalidArgument);
    expect(f.message).toBe("token: must be at most 8192 bytes");
    expectNoSecrets(f, [big.slice(0, 64)]);
  });

  it("a token of exactly 8 KiB is judged (inactive), not refused", async () => {
    const res = await gateway().introspect({ token: "A".repeat(8 * 1024) });
    expect(res.active).toBe(false);
  });

  it("malformed, tampered and foreign JWTs are inactive, not errors", async () => {
    const s = await startSalesSession(h);
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    const jwt = token!.accessToken;
    const [head, body, sig] = jwt.split(".") as [string, string, string];
    const flip = (x: string) => (x[0] === "A" ? "B" : "A") + x.slice(1);
    const foreign = await new jose.SignJWT(jose.decodeJwt(jwt))
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: h.keyRing.current().kid })
      .sign((await jose.generateKeyPair("ES256")).privateKey);
    const noneAlg = `${Buffer.from(JSON.stringify({ alg: "none", typ: "at+jwt" })).toString("base64url")}.${body}.`;
    for (const bad of [
      "not-a-jwt",
      "x.y.z",
      "a.b",
      "....",
      "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
      `${head}.${body}.${flip(sig)}`,
      `${head}.${flip(body)}.${sig}`,
      `${head}.${body}`,
      noneAlg,
      foreign,
      `${jwt} `,
      "\u0000\u0001",
    ]) {
      const res = await gateway().introspect({ token: bad });
      expect(res.active, `token ${JSON.stringify(bad.slice(0, 40))}`).toBe(false);
      expect(res.jti).toBe("");
      expect(res.scope).toBe("");
    }
    // The genuine token is still active.
    expect((await gateway().introspect({ token: jwt })).active).toBe(true);
  });
});

type ProtocolKind = "connect" | "grpc" | "connect-h1";
const PROTOCOLS: ProtocolKind[] = ["connect", "grpc", "connect-h1"];

/** A client that sends exactly `authorization` (or none). */
function rawAuthClient(authorization: string | undefined, kind: ProtocolKind) {
  const set: Interceptor = (next) => (req) => {
    if (authorization !== undefined) req.header.set("authorization", authorization);
    return next(req);
  };
  const transport =
    kind === "grpc"
      ? createGrpcTransport({ baseUrl: h.url, interceptors: [set] })
      : createConnectTransport({ baseUrl: h.url, httpVersion: kind === "connect-h1" ? "1.1" : "2", interceptors: [set] });
  return createClient(VendingService, transport);
}

describe("authorization", () => {
  const wrongSecret = () => newSessionCredential("ses_AAAAAAAAAAAAAAAAAAAAAA").credential;
  const cases: [string, () => string | undefined, string][] = [
    ["no authorization header", () => undefined, "MISSING_CREDENTIAL"],
    ["a Basic header", () => `Basic ${Buffer.from(`dev:${ORCHESTRATOR_TOKEN}`).toString("base64")}`, "MISSING_CREDENTIAL"],
    ["the bare token without Bearer", () => ORCHESTRATOR_TOKEN, "MISSING_CREDENTIAL"],
    ["an unknown bearer", () => "Bearer unknown-bearer-token-0123456789", "UNKNOWN_CREDENTIAL"],
    ["an unknown session credential", () => `Bearer ${wrongSecret()}`, "UNKNOWN_CREDENTIAL"],
  ];

  for (const kind of PROTOCOLS) {
    it.each(cases)(`${kind}: StartSession with %s → UNAUTHENTICATED`, async (_what, header, reason) => {
      const auth = header();
      const before = snapshot();
      const f = await failure(rawAuthClient(auth, kind).startSession(startBase));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.reason).toBe(reason);
      expectNoSecrets(f, [ORCHESTRATOR_TOKEN, ...(auth ? [auth.replace(/^\S+ /, "")] : [])]);
      expectOneDenial(before);
    });
  }

  it("a session credential with the right id but the wrong secret → UNAUTHENTICATED, no token", async () => {
    const s = await startSalesSession(h);
    const forged = newSessionCredential(s.sessionId).credential;
    const before = snapshot();
    for (const kind of PROTOCOLS) {
      const f = await failure(rawAuthClient(`Bearer ${forged}`, kind).issueToken({ resource: "calendar", scopes: ["read"] }));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.reason).toBe("UNKNOWN_CREDENTIAL");
      expectNoSecrets(f, [forged, secretOf(forged), secretOf(s.sessionCredential)]);
    }
    // One auth.failed per attempt (one per protocol), naming the session, never the secret.
    expect(snapshot()).toEqual({ ...before, denials: before.denials + PROTOCOLS.length });
    const failed = audit.find({ type: "auth.failed", session_id: s.sessionId });
    expect(failed).toHaveLength(PROTOCOLS.length);
    expect(failed[0]).toMatchObject({ decision: "deny", reason: "UNKNOWN_CREDENTIAL", details: { credential_kind: "session" } });
    expect(audit.find({ type: "token.issued", session_id: s.sessionId })).toHaveLength(0);
    // The real credential is not locked out by the attempts.
    expect((await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token).toBeDefined();
  });

  it("a session credential with a truncated secret is not a session credential: UNAUTHENTICATED", async () => {
    const s = await startSalesSession(h);
    const f = await failure(h.client(s.sessionCredential.slice(0, -1)).issueToken({ resource: "calendar", scopes: ["read"] }));
    expect(f.code).toBe(Code.Unauthenticated);
    expectNoSecrets(f, [secretOf(s.sessionCredential).slice(0, -1)]);
  });
});

// ---- malformed and oversized messages ------------------------------------------------------

const METHOD_PATH = "/capvend.v1.VendingService/StartSession";
/** Bytes that are not a StartSessionRequest: bad wire types, a length past the end, a runaway varint. */
const GARBAGE: [string, Uint8Array][] = [
  ["text", new TextEncoder().encode("this is not protobuf at all")],
  ["a truncated length-delimited field", Uint8Array.from([0x0a, 0x10, 0x61, 0x62, 0x63])],
  ["a varint that never ends", Uint8Array.from(Array.from({ length: 12 }, () => 0xff))],
  ["a deprecated group wire type", Uint8Array.from([0x0b, 0x0a, 0x01, 0x61])],
];

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  trailers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One raw HTTP/2 request on its own connection. */
function h2Post(path: string, headers: Record<string, string>, body: Uint8Array): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(h.url);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, ...headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let resHeaders: RawResponse["headers"] = {};
    let trailers: RawResponse["trailers"] = {};
    req.on("response", (hs) => {
      status = Number(hs[":status"]);
      resHeaders = hs;
    });
    req.on("trailers", (ts) => {
      trailers = ts;
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      resolve({ status, headers: resHeaders, trailers, body: Buffer.concat(chunks) });
    });
    req.on("error", reject);
    req.end(Buffer.from(body));
  });
}

function grpcFrame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

/** gRPC status and message from a raw response (trailers, or headers for trailers-only). */
/** A Connect protocol error body (unary, or the end-of-stream frame's "error"). */
interface ConnectErrorBody {
  code: string;
  message: string;
  details?: { type: string; value: string }[];
}

/** The ErrorInfo in a Connect error body's details, as any Connect client decodes it. */
function connectErrorInfo(body: ConnectErrorBody) {
  const d = body.details?.find((x) => x.type === "google.rpc.ErrorInfo");
  return d && fromBinary(ErrorInfoSchema, Buffer.from(d.value, "base64"));
}

function grpcStatus(r: RawResponse): { status: number; message: string; reason: string | undefined } {
  const pick = (k: string) => (r.trailers[k] ?? r.headers[k]) as string | undefined;
  const info = errorInfoFromStatusDetails(pick("grpc-status-details-bin"));
  return { status: Number(pick("grpc-status")), message: decodeURIComponent(pick("grpc-message") ?? ""), reason: info?.reason };
}

async function serverStillAnswers() {
  const res = await h.orchestrator.startSession(startBase);
  expect(res.sessionId).toMatch(/^ses_/);
}

describe("malformed protobuf", () => {
  // connect-es parses the request before any interceptor runs and reports a binary parse
  // failure as INTERNAL; src/transport/decode-errors.ts turns exactly that into INVALID_ARGUMENT.
  it.each(GARBAGE)("Connect over HTTP/1.1 (fetch): %s → HTTP 400 invalid_argument, and the server still answers", async (_what, garbage) => {
    const before = snapshot();
    const res = await fetch(`${h.url}${METHOD_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/proto", authorization: `Bearer ${ORCHESTRATOR_TOKEN}` },
      body: garbage,
    });
    const body = (await res.json()) as ConnectErrorBody;
    expect(res.status).toBe(400);
    expect(body.code).toBe("invalid_argument");
    expect(body.message).toMatch(/^parse binary: /);
    expect(body.message).not.toContain(ORCHESTRATOR_TOKEN);
    expect(connectErrorInfo(body)?.reason).toBe("INVALID_ARGUMENT");
    expectNothingRecorded(before);
    await serverStillAnswers();
  });

  it.each(GARBAGE)("Connect over HTTP/2: %s → invalid_argument", async (_what, garbage) => {
    const before = snapshot();
    const res = await h2Post(METHOD_PATH, { "content-type": "application/proto", authorization: `Bearer ${ORCHESTRATOR_TOKEN}` }, garbage);
    const body = JSON.parse(res.body.toString("utf8")) as ConnectErrorBody;
    expect(res.status).toBe(400);
    expect(body.code).toBe("invalid_argument");
    expect(body.message).toMatch(/^parse binary: /);
    expect(connectErrorInfo(body)?.reason).toBe("INVALID_ARGUMENT");
    expectNothingRecorded(before);
    await serverStillAnswers();
  });

  it.each(GARBAGE)("gRPC over HTTP/2: %s in a valid frame → grpc-status 3 (INVALID_ARGUMENT)", async (_what, garbage) => {
    const before = snapshot();
    const res = await h2Post(
      METHOD_PATH,
      { "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${ORCHESTRATOR_TOKEN}` },
      grpcFrame(garbage),
    );
    expect(res.status).toBe(200);
    const st = grpcStatus(res);
    expect(st.status).toBe(Code.InvalidArgument);
    expect(st.message).toMatch(/^parse binary: /);
    expect(st.reason).toBe("INVALID_ARGUMENT");
    expectNothingRecorded(before);
    await serverStillAnswers();
  });

  it.each(GARBAGE)("gRPC-Web over HTTP/1.1: %s → grpc-status 3 in the trailer frame", async (_what, garbage) => {
    const res = await fetch(`${h.url}${METHOD_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", authorization: `Bearer ${ORCHESTRATOR_TOKEN}` },
      body: grpcFrame(garbage),
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const trailerStart = bytes.indexOf(0x80);
    const text = new TextDecoder().decode(bytes.subarray(trailerStart + 5));
    expect(res.headers.get("grpc-status") ?? text).toMatch(/grpc-status: ?3\b|^3$/);
    const bin = res.headers.get("grpc-status-details-bin") ?? /grpc-status-details-bin: ?(\S+)\r\n/.exec(text)?.[1];
    expect(errorInfoFromStatusDetails(bin)?.reason).toBe("INVALID_ARGUMENT");
    await serverStillAnswers();
  });

  it.each(GARBAGE)("Connect streaming (WatchSession) over HTTP/1.1: %s → invalid_argument in the end-of-stream frame", async (_what, garbage) => {
    // Streaming requests are decoded after authentication: a valid session credential gets that far.
    const { sessionCredential } = await h.orchestrator.startSession(startBase);
    const res = await fetch(`${h.url}/capvend.v1.VendingService/WatchSession`, {
      method: "POST",
      headers: { "content-type": "application/connect+proto", authorization: `Bearer ${sessionCredential}` },
      body: grpcFrame(garbage),
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes[0]! & 0x02).toBe(0x02);
    const end = JSON.parse(new TextDecoder().decode(bytes.subarray(5))) as { error: ConnectErrorBody };
    expect(end.error.code).toBe("invalid_argument");
    expect(end.error.message).toMatch(/^parse binary: /);
    expect(connectErrorInfo(end.error)?.reason).toBe("INVALID_ARGUMENT");
    await serverStillAnswers();
  });

  it("gRPC over HTTP/2: a frame shorter than its declared length → grpc-status 3 (INVALID_ARGUMENT), server unharmed", async () => {
    const frame = grpcFrame(new Uint8Array(100)).slice(0, 20);
    const res = await h2Post(METHOD_PATH, { "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${ORCHESTRATOR_TOKEN}` }, frame);
    const st = grpcStatus(res);
    expect(st.status).toBe(Code.InvalidArgument);
    expect(st.message).toBe("protocol error: incomplete envelope");
    expect(st.reason).toBe("INVALID_ARGUMENT");
    await serverStillAnswers();
  });

  it("JSON that is not a StartSessionRequest → INVALID_ARGUMENT over Connect", async () => {
    for (const body of ['{"agentId": 5}', "{not json", '{"noSuchField": 1}', "[]"]) {
      const res = await fetch(`${h.url}${METHOD_PATH}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ORCHESTRATOR_TOKEN}` },
        body,
      });
      const out = (await res.json()) as ConnectErrorBody;
      expect(res.status, body).toBe(400);
      expect(out.code, body).toBe("invalid_argument");
      expect(connectErrorInfo(out)?.reason, body).toBe("INVALID_ARGUMENT");
    }
    await serverStillAnswers();
  });
});

describe("oversized messages (> CAPVEND_MAX_MESSAGE_BYTES, 64 KiB)", () => {
  const huge = bytes(70 * 1024);

  for (const kind of PROTOCOLS) {
    it(`${kind}: RESOURCE_EXHAUSTED, not echoed, nothing recorded`, async () => {
      const before = snapshot();
      const f = await failure(rawAuthClient(`Bearer ${ORCHESTRATOR_TOKEN}`, kind).startSession({ ...startBase, agentId: huge }));
      expect(f.code).toBe(Code.ResourceExhausted);
      expect(f.reason).toBe("MESSAGE_TOO_LARGE");
      expect(f.message).not.toContain(huge.slice(0, 1024));
      expectNoSecrets(f, [ORCHESTRATOR_TOKEN]);
      expectNothingRecorded(before);
      await serverStillAnswers();
    });
  }

  it("raw fetch with a 70 KiB body → HTTP 429 resource_exhausted", async () => {
    const body = toBinary(StartSessionRequestSchema, create(StartSessionRequestSchema, { ...startBase, agentId: huge }));
    expect(body.length).toBeGreaterThan(64 * 1024);
    const res = await fetch(`${h.url}${METHOD_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/proto", authorization: `Bearer ${ORCHESTRATOR_TOKEN}` },
      body,
    });
    const out = (await res.json()) as { code: string };
    expect(out.code).toBe("resource_exhausted");
    expect(res.status).toBe(429);
    await serverStillAnswers();
  });

  it("a message just under the limit is read (and refused for its content, not its size)", async () => {
    const f = await failure(h.orchestrator.startSession({ ...startBase, agentId: bytes(60 * 1024) }));
    expect(f.code).toBe(Code.InvalidArgument);
    expect(f.message).toMatch(/^agent_id: must be at most 256 bytes/);
  });
});

describe("nothing sent leaks into logs or audit", () => {
  it("the orchestrator token and session secrets appear in no log line or audit record", async () => {
    const s = await startSalesSession(h);
    await failure(h.client(newSessionCredential(s.sessionId).credential).issueToken({ resource: "calendar", scopes: ["read"] }));
    const text = h.logLines.join("\n") + audit.lines.join("\n");
    expect(text).not.toContain(ORCHESTRATOR_TOKEN);
    expect(text).not.toContain(GATEWAY_TOKEN);
    expect(text).not.toContain(secretOf(s.sessionCredential));
  });
});

// ---- a failing audit sink ------------------------------------------------------------------

describe("when the audit sink fails, nothing is issued (fail closed)", () => {
  let ha: Harness;
  let sink: MemoryAuditSink;
  beforeAll(async () => {
    sink = createMemoryAuditSink({ timeoutMs: 200 });
    ha = await startHarness({ audit: sink });
  });
  afterAll(async () => {
    await ha?.close();
  });

  it("StartSession → UNAVAILABLE, no credential, and the session removed from the store", async () => {
    sink.setMode("fail");
    try {
      const sizeBefore = ha.sessions.size;
      const records = sink.records.length;
      const f = await failure(ha.orchestrator.startSession(startBase));
      expect(f.code).toBe(Code.Unavailable);
      expect(f.reason).toBe("AUDIT_UNAVAILABLE");
      expect(f.message).not.toMatch(/ses_[A-Za-z0-9_-]{22}\./);
      expect(ha.sessions.size).toBe(sizeBefore);
      expect(sink.records.length).toBe(records);
    } finally {
      sink.setMode("ok");
    }
  });

  it("IssueToken → UNAVAILABLE and no token", async () => {
    const s = await startSalesSession(ha);
    sink.setMode("fail");
    try {
      const f = await failure(s.runtime.issueToken({ resource: "calendar", scopes: ["read"] }));
      expect(f.code).toBe(Code.Unavailable);
      expect(f.reason).toBe("AUDIT_UNAVAILABLE");
      expect(f.message).not.toMatch(/eyJ/);
    } finally {
      sink.setMode("ok");
    }
    expect(sink.find({ type: "token.issued", session_id: s.sessionId })).toHaveLength(0);
    // Recovered: the next call works and is audited.
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    expect(sink.find({ type: "token.issued", jti: token!.tokenId })).toHaveLength(1);
  });

  it("Revoke → UNAVAILABLE, yet the revocation stays in force (the safe side)", async () => {
    const s = await startSalesSession(ha);
    const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
    sink.setMode("fail");
    let f: Failure;
    try {
      f = await failure(ha.orchestrator.revoke({ target: { case: "sessionId", value: s.sessionId }, reason: "audit down" }));
    } finally {
      sink.setMode("ok");
    }
    expect(f.code).toBe(Code.Unavailable);
    expect(f.reason).toBe("AUDIT_UNAVAILABLE");
    // Published before the audit append failed: the session is over and its token inactive.
    expect((await ha.client(GATEWAY_TOKEN).introspect({ token: token!.accessToken })).active).toBe(false);
    expect((await failure(s.runtime.issueToken({ resource: "calendar", scopes: ["read"] }))).code).toBe(Code.Unauthenticated);
    // …but no audit record names it (reported: a revocation in force without its record).
    expect(sink.find({ type: "token.revoked", session_id: s.sessionId })).toHaveLength(0);
  });

  it("a hanging sink makes StartSession and IssueToken fail fast with UNAVAILABLE", async () => {
    const s = await startSalesSession(ha);
    sink.setMode("hang");
    try {
      // Refused by the sink's own deadline (200 ms here), not left hanging with it: a hang
      // would fail the test on its timeout.
      const sizeBefore = ha.sessions.size;
      const f1 = await failure(ha.orchestrator.startSession(startBase));
      expect(f1.code).toBe(Code.Unavailable);
      expect(f1.reason).toBe("AUDIT_UNAVAILABLE");
      expect(ha.sessions.size).toBe(sizeBefore);

      const f2 = await failure(s.runtime.issueToken({ resource: "calendar", scopes: ["read"] }));
      expect(f2.code).toBe(Code.Unavailable);
      expect(f2.reason).toBe("AUDIT_UNAVAILABLE");
    } finally {
      sink.setMode("ok");
    }
    // The timed-out appends are not written late when the sink recovers.
    expect(sink.find({ type: "token.issued", session_id: s.sessionId })).toHaveLength(0);
  });
});

/**
 * Replicas as separate processes on one NATS: revocations cross replicas, tokens verify
 * against any replica's JWKS, and a runtime whose replica died resumes on another without
 * missing a revocation.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { reasonOf } from "../../src/errors.js";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { REVOCATION_HEALTH_SERVICE, SESSIONS_HEALTH_SERVICE } from "../../src/backends/nats/names.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { collect, type Collected } from "../helpers/stream-collector.js";

let nats: NatsServer;
let a: ReplicaProcess;
let b: ReplicaProcess;
const streams: Collected[] = [];

const GRANTS = [
  { resource: "salesforce", scopes: ["read"] },
  { resource: "calendar", scopes: ["read"] },
];

beforeAll(async () => {
  nats = await startNatsServer();
  const env = { CAPVEND_KEY_PUBLISH_DELAY: "2s" };
  [a, b] = await Promise.all([startReplica({ id: "replica-a", natsUrl: nats.url, env }), startReplica({ id: "replica-b", natsUrl: nats.url, env })]);
}, 60_000);

afterAll(async () => {
  for (const s of streams) s.stop();
  await Promise.all([a?.cleanup(), b?.cleanup()]);
  await nats?.cleanup();
});

async function sessionOn(r: ReplicaProcess) {
  return r.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: GRANTS });
}

function watchOn(r: ReplicaProcess, credential: string, resumeToken = ""): Collected {
  const runtime = r.client(credential);
  const s = collect((signal) => runtime.watchSession({ grants: GRANTS, resumeToken }, { signal }));
  streams.push(s);
  return s;
}

describe("replicas on one NATS", () => {
  it("report both shared services as serving", async () => {
    for (const r of [a, b]) {
      for (const service of [REVOCATION_HEALTH_SERVICE, SESSIONS_HEALTH_SERVICE]) {
        expect((await r.health.check({ service })).status).toBe(ServingStatus.SERVING);
      }
    }
  });

  it("deliver a token revocation and a session end made on A to the stream held on B", async () => {
    const session = await sessionOn(a);
    const onB = watchOn(b, session.sessionCredential);
    await onB.until(() => onB.of("tokenIssued").length >= 2, "the first tokens on B");
    const jti = onB.of("tokenIssued")[0]!.token!.tokenId;

    await a.orchestrator.revoke({ target: { case: "tokenId", value: jti }, reason: "leaked" });
    await onB.until(() => onB.of("tokensRevoked").length > 0, "tokensRevoked on B");
    expect(onB.of("tokensRevoked")[0]).toMatchObject({ tokenIds: [jti], reason: "leaked" });

    await a.orchestrator.revoke({ target: { case: "sessionId", value: session.sessionId }, reason: "done here" });
    await onB.until(() => onB.of("sessionEnded").length > 0, "sessionEnded on B");
    expect(onB.of("sessionEnded")[0]!.reason).toBe("done here");
  });

  it("mint on A a token that verifies against B's JWKS, and that B's Introspect calls active", async () => {
    const session = await sessionOn(a);
    const { token } = await a.client(session.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] });
    const jwks = jose.createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jose.jwtVerify(token!.accessToken, jwks, { issuer: "https://capvend.local", typ: "at+jwt" });
    expect(payload.jti).toBe(token!.tokenId);
    const ownKids = ((await (await fetch(`${a.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    expect(ownKids).toContain(protectedHeader.kid);
    expect((await b.orchestrator.introspect({ token: token!.accessToken })).active).toBe(true);
  });

  it("rotate A's key on SIGHUP: B knows the new key before A signs with it", async () => {
    const kidOf = (jwt: string) => (jose.decodeProtectedHeader(jwt).kid as string);
    const session = await sessionOn(a);
    const runtime = a.client(session.sessionCredential);
    const before = (await runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!;
    process.kill(a.pid, "SIGHUP");
    // Published first: B's JWKS lists the new key before A signs with it.
    const published = Date.now() + 10_000;
    let line: string | undefined;
    while (!(line = a.logs.find((l) => l.includes("new signing key published"))) && Date.now() < published) await new Promise((r) => setTimeout(r, 20));
    const newKid = (JSON.parse(line!) as { kid: string }).kid;
    const jwksB = (await (await fetch(`${b.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    expect(jwksB.keys.map((k) => k.kid)).toContain(newKid);
    const deadline = Date.now() + 10_000;
    while (!a.logs.some((l) => l.includes("signing key rotated")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(a.logs.some((l) => l.includes("signing key rotated"))).toBe(true);
    // At once, no waiting: B already has the key that now signs on A.
    const after = (await runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!;
    expect(kidOf(after.accessToken)).not.toBe(kidOf(before.accessToken));
    expect((await b.orchestrator.introspect({ token: after.accessToken })).active).toBe(true);
    expect((await b.orchestrator.introspect({ token: before.accessToken })).active).toBe(true);
  });

  it("open one session for concurrent attempts of one request_id on two replicas; every answer's credential works on both", async () => {
    const requestId = randomUUID();
    const req = { agentId: "sales-bot", userId: "alice", grants: GRANTS, requestId };
    const answers = await Promise.all([a, b, a, b].map((r) => r.orchestrator.startSession(req)));
    expect(new Set(answers.map((x) => x.sessionId)).size).toBe(1);
    for (const x of answers) {
      for (const r of [a, b]) {
        const { token } = await r.client(x.sessionCredential).issueToken({ resource: "calendar", scopes: ["read"] });
        expect(token?.resource).toBe("calendar");
      }
    }
    // A different request under the same id is refused on either replica.
    for (const r of [a, b]) {
      const err = await r.orchestrator.startSession({ ...req, userId: "bob" }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.AlreadyExists);
      expect(reasonOf(err)).toBe("REQUEST_ID_REUSED");
    }
  });

  it("let a runtime whose replica was killed resume on another with its resume token, replaying the revocation it missed", async () => {
    const session = await sessionOn(a);
    const onB = watchOn(b, session.sessionCredential);
    await onB.until(() => onB.of("tokenIssued").length >= 2, "the first tokens on B");
    const resumeToken = onB.lastResumeToken();
    expect(resumeToken).not.toBe("");
    const held = onB.of("tokenIssued").map((t) => t.token!.tokenId);

    await b.kill("SIGKILL");
    await onB.until(() => onB.ended, "the stream on B to break");
    // Revoked while the runtime has no stream anywhere.
    await a.orchestrator.revoke({ target: { case: "tokenId", value: held[0]! }, reason: "revoked while away" });

    const onA = watchOn(a, session.sessionCredential, resumeToken);
    await onA.until(() => onA.of("tokensRevoked").length > 0 && onA.of("tokenIssued").length >= 1, "the replayed revocation and fresh tokens on A");
    expect(onA.of("tokensRevoked")[0]).toMatchObject({ tokenIds: [held[0]], reason: "revoked while away" });
    expect(onA.messages[0]!.event.case).toBe("tokensRevoked");
    expect(onA.messages[0]!.resumeToken).not.toBe(resumeToken);
    // A's token resumes on B's successor too: it names a feed position every replica shares.
    expect(onA.messages.at(-1)!.resumeToken).toMatch(/^[A-Za-z0-9_-]{42}$/);
    expect(onA.error).toBeUndefined();
  });
});

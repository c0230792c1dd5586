/**
 * A single replica without NATS survives its own restart: sessions and revocations live in the
 * data directory. The walkthrough (stream, revoke, restart, resume) and a kill -9 in the middle
 * of concurrent StartSession, IssueToken and Revoke, against the real process.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { verifyAuditLog } from "../../src/audit/verify.js";
import { collect } from "../helpers/stream-collector.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";

const started: ReplicaProcess[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((r) => r.cleanup()));
});

async function replica(dataDir?: string): Promise<ReplicaProcess> {
  const r = await startReplica(dataDir ? { dataDir } : {});
  started.push(r);
  return r;
}

async function auditRecords(dataDir: string): Promise<Record<string, unknown>[]> {
  const dir = join(dataDir, "audit");
  const files = (await readdir(dir)).filter((f) => f.endsWith(".jsonl")).sort();
  const out: Record<string, unknown>[] = [];
  for (const f of files) for (const l of (await readFile(join(dir, f), "utf8")).split("\n")) if (l) out.push(JSON.parse(l));
  return out;
}

const salesGrants = [{ resource: "salesforce", scopes: ["read"] }];

describe("restart of a single replica (embedded durable state)", () => {
  it("walkthrough: a session, a stream, a revoked token, a restart, and the stream resumes with the revocation in force", async () => {
    const a = await replica();
    // Two grants: revoking the salesforce token also withdraws the salesforce grant.
    const grants = [...salesGrants, { resource: "calendar", scopes: ["read"] }];
    const s = await a.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants });
    const runtime = a.client(s.sessionCredential);
    const ac = new AbortController();
    const w = collect(runtime.watchSession({ grants }, { signal: ac.signal }));
    const first = await w.first((m) => m.event.case === "tokenIssued" && m.event.value.grantIndex === 0, "the first salesforce token");
    const revokedJti = first.event.case === "tokenIssued" ? first.event.value.token!.tokenId : "";
    const revokedJwt = first.event.case === "tokenIssued" ? first.event.value.token!.accessToken : "";
    await a.orchestrator.revoke({ target: { case: "tokenId", value: revokedJti }, reason: "leaked" });
    const revoked = await w.first((m) => m.event.case === "tokensRevoked", "the revocation");
    expect(revoked.event.case === "tokensRevoked" && revoked.event.value.tokenIds).toContain(revokedJti);
    const resumeToken = w.messages.at(-1)!.resumeToken;
    expect(resumeToken).not.toBe("");

    // Hard stop: no chance to flush anything.
    await a.kill("SIGKILL");
    ac.abort();
    await w.done;

    const b = await replica(a.dataDir);
    // The runtime's credential still works, and its stream resumes where it was.
    const resumed = collect(b.client(s.sessionCredential).watchSession({ grants, resumeToken }));
    const fresh = await resumed.first((m) => m.event.case === "tokenIssued", "a fresh token on the resumed stream");
    expect(fresh.event.case === "tokenIssued" && fresh.event.value.token!.tokenId).not.toBe(revokedJti);
    // The withdrawn grant stays withdrawn across the restart: the resumed stream serves the other one.
    expect(fresh.event.case === "tokenIssued" && fresh.event.value.grantIndex).toBe(1);
    const again = await b.client(s.sessionCredential).issueToken({ resource: "salesforce", scopes: ["read"] }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(again?.code).toBe(Code.PermissionDenied);
    // Revoked stays revoked.
    expect((await b.orchestrator.introspect({ token: revokedJwt })).active).toBe(false);
    const newJwt = fresh.event.case === "tokenIssued" ? fresh.event.value.token!.accessToken : "";
    expect((await b.orchestrator.introspect({ token: newJwt })).active).toBe(true);
    // The pre-restart session can be ended, which ends the resumed stream too.
    await b.orchestrator.endSession({ sessionId: s.sessionId, reason: "done" });
    await resumed.first((m) => m.event.case === "sessionEnded", "the session end");
    await b.kill("SIGTERM");

    const recs = await auditRecords(a.dataDir);
    expect(recs.filter((r) => r.type === "stream.resumed" && r.session_id === s.sessionId)).toHaveLength(1);
    expect(recs.filter((r) => r.type === "session.ended" && r.session_id === s.sessionId)).toHaveLength(1);
    expect(recs.filter((r) => r.type === "key.added")).toHaveLength(1);
    expect(await verifyAuditLog(a.dataDir)).toMatchObject({ ok: true });
  });

  it("kill -9 during concurrent StartSession, IssueToken and Revoke: everything acknowledged survives and the chain verifies", async () => {
    const a = await replica();
    type Live = { id: string; credential: string };
    const sessions: Live[] = [];
    const tokens: { jti: string; jwt: string; sessionId: string }[] = [];
    const revokedTokens: { jti: string; jwt: string }[] = [];
    const revokedSessions: Live[] = [];
    const tokenRevokeAsked = new Set<string>();
    let acked = 0;
    let stop = false;
    const loop = async (i: number) => {
      for (let n = 0; !stop; n++) {
        try {
          const s = await a.orchestrator.startSession({ agentId: "sales-bot", userId: `user-${i}`, grants: salesGrants });
          sessions.push({ id: s.sessionId, credential: s.sessionCredential });
          acked++;
          const { token } = await a.client(s.sessionCredential).issueToken({ resource: "salesforce", scopes: ["read"] });
          tokens.push({ jti: token!.tokenId, jwt: token!.accessToken, sessionId: s.sessionId });
          acked++;
          if (n % 2 === 0) {
            // Asked before the answer: a revocation the kill cut off may have been stored.
            tokenRevokeAsked.add(s.sessionId);
            await a.orchestrator.revoke({ target: { case: "tokenId", value: token!.tokenId } });
            revokedTokens.push({ jti: token!.tokenId, jwt: token!.accessToken });
          } else {
            await a.orchestrator.revoke({ target: { case: "sessionId", value: s.sessionId } });
            revokedSessions.push({ id: s.sessionId, credential: s.sessionCredential });
          }
          acked++;
        } catch {
          return; // the process is gone
        }
      }
    };
    const loops = Array.from({ length: 6 }, (_, i) => loop(i));
    while (acked < 60) await new Promise((r) => setTimeout(r, 5));
    await a.kill("SIGKILL");
    stop = true;
    await Promise.all(loops);

    const b = await replica(a.dataDir);
    const revokedIds = new Set(revokedSessions.map((s) => s.id));
    // Every acknowledged session is there: live ones authenticate, revoked ones are refused as
    // ended. A session whose token revocation was asked may have lost that grant, acknowledged
    // or not; the acknowledged revocations are checked to be in force below.
    for (const s of sessions) {
      try {
        await b.client(s.credential).issueToken({ resource: "salesforce", scopes: ["read"] });
        expect(revokedIds.has(s.id)).toBe(false);
      } catch (err) {
        const e = ConnectError.from(err);
        // Revoked sessions are ended; sessions whose token was revoked lost that grant.
        const withdrawn = tokenRevokeAsked.has(s.id) && e.code === Code.PermissionDenied && e.rawMessage.includes("withdrawn");
        if (!withdrawn) expect(e.code, `${s.id}: ${e.rawMessage}`).toBe(Code.Unauthenticated);
        expect(e.rawMessage).not.toContain("unknown");
      }
    }
    for (const s of revokedSessions) {
      const e = await b.client(s.credential).issueToken({ resource: "salesforce", scopes: ["read"] }).then(() => undefined, (err: unknown) => ConnectError.from(err));
      expect(e?.code).toBe(Code.Unauthenticated);
    }
    // Every acknowledged revocation is in force.
    for (const t of revokedTokens) expect((await b.orchestrator.introspect({ token: t.jwt })).active).toBe(false);
    await b.kill("SIGTERM");

    // Every acknowledged token has its record, and the chain (with its checkpoints) verifies.
    const recs = await auditRecords(a.dataDir);
    const issued = new Set(recs.filter((r) => r.type === "token.issued").map((r) => r.jti));
    for (const t of tokens) expect(issued.has(t.jti), t.jti).toBe(true);
    const started = new Set(recs.filter((r) => r.type === "session.started").map((r) => r.session_id));
    for (const s of sessions) expect(started.has(s.id)).toBe(true);
    expect(tokens.length).toBeGreaterThan(5);
    expect(await verifyAuditLog(a.dataDir)).toMatchObject({ ok: true });
  });
});

/** NATS revocation list behaviour beyond the shared contract: several replicas on one feed, start-up catch-up, bad messages, outages. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Revocation } from "../../src/backends/types.js";
import { revocation } from "../contract/revocation-list.contract.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";
import { encodeRevocation, revocationSubject } from "../../src/backends/nats/revocation-message.js";
import { connectClient, createRevocationStream, openList, type TestClient } from "./fixtures.js";

let server: NatsServer;
let a: TestClient;
let b: TestClient;

beforeAll(async () => {
  server = await startNatsServer();
  a = await connectClient(server.url);
  b = await connectClient(server.url);
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await server?.cleanup();
});

describe("NatsRevocationList", () => {
  it("applies a revocation published by one replica on another, at the same feed position", async () => {
    const feed = await createRevocationStream(a);
    const listA = await openList(a, feed);
    const listB = await openList(b, feed);
    try {
      const onB: Revocation[] = [];
      listB.subscribe((r) => onB.push(r));
      const r = revocation("agent_id", "bot-x");
      await listA.publish(r);
      await waitFor(() => onB.length === 1, "the revocation on B");
      expect(onB[0]).toMatchObject({ id: r.id, kind: "agent_id", value: "bot-x", seq: listA.lastSeq });
      expect(listB.lastSeq).toBe(listA.lastSeq);
      expect(listB.sessionRevocation({ sessionId: "s", agentId: "bot-x", createdAt: r.revokedAt - 1 })?.id).toBe(r.id);
      expect(listB.since(0).map((x) => x.id)).toEqual(listA.since(0).map((x) => x.id));
    } finally {
      await listA.close();
      await listB.close();
    }
  });

  it("replays the whole feed before open resolves, so a new replica starts with every rule", async () => {
    const feed = await createRevocationStream(a);
    const writer = await openList(a, feed);
    const published = [revocation("user_id", "u1"), revocation("resource", "crm"), revocation("token_id", "tok_9")];
    for (const r of published) await writer.publish(r);
    await writer.close();

    const late = await openList(b, feed);
    try {
      expect(late.lastSeq).toBe(3);
      expect(late.size).toBe(3);
      expect(late.since(0).map((r) => r.id)).toEqual(published.map((r) => r.id));
      expect(late.since(0).map((r) => r.seq)).toEqual([1, 2, 3]);
    } finally {
      await late.close();
    }
  });

  it("stores a revocation published twice (a retry) once: the revocation id is the message id", async () => {
    const feed = await createRevocationStream(a);
    const list = await openList(a, feed);
    try {
      const r = revocation("session_id", "ses_retry");
      await list.publish(r);
      await list.publish(r);
      const info = await a.jsm.streams.info(feed.stream);
      expect(info.state.messages).toBe(1);
      expect(list.since(0)).toHaveLength(1);
    } finally {
      await list.close();
    }
  });

  it("skips malformed messages from other publishers without losing its place in the feed", async () => {
    const feed = await createRevocationStream(a);
    const list = await openList(a, feed);
    try {
      await a.js.publish(`${feed.subjectPrefix}.token_id`, "not json");
      const wrongKind = { v: 1, id: "rev_x", kind: "agent_id", value: "bot", reason: "", revoked_at_ms: Date.now(), expires_at_ms: Date.now() + 1000, by: "x" };
      await a.js.publish(`${feed.subjectPrefix}.token_id`, JSON.stringify(wrongKind));
      const good = revocation("token_id", "tok_good");
      await list.publish(good);
      expect(list.lastSeq).toBe(3);
      expect(list.stats().rejected).toBe(2);
      expect(list.since(0).map((r) => r.id)).toEqual([good.id]);
      expect(a.lines.some((l) => l.includes("malformed message on the revocation feed"))).toBe(true);
    } finally {
      await list.close();
    }
  });

  it("tells listeners of its own revocation before publish resolves even when its in-order apply lags, and once only", async () => {
    const feed = await createRevocationStream(a);
    // A bound of 1 ms after the ack: behind a backlog the feed cannot deliver in time.
    const list = await openList(a, feed, { applyTimeoutMs: 1 });
    try {
      const told: Revocation[] = [];
      list.subscribe((r) => told.push(r));
      // Another replica's backlog for this one's consumer to work through first.
      const backlog = Array.from({ length: 1500 }, (_, i) => revocation("token_id", `tok_backlog_${i}`));
      await Promise.all(backlog.map((r) => b.js.publish(revocationSubject(r.kind, feed.subjectPrefix), encodeRevocation(r, "other"), { msgID: r.id })));
      const own = Array.from({ length: 5 }, (_, i) => revocation("session_id", `ses_own_${i}`));
      for (const r of own) {
        await list.publish(r);
        // Told already: in feed order with its position, or (the apply lagged) early without one.
        const seen = told.filter((t) => t.id === r.id);
        expect(seen).toHaveLength(1);
        if (seen[0]!.seq !== undefined) expect(seen[0]!.seq).toBeLessThanOrEqual(list.lastSeq);
        // In force for lookups too.
        expect(list.sessionRevocation({ sessionId: r.value, agentId: "bot", createdAt: r.revokedAt - 1 })?.id).toBe(r.id);
      }
      const end = backlog.length + own.length;
      expect(await list.catchUp(end, 20_000)).toBe(true);
      // Each own rule told exactly once, whichever way; the feed replays all in order with positions.
      for (const r of own) expect(told.filter((t) => t.id === r.id)).toHaveLength(1);
      expect(list.since(0).map((r) => r.seq)).toEqual(Array.from({ length: end }, (_, i) => i + 1));
    } finally {
      await list.close();
    }
  });

  it("counts replayed expired rules as applied without holding them", async () => {
    const feed = await createRevocationStream(a);
    const writer = await openList(a, feed);
    await writer.publish(revocation("agent_id", "old-bot", { revokedAt: Date.now() - 10_000, expiresAt: Date.now() - 5000 }));
    await writer.close();
    const late = await openList(b, feed);
    try {
      expect(late.lastSeq).toBe(1);
      expect(late.size).toBe(0);
    } finally {
      await late.close();
    }
  });

  it("fails publish fast while NATS is down, keeps answering lookups, and follows the feed again after the restart", async () => {
    const feed = await createRevocationStream(a);
    const listA = await openList(a, feed);
    const listB = await openList(b, feed);
    try {
      const before = revocation("token_id", "tok_before");
      await listA.publish(before);
      await waitFor(() => listB.lastSeq === 1, "B to apply the first revocation");

      await server.stop();
      await waitFor(() => !a.link.connected, "A to notice the outage");
      // Fast: refused because the link is down, not after waiting out a deadline ("no answer within").
      const err = await listA.publish(revocation("token_id", "tok_during")).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ errorCode: "nats_unavailable" });
      expect((err as Error).message).toMatch(/NATS is unreachable$/);
      expect(listA.tokenRevocation({ jti: "tok_before", sessionId: "s", agentId: "a", resource: "r", issuedAtSec: 0 })?.id).toBe(before.id);

      await server.start();
      await waitFor(() => a.link.connected && b.link.connected, "both clients to reconnect");
      const after = revocation("agent_id", "bot-after");
      // The stream survived the restart (file storage); B's consumer was lost with the server and is re-created.
      await waitFor(async () => {
        try {
          await listA.publish(after);
          return true;
        } catch {
          return false;
        }
      }, "a publish to succeed after the restart");
      await waitFor(() => listB.since(0).some((r) => r.id === after.id), "B to apply the revocation made after the restart");
      expect(listB.since(0).map((r) => r.id)).toEqual([before.id, after.id]);
    } finally {
      await listA.close();
      await listB.close();
    }
  }, 60_000);
});

/** The durable embedded state beyond the shared contract: what survives a reopen, torn tails, corruption, compaction, permissions. */
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.js";
import { JournalCorruptError } from "../../src/backends/file/append-journal.js";
import { FileRevocationList, REVOCATION_JOURNAL_FILE } from "../../src/backends/file/file-revocation-list.js";
import { FileSessionStore, SESSION_JOURNAL_FILE, STATE_SUBDIR } from "../../src/backends/file/file-session-store.js";
import { revocation } from "../contract/revocation-list.contract.js";
import { sessionRecord } from "../contract/session-store.contract.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "capvend-state-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const openStore = () => FileSessionStore.open({ dataDir: dir, clock: systemClock });
const openList = () => FileRevocationList.open({ dataDir: dir, clock: systemClock });

describe("file session store across reopen", () => {
  it("keeps created, ended and deleted sessions as they were", async () => {
    const s1 = await openStore();
    const a = sessionRecord();
    const b = sessionRecord({ agentId: "other" });
    const c = sessionRecord();
    await s1.create(a);
    await s1.create(b);
    await s1.create(c);
    const ended = await s1.end(b.id, "done", Date.now());
    await s1.delete(c.id);
    await s1.close();

    const s2 = await openStore();
    expect(await s2.get(a.id)).toEqual(a);
    expect(await s2.get(b.id)).toEqual(ended);
    expect(await s2.get(c.id)).toBeUndefined();
    // A pre-restart session can still be ended after it.
    expect((await s2.end(a.id, "later", Date.now()))?.endReason).toBe("later");
    await s2.close();
    const s3 = await openStore();
    expect((await s3.get(a.id))?.endReason).toBe("later");
    await s3.close();
  });

  it("drops sessions that expired while it was down", async () => {
    const s1 = await openStore();
    const gone = sessionRecord({ expiresAt: Date.now() + 50 });
    await s1.create(gone);
    await s1.close();
    await new Promise((r) => setTimeout(r, 80));
    const s2 = await openStore();
    expect(await s2.get(gone.id)).toBeUndefined();
    await s2.close();
  });

  it("cuts a torn tail (never acknowledged) and refuses a damaged line in the middle", async () => {
    const s1 = await openStore();
    const a = sessionRecord();
    await s1.create(a);
    await s1.close();
    const file = join(dir, STATE_SUBDIR, SESSION_JOURNAL_FILE);
    await appendFile(file, '{"op":"create","rec":{"id":"ses_to');
    const s2 = await openStore();
    expect(await s2.get(a.id)).toEqual(a);
    await s2.create(sessionRecord());
    await s2.close();

    const lines = (await readFile(file, "utf8")).split("\n");
    lines[0] = "garbage";
    await writeFile(file, lines.join("\n"));
    await expect(openStore()).rejects.toBeInstanceOf(JournalCorruptError);
  });

  it("compacts the journal to the live sessions once it has doubled, and loses nothing", async () => {
    const s1 = await FileSessionStore.open({ dataDir: dir, clock: systemClock, compactMinBytes: 4096 });
    const keep = sessionRecord();
    await s1.create(keep);
    let peak = 0;
    for (let i = 0; i < 60; i++) {
      const r = sessionRecord();
      await s1.create(r);
      await s1.end(r.id, "churn", Date.now());
      await s1.delete(r.id);
      peak = Math.max(peak, s1.journalBytes);
    }
    await s1.settled();
    expect(s1.journalBytes).toBeLessThan(peak);
    await s1.close();
    const s2 = await openStore();
    expect(await s2.get(keep.id)).toEqual(keep);
    expect(s2.size).toBe(1);
    await s2.close();
  });

  it("makes the state directory 0700 and its journals 0600", async () => {
    const s = await openStore();
    const l = await openList();
    await s.close();
    await l.close();
    expect((await stat(join(dir, STATE_SUBDIR))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, STATE_SUBDIR, SESSION_JOURNAL_FILE))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, STATE_SUBDIR, REVOCATION_JOURNAL_FILE))).mode & 0o777).toBe(0o600);
  });
});

describe("file revocation list across reopen", () => {
  it("keeps every rule with its feed position, and continues the positions", async () => {
    const l1 = await openList();
    const rules = [revocation("token_id", "tok_1"), revocation("user_id", "carol"), revocation("session_id", "ses_x")];
    for (const r of rules) await l1.publish(r);
    const before = l1.since(0);
    await l1.close();

    const l2 = await openList();
    expect(l2.since(0)).toEqual(before);
    expect(l2.lastSeq).toBe(before.at(-1)!.seq);
    expect(l2.tokenRevocation({ jti: "tok_1", sessionId: "s", agentId: "a", resource: "r", issuedAtSec: 0 })?.id).toBe(rules[0]!.id);
    expect(l2.sessionRevocation({ sessionId: "ses_9", agentId: "a", userId: "carol", createdAt: 0 })?.id).toBe(rules[1]!.id);
    const next = revocation("agent_id", "bot");
    await l2.publish(next);
    expect(l2.since(before.at(-1)!.seq!).map((r) => r.id)).toEqual([next.id]);
    await l2.close();
  });

  it("keeps the feed position when every rule has expired", async () => {
    const l1 = await openList();
    await l1.publish(revocation("token_id", "tok_short", { expiresAt: Date.now() + 30 }));
    await l1.publish(revocation("token_id", "tok_short2", { expiresAt: Date.now() + 30 }));
    const seq = l1.lastSeq;
    await l1.close();
    await new Promise((r) => setTimeout(r, 60));
    const l2 = await openList();
    expect(l2.size).toBe(0);
    expect(l2.lastSeq).toBe(seq);
    await l2.publish(revocation("token_id", "tok_3"));
    expect(l2.lastSeq).toBe(seq + 1);
    await l2.close();
  });

  it("applies concurrent publishes in feed order, each once", async () => {
    const l = await openList();
    const seen: number[] = [];
    l.subscribe((r) => seen.push(r.seq!));
    await Promise.all(Array.from({ length: 50 }, (_, i) => l.publish(revocation("token_id", `tok_c${i}`))));
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    await l.close();
    const l2 = await openList();
    expect(l2.since(0)).toHaveLength(50);
    await l2.close();
  });
});

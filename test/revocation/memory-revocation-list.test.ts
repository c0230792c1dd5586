import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import { type Revocation, REVOCATION_PRUNE_INTERVAL_MS, type RevocationKind } from "../../src/backends/types.js";

const MIN = 60_000;

let lists: MemoryRevocationList[] = [];
function setup() {
  const clock = new ManualClock();
  const list = new MemoryRevocationList(clock);
  lists.push(list);
  let n = 0;
  const rev = (kind: RevocationKind, value: string, ttlMs = 10 * MIN, extra: Partial<Revocation> = {}): Revocation => ({
    id: `rev_${++n}`,
    kind,
    value,
    reason: "test",
    revokedAt: clock.now(),
    expiresAt: clock.now() + ttlMs,
    by: "orchestrator:dev",
    ...extra,
  });
  return { clock, list, rev };
}

afterEach(async () => {
  for (const l of lists) await l.close();
  lists = [];
});

// What every revocation list does (feed order, replay, listeners, lookups) is the contract in
// test/contract/; these are what only the memory list has: its numbering, listener count,
// catchUp on the injected clock, pruning and timer.
describe("MemoryRevocationList", () => {
  it("numbers revocations 1, 2, 3… in publish order; lastSeq follows", async () => {
    const { list, rev } = setup();
    expect(list.lastSeq).toBe(0);
    await list.publish(rev("token_id", "tok_a"));
    await list.publish(rev("agent_id", "bot"));
    await list.publish(rev("token_id", "tok_a")); // the same target again still gets a seq
    expect(list.lastSeq).toBe(3);
    expect(list.since(0).map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it("does not mutate the caller's object when assigning seq", async () => {
    const { list, rev } = setup();
    const r = rev("resource", "calendar");
    await list.publish(r);
    expect(r.seq).toBeUndefined();
    expect(list.since(0)[0]).toMatchObject({ id: r.id, seq: 1 });
  });

  it("tells every subscriber, in order, with the seq set; unsubscribe stops it", async () => {
    const { list, rev } = setup();
    const a: number[] = [];
    const b: number[] = [];
    const offA = list.subscribe((r) => a.push(r.seq!));
    list.subscribe((r) => b.push(r.seq!));
    expect(list.listenerCount).toBe(2);
    await list.publish(rev("token_id", "t1"));
    await list.publish(rev("token_id", "t2"));
    offA();
    expect(list.listenerCount).toBe(1);
    await list.publish(rev("token_id", "t3"));
    expect(a).toEqual([1, 2]);
    expect(b).toEqual([1, 2, 3]);
  });

  it("waits catchUp's timeout on the injected clock, and answers true if a publish reaches the position first", async () => {
    const { clock, list, rev } = setup();
    let answer: boolean | undefined;
    void list.catchUp(1, 1000).then((ok) => (answer = ok));
    clock.advance(999);
    await Promise.resolve();
    expect(answer).toBeUndefined();
    clock.advance(1);
    await Promise.resolve();
    expect(answer).toBe(false);
    const reached = list.catchUp(1, 1000);
    await list.publish(rev("agent_id", "bot"));
    expect(await reached).toBe(true);
  });

  it("a subscriber that unsubscribes itself during delivery does not stop the others", async () => {
    const { list, rev } = setup();
    const seen: string[] = [];
    const off = list.subscribe(() => {
      seen.push("self-removing");
      off();
    });
    list.subscribe(() => seen.push("other"));
    await list.publish(rev("agent_id", "bot"));
    await list.publish(rev("agent_id", "bot2"));
    expect(seen).toEqual(["self-removing", "other", "other"]);
  });

  it("memory stays bounded: rules and the replay log are pruned once they expire", async () => {
    const { clock, list, rev } = setup();
    // 100 one-minute token rules, then 100 more revocations of a single long-lived target.
    for (let i = 0; i < 100; i++) await list.publish(rev("token_id", `tok_${i}`, MIN));
    for (let i = 0; i < 100; i++) await list.publish(rev("agent_id", "bot", 60 * MIN));
    expect(list.size).toBe(101); // the index keeps one rule for "bot"
    expect(list.since(0)).toHaveLength(200);

    // Not yet: the one-minute rules expire at +60 s, pruning runs every 30 s.
    clock.advance(REVOCATION_PRUNE_INTERVAL_MS);
    expect(list.size).toBe(101);
    clock.advance(REVOCATION_PRUNE_INTERVAL_MS);
    expect(list.size).toBe(1);
    expect(list.since(0).every((r) => r.kind === "agent_id")).toBe(true);
    expect(list.since(0)).toHaveLength(100);
    // The feed position survives pruning, so resumes keep working.
    expect(list.lastSeq).toBe(200);
    expect(list.since(150).map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => 151 + i));

    clock.advance(60 * MIN);
    expect(list.size).toBe(0);
    expect(list.since(0)).toEqual([]);
    // Next revocation continues the numbering.
    await list.publish(rev("token_id", "late"));
    expect(list.since(0).map((r) => r.seq)).toEqual([201]);
  });

  it("an expired rule stops matching once pruned", async () => {
    const { clock, list, rev } = setup();
    const createdAt = clock.now();
    await list.publish(rev("session_id", "ses_x", MIN));
    const subject = { sessionId: "ses_x", agentId: "a", createdAt };
    expect(list.sessionRevocation(subject)).toBeDefined();
    clock.advance(2 * MIN);
    expect(list.sessionRevocation(subject)).toBeUndefined();
  });

  it("keeps exactly one prune timer, and none after close; publish after close fails", async () => {
    const { clock, list, rev } = setup();
    expect(clock.pendingTimers).toBe(1);
    clock.advance(5 * REVOCATION_PRUNE_INTERVAL_MS);
    expect(clock.pendingTimers).toBe(1);
    const seen: Revocation[] = [];
    list.subscribe((r) => seen.push(r));
    await list.close();
    expect(clock.pendingTimers).toBe(0);
    expect(list.listenerCount).toBe(0);
    await expect(list.publish(rev("token_id", "x"))).rejects.toThrow(/closed/);
    expect(seen).toEqual([]);
    expect(list.lastSeq).toBe(0);
  });
});

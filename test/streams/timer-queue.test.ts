import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { TimerQueue } from "../../src/streams/timer-queue.js";

describe("TimerQueue", () => {
  it("fires in time order on one underlying timer", () => {
    const clock = new ManualClock(0);
    const q = new TimerQueue(clock);
    const fired: number[] = [];
    for (const at of [50, 10, 30, 20, 40]) q.schedule(at, () => fired.push(at));
    expect(clock.pendingTimers).toBe(1);
    clock.advance(25);
    expect(fired).toEqual([10, 20]);
    clock.advance(100);
    expect(fired).toEqual([10, 20, 30, 40, 50]);
    expect(q.size).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it("cancel prevents firing and releases the clock timer when nothing is left", () => {
    const clock = new ManualClock(0);
    const q = new TimerQueue(clock);
    let fired = 0;
    const a = q.schedule(10, () => fired++);
    const b = q.schedule(20, () => fired++);
    q.cancel(a);
    q.cancel(a);
    expect(q.size).toBe(1);
    q.cancel(b);
    expect(q.size).toBe(0);
    expect(q.armed).toBe(false);
    expect(clock.pendingTimers).toBe(0);
    clock.advance(100);
    expect(fired).toBe(0);
  });

  it("re-arms earlier when an earlier entry arrives", () => {
    const clock = new ManualClock(0);
    const q = new TimerQueue(clock);
    const fired: string[] = [];
    q.schedule(1000, () => fired.push("late"));
    q.schedule(5, () => fired.push("early"));
    clock.advance(5);
    expect(fired).toEqual(["early"]);
    expect(clock.pendingTimers).toBe(1);
  });

  it("a callback that schedules and one that throws do not disturb the rest", () => {
    const clock = new ManualClock(0);
    const q = new TimerQueue(clock);
    const fired: number[] = [];
    q.schedule(10, () => {
      fired.push(10);
      q.schedule(15, () => fired.push(15));
    });
    q.schedule(12, () => {
      throw new Error("boom");
    });
    q.schedule(20, () => fired.push(20));
    clock.advance(30);
    expect(fired).toEqual([10, 15, 20]);
  });

  it("keeps size exact through heavy cancel churn (compaction)", () => {
    const clock = new ManualClock(0);
    const q = new TimerQueue(clock);
    const live = new Set<number>();
    const handles = [];
    const fired = new Set<number>();
    for (let i = 0; i < 10_000; i++) handles.push(q.schedule(1000 + (i % 997), () => { live.delete(i); fired.add(i); }));
    for (let i = 0; i < 10_000; i++) live.add(i);
    for (let i = 0; i < 10_000; i += 3) {
      q.cancel(handles[i]);
      live.delete(i);
    }
    expect(q.size).toBe(live.size);
    expect(live.size).toBe(6666);
    clock.advance(5000);
    // Every live entry fired; no cancelled one did.
    expect(live.size).toBe(0);
    expect(fired.size).toBe(6666);
    for (let i = 0; i < 10_000; i += 3) expect(fired.has(i)).toBe(false);
    expect(q.size).toBe(0);
  });
});

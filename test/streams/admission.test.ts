import { describe, expect, it } from "vitest";
import { Admission } from "../../src/streams/admission.js";

describe("Admission", () => {
  it("admits up to its limit at once and the rest in arrival order", async () => {
    const a = new Admission(2);
    const never = new AbortController().signal;
    const r1 = await a.acquire(never);
    const r2 = await a.acquire(never);
    expect(a.active).toBe(2);
    const order: number[] = [];
    const p3 = a.acquire(never).then((r) => (order.push(3), r));
    const p4 = a.acquire(never).then((r) => (order.push(4), r));
    expect(a.waiting).toBe(2);
    r1!();
    const r3 = await p3;
    expect(order).toEqual([3]);
    r2!();
    const r4 = await p4;
    expect(order).toEqual([3, 4]);
    expect(a.active).toBe(2);
    r3!();
    r4!();
    // Releasing twice is harmless.
    r4!();
    expect(a.active).toBe(0);
  });

  it("drops a waiter whose caller went away, and admits the next one", async () => {
    const a = new Admission(1);
    const held = await a.acquire(new AbortController().signal);
    const gone = new AbortController();
    const pGone = a.acquire(gone.signal);
    const pNext = a.acquire(new AbortController().signal);
    gone.abort();
    await expect(pGone).resolves.toBeUndefined();
    held!();
    const next = await pNext;
    expect(next).toBeTypeOf("function");
    expect(a.active).toBe(1);
    next!();
    expect(a.active).toBe(0);
  });

  it("refuses a limit below one", () => {
    expect(() => new Admission(0)).toThrow(RangeError);
  });
});

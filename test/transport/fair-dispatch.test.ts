import { describe, expect, it } from "vitest";
import { createFairDispatch } from "../../src/transport/fair-dispatch.js";

const turn = () => new Promise((r) => setImmediate(r));

describe("fair dispatch", () => {
  it("runs a call at once while the turn has time left", () => {
    const d = createFairDispatch(1000);
    const ran: string[] = [];
    d.run({}, () => ran.push("a"));
    d.run({}, () => ran.push("b"));
    expect(ran).toEqual(["a", "b"]);
    expect(d.waiting).toBe(0);
  });

  it("past the slice, takes the waiting calls one connection at a time, each connection's in order", async () => {
    // A zero slice: the first call of a turn runs, every later one waits.
    const d = createFairDispatch(0);
    const a = {};
    const b = {};
    const ran: string[] = [];
    d.run(a, () => ran.push("a1"));
    d.run(a, () => ran.push("a2"));
    d.run(a, () => ran.push("a3"));
    d.run(b, () => ran.push("b1"));
    d.run(a, () => ran.push("a4"));
    d.run(b, () => ran.push("b2"));
    expect(ran).toEqual(["a1"]);
    expect(d.waiting).toBe(5);
    for (let i = 0; i < 10 && d.waiting > 0; i++) await turn();
    // b1 did not wait behind all of a's burst.
    expect(ran).toEqual(["a1", "a2", "b1", "a3", "b2", "a4"]);
  });

  it("keeps the turns going when a waiting call throws", async () => {
    const d = createFairDispatch(0);
    const c = {};
    const ran: string[] = [];
    d.run(c, () => ran.push("first"));
    d.run(c, () => {
      throw new Error("boom");
    });
    d.run(c, () => ran.push("third"));
    for (let i = 0; i < 10 && d.waiting > 0; i++) await turn();
    expect(ran).toEqual(["first", "third"]);
  });
});

/**
 * The iterator objects a server stream's messages pass through instead of async generators:
 * they must end, fail and clean up exactly as the generators they replace.
 */
import { describe, expect, it } from "vitest";
import { afterSetup, relay } from "../../src/stream-relay.js";

/** A source that records what was asked of it; `fail` makes its nth next() reject. */
function source(values: number[], fail?: { at: number; error: Error }) {
  const calls: string[] = [];
  let i = 0;
  const iterable: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      next: () => {
        calls.push("next");
        if (fail && i === fail.at) return Promise.reject(fail.error);
        return Promise.resolve(i < values.length ? { done: false, value: values[i++]! } : { done: true, value: undefined });
      },
      return: (v?: unknown) => {
        calls.push("return");
        return Promise.resolve({ done: true, value: v as number });
      },
    }),
  };
  return { iterable, calls };
}

async function collect<T>(it: AsyncIterable<T>): Promise<{ values: T[]; error?: unknown }> {
  const values: T[] = [];
  try {
    for await (const v of it) values.push(v);
    return { values };
  } catch (error) {
    return { values, error };
  }
}

describe("relay", () => {
  it("passes every message on, shows each to the value hook, and ends with the source", async () => {
    const s = source([1, 2, 3]);
    const seen: number[] = [];
    expect(await collect(relay(s.iterable, { value: (v) => seen.push(v) }))).toEqual({ values: [1, 2, 3] });
    expect(seen).toEqual([1, 2, 3]);
  });

  it("fails with what the error hook returns, after the messages before the failure", async () => {
    const s = source([1, 2], { at: 2, error: new Error("inner") });
    const r = await collect(relay(s.iterable, { error: (err) => new Error(`wrapped: ${(err as Error).message}`) }));
    expect(r.values).toEqual([1, 2]);
    expect((r.error as Error).message).toBe("wrapped: inner");
  });

  it("waits for an async error hook before failing", async () => {
    const s = source([], { at: 0, error: new Error("refused") });
    const order: string[] = [];
    const r = await collect(
      relay(s.iterable, {
        error: async (err) => {
          await new Promise((resolve) => setTimeout(resolve, 5));
          order.push("recorded");
          return err;
        },
      }),
    );
    order.push("failed");
    expect((r.error as Error).message).toBe("refused");
    expect(order).toEqual(["recorded", "failed"]);
  });

  it("passes return() to the source at once, as a for-await break does", async () => {
    const s = source([1, 2, 3]);
    for await (const v of relay(s.iterable, {})) if (v === 1) break;
    expect(s.calls).toEqual(["next", "return"]);
  });
});

describe("afterSetup", () => {
  it("runs setup at the first read, then reads the stream it gave", async () => {
    const s = source([7, 8]);
    let setups = 0;
    const it = afterSetup(async () => {
      setups++;
      return s.iterable;
    });
    expect(setups).toBe(0);
    expect(await collect(it)).toEqual({ values: [7, 8] });
    expect(setups).toBe(1);
  });

  it("fails its first read with the setup's error, then is done", async () => {
    const iterator = afterSetup<number>(() => Promise.reject(new Error("STREAM_LIMIT")))[Symbol.asyncIterator]();
    await expect(iterator.next()).rejects.toThrow("STREAM_LIMIT");
    await expect(iterator.next()).resolves.toEqual({ done: true, value: undefined });
  });

  it("ends at once when setup gives no stream (the caller left while waiting)", async () => {
    expect(await collect(afterSetup<number>(async () => undefined))).toEqual({ values: [] });
  });

  it("ends the stream setup gives when return() came while setup ran, and reads nothing from it", async () => {
    const s = source([1]);
    let finish!: () => void;
    const iterator = afterSetup(() => new Promise<AsyncIterable<number>>((resolve) => (finish = () => resolve(s.iterable))))[Symbol.asyncIterator]();
    const first = iterator.next();
    const ended = iterator.return!();
    finish();
    await expect(ended).resolves.toEqual({ done: true, value: undefined });
    await expect(first).resolves.toEqual({ done: true, value: undefined });
    expect(s.calls).toEqual(["return"]);
  });

  it("return() before the first read runs no setup", async () => {
    let setups = 0;
    const iterator = afterSetup(async () => {
      setups++;
      return source([1]).iterable;
    })[Symbol.asyncIterator]();
    await iterator.return!();
    await expect(iterator.next()).resolves.toEqual({ done: true, value: undefined });
    expect(setups).toBe(0);
  });
});

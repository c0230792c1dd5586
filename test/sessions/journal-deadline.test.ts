/**
 * The journal's deadline bounds the disk, not the process: time spent queued behind steps that
 * progress, or busy elsewhere while a write completes, does not fail an append.
 */
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openJournal } from "../../src/backends/file/append-journal.js";

const TIMEOUT_MS = 50;

/** Keeps the event loop busy for `ms`, as a burst of other work would. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "capvend-journal-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe("journal deadline", () => {
  it("does not fail an append whose write completed while the process was busy", async () => {
    const path = join(dir, "j.jsonl");
    const { journal } = await openJournal({ path, durability: "fsync", timeoutMs: TIMEOUT_MS });
    const appended = journal.append({ n: 1 });
    // Let the write start, then hold the event loop past the deadline while it completes.
    await Promise.resolve();
    busy(4 * TIMEOUT_MS);
    await expect(appended).resolves.toBeUndefined();
    await journal.close();
    expect(await readFile(path, "utf8")).toBe('{"n":1}\n');
  });

  it("does not count the time an append waited behind a busy turn before its write began", async () => {
    const path = join(dir, "j.jsonl");
    const { journal } = await openJournal({ path, durability: "fsync", timeoutMs: TIMEOUT_MS });
    const appended = [journal.append({ n: 1 }), journal.append({ n: 2 })];
    busy(4 * TIMEOUT_MS);
    appended.push(journal.append({ n: 3 }));
    await expect(Promise.all(appended)).resolves.toEqual([undefined, undefined, undefined]);
    await journal.close();
    expect(await readFile(path, "utf8")).toBe('{"n":1}\n{"n":2}\n{"n":3}\n');
  });

  it("keeps every entry of a long queue of appends that each progress", async () => {
    const path = join(dir, "j.jsonl");
    const { journal } = await openJournal({ path, durability: "fsync", timeoutMs: TIMEOUT_MS });
    const appended: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      appended.push(journal.append({ n: i }));
      if (i % 20 === 0) busy(TIMEOUT_MS);
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    const results = await Promise.allSettled(appended);
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    await journal.close();
    expect((await readFile(path, "utf8")).trim().split("\n")).toHaveLength(200);
  });
});

describe("journal deadline on a stuck disk", () => {
  it("fails the stuck write's caller and those queued behind it, and later ones once it is still stuck", async () => {
    const path = join(dir, "j.jsonl");
    let hang = false;
    // The stuck write's completion, held until the test lets the disk come back.
    let unstick: (() => void) | undefined;
    const { journal } = await openJournal({
      path,
      durability: "fsync",
      timeoutMs: TIMEOUT_MS,
      async openAppend(p) {
        const fh = await open(p, "a+", 0o600);
        const appendFile = fh.appendFile.bind(fh);
        fh.appendFile = (data, options) => {
          if (!hang) return appendFile(data, options);
          return new Promise<void>((resolve, reject) => {
            unstick = () => appendFile(data, options).then(resolve, reject);
          });
        };
        return fh;
      },
    });
    await journal.append({ n: 0 });
    hang = true;
    const stuck = journal.append({ n: 1 });
    const queued = journal.append({ n: 2 });
    await expect(stuck).rejects.toThrow(`write did not complete within ${TIMEOUT_MS} ms`);
    await expect(queued).rejects.toThrow(`write did not complete within ${TIMEOUT_MS} ms`);
    const later = journal.append({ n: 3 });
    await expect(later).rejects.toThrow(`write did not complete within ${TIMEOUT_MS} ms`);

    // The disk comes back: the rejected entries still land (over-reported, never lost).
    hang = false;
    unstick!();
    await journal.close();
    const lines = (await readFile(path, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { n: number });
    expect(lines.map((l) => l.n)).toEqual([0, 1, 2, 3]);
  });
});

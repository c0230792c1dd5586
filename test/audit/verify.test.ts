import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { sealRecord, sha256Hex } from "../../src/audit/chain.js";
import { createFileAuditSink } from "../../src/audit/file-sink.js";
import { verifyAuditLog } from "../../src/audit/verify.js";
import { fileLines, sampleEvent, segmentFiles, tempDataDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDataDir());
});
afterEach(() => cleanup());

async function seed(n: number, maxFileBytes?: number): Promise<string[]> {
  const sink = await createFileAuditSink({ dir, replica: "r1", durability: "write", ...(maxFileBytes ? { maxFileBytes } : {}) });
  for (let i = 0; i < n; i++) await sink.append(sampleEvent(i));
  await sink.close();
  return segmentFiles(dir);
}

async function rewrite(file: string, edit: (lines: string[]) => string[]): Promise<void> {
  await writeFile(file, edit(await fileLines(file)).join("\n") + "\n");
}

describe("verifyAuditLog", () => {
  it("accepts an intact log, given the data dir, the audit dir or the first segment", async () => {
    const [file] = await seed(10);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 10, files: 1 });
    expect(await verifyAuditLog(join(dir, "audit"))).toMatchObject({ ok: true, records: 10, files: 1 });
    expect(await verifyAuditLog(file!)).toMatchObject({ ok: true, records: 10, files: 1 });
  });

  it("reports an edited record at that record", async () => {
    const [file] = await seed(10);
    await rewrite(file!, (l) => {
      l[4] = l[4]!.replace('"decision":"allow"', '"decision":"deny"');
      return l;
    });
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, records: 4, file, line: 5, seq: 5, code: "hash_mismatch" });
  });

  it("reports a whitespace-only edit at that record", async () => {
    const [file] = await seed(10);
    await rewrite(file!, (l) => {
      l[6] = l[6]!.replace('"decision":', '"decision": ');
      return l;
    });
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, records: 6, file, line: 7, seq: 7, code: "not_canonical" });
  });

  it("reports an edit whose hash was recomputed at the next record, through prev", async () => {
    const [file] = await seed(10);
    await rewrite(file!, (l) => {
      const rec = JSON.parse(l[4]!);
      const { seq, prev, hash: _hash, ...body } = rec;
      body.decision = "deny";
      l[4] = sealRecord(prev, seq, body).line;
      return l;
    });
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, records: 5, file, line: 6, seq: 6, code: "prev_mismatch" });
  });

  it("reports a deleted record where it was", async () => {
    const [file] = await seed(10);
    await rewrite(file!, (l) => l.filter((_, i) => i !== 4));
    const r = await verifyAuditLog(dir);
    expect(r).toMatchObject({ ok: false, records: 4, file, line: 5, seq: 6, code: "seq_mismatch" });
    expect(r.ok === false && r.reason).toMatch(/expected seq 5, found 6/);
  });

  it("reports an inserted copy of an earlier record at the insertion", async () => {
    const [file] = await seed(10);
    await rewrite(file!, (l) => [...l.slice(0, 5), l[2]!, ...l.slice(5)]);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, records: 5, file, line: 6, seq: 3, code: "seq_mismatch" });
  });

  it("reports an inserted forged record with a fresh seq at the insertion", async () => {
    const [file] = await seed(10);
    await rewrite(file!, (l) => {
      const forged = sealRecord(sha256Hex(l[4]!), 99, { type: "token.revoked", jti: "tok_x", time: "2026-01-01T00:00:00.000Z", replica: "r1" });
      return [...l.slice(0, 5), forged.line, ...l.slice(5)];
    });
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, records: 5, line: 6, seq: 99, code: "seq_mismatch" });
  });

  it("reports two swapped records at the first of them", async () => {
    const [file] = await seed(10);
    await rewrite(file!, (l) => {
      [l[3], l[4]] = [l[4]!, l[3]!];
      return l;
    });
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, records: 3, file, line: 4, seq: 5, code: "seq_mismatch" });
  });

  it("reports a torn final line", async () => {
    const [file] = await seed(5);
    const text = await readFile(file!, "utf8");
    await writeFile(file!, text.slice(0, text.length - 40));
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, records: 4, file, line: 5, code: "torn" });
  });

  it("reports a line that is not JSON", async () => {
    const [file] = await seed(5);
    await rewrite(file!, (l) => {
      l[1] = "garbage";
      return l;
    });
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, records: 1, file, line: 2, code: "malformed" });
  });

  it("checks the chain across rotated files and names the file that broke", async () => {
    const files = await seed(40, 1_500);
    expect(files.length).toBeGreaterThan(2);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 40, files: files.length });

    const firstCount = (await fileLines(files[0]!)).length;
    await rewrite(files[1]!, (l) => {
      l[1] = l[1]!.replace('"resource":"salesforce"', '"resource":"github"');
      return l;
    });
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, file: files[1], line: 2, seq: firstCount + 2, records: firstCount + 1 });
  });

  it("notices a whole missing segment at the first record after it", async () => {
    const files = await seed(40, 1_500);
    const firstCount = (await fileLines(files[0]!)).length;
    const secondCount = (await fileLines(files[1]!)).length;
    await rm(files[1]!);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, file: files[1], line: 0, code: "segment_missing" });
    // Renumbering the rest down to close the gap: the chain shows it at the first record after.
    for (let i = 2; i < files.length; i++) await rename(files[i]!, files[i - 1]!);
    expect(await verifyAuditLog(dir, { head: false })).toMatchObject({ ok: false, file: files[1], line: 1, seq: firstCount + secondCount + 1, code: "seq_mismatch" });
  });

  it("verifies one later segment anchored on the one before it", async () => {
    const files = await seed(40, 1_500);
    const second = await fileLines(files[1]!);
    expect(await verifyAuditLog(files[1]!)).toMatchObject({ ok: true, records: second.length, files: 1 });
    await rewrite(files[0]!, (l) => {
      l[l.length - 1] = l[l.length - 1]!.replace('"decision":"allow"', '"decision":"deny"');
      return l;
    });
    // The anchor record itself is now invalid, so the segment is checked on its own...
    expect(await verifyAuditLog(files[1]!)).toMatchObject({ ok: true });
    // ...while the whole log shows the edit.
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, file: files[0], code: "hash_mismatch" });
  });

  it("says so when there is no log at the path", async () => {
    expect(await verifyAuditLog(join(dir, "nope"))).toMatchObject({ ok: false, code: "not_found", records: 0 });
  });
});

/**
 * Tampering by someone with file-system access, each case detected and naming the first
 * missing or broken record; a restart after truncation refuses, and the operator's flag
 * records the gap.
 */
import { chmod, copyFile, mkdir, readFile, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GENESIS_PREV, sealRecord } from "../../src/audit/chain.js";
import { headFileOf, readHead, signCheckpoint, writeHead } from "../../src/audit/checkpoint.js";
import { auditCommand } from "../../src/audit/cli.js";
import { createFileAuditSink } from "../../src/audit/file-sink.js";
import { AUDIT_PUBLIC_KEY_FILE, openAuditSigner } from "../../src/audit/signing-key.js";
import { verifyAuditLog } from "../../src/audit/verify.js";
import { fileLines, sampleEvent, segmentFiles, tempDataDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDataDir());
});
afterEach(() => cleanup());

const open = (extra: Parameters<typeof createFileAuditSink>[0] extends infer O ? Partial<O> : never = {}) =>
  createFileAuditSink({ dir, replica: "r1", durability: "write", maxFileBytes: 2_000, ...extra });

/** 40 records over several segments, closed (so the head file covers all of them). */
async function seed(n = 41): Promise<string[]> {
  const sink = await open();
  for (let i = 0; i < n; i++) await sink.append(sampleEvent(i));
  await sink.close();
  const files = await segmentFiles(dir);
  if (n >= 41) expect(files.length).toBeGreaterThanOrEqual(3);
  expect((await readHead(dir))?.seq).toBe(n);
  return files;
}

/** Deletes the last `n` records, from the newest segment back (a segment may be left empty). */
async function cutTail(files: string[], n: number): Promise<void> {
  for (let i = files.length - 1; n > 0; i--) {
    const lines = await fileLines(files[i]!);
    const keep = Math.max(0, lines.length - n);
    n -= lines.length - keep;
    await writeFile(files[i]!, keep === 0 ? "" : lines.slice(0, keep).join("\n") + "\n");
  }
}

const lineCount = async (files: string[]) => (await Promise.all(files.map(fileLines))).reduce((n, l) => n + l.length, 0);

describe("audit verify against the latest checkpoint", () => {
  it("passes an intact log and names the checkpoint it matched", async () => {
    await seed();
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 41, checkpoints: [{ seq: 41, source: "head" }] });
  });

  it("detects deleted tail records, naming the first missing one", async () => {
    const files = await seed();
    await cutTail(files, 2);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, code: "records_missing", seq: 40, records: 39 });
  });

  it("detects a deleted newest segment", async () => {
    const files = await seed();
    const kept = await lineCount(files.slice(0, -1));
    await rm(files.at(-1)!);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, code: "records_missing", seq: kept + 1 });
  });

  it("detects a missing audit directory", async () => {
    await seed();
    await rm(join(dir, "audit"), { recursive: true });
    const r = await verifyAuditLog(dir);
    expect(r).toMatchObject({ ok: false, code: "records_missing", seq: 1 });
    expect(r.ok === false && r.reason).toMatch(/records 1 to 41/);
  });

  it("detects segments renumbered with a gap, and renumbered without one", async () => {
    const files = await seed();
    await rename(files.at(-1)!, join(dir, "audit", "audit-000099.jsonl"));
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, code: "segment_missing", file: files.at(-1) });
  });

  it("detects a chain rebuilt without one user's records: against the head, and against an anchor when the head was re-signed too", async () => {
    const files = await seed();
    const anchor = join(dir, "..", `anchor-${Date.now()}.json`);
    await copyFile(headFileOf(dir), anchor);
    // The attacker drops user-1's records and re-chains the rest from the genesis.
    const records = (await Promise.all(files.map(fileLines))).flat().map((l) => JSON.parse(l));
    let prev = GENESIS_PREV;
    const out: string[] = [];
    for (const { seq: _s, prev: _p, hash: _h, ...body } of records.filter((r) => r.user_id !== "user-1")) {
      const sealed = sealRecord(prev, out.length + 1, body);
      out.push(sealed.line);
      prev = sealed.lineHash;
    }
    for (const f of files) await rm(f);
    await writeFile(files[0]!, out.join("\n") + "\n");
    expect((await verifyAuditLog(dir)).ok).toBe(false);
    // …and re-signs the head with the audit key it found on disk: only the anchor catches it.
    const { signer } = await openAuditSigner(dir);
    await writeHead(dir, signCheckpoint(signer, { seq: out.length, hash: prev, segment: 1, replica: "r1", time: new Date().toISOString() }));
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true });
    const caught = await verifyAuditLog(dir, { anchors: [{ checkpoint: JSON.parse(await readFile(anchor, "utf8")), source: anchor }] });
    expect(caught).toMatchObject({ ok: false });
    expect(caught.ok === false && ["records_missing", "checkpoint_mismatch"]).toContain(caught.ok === false && caught.code);
    // The CLI says the same with --anchor, and names the record.
    const err: string[] = [];
    expect(await auditCommand(["verify", dir, "--anchor", anchor, "--public-key", join(dir, AUDIT_PUBLIC_KEY_FILE)], { stdout: () => {}, stderr: (s) => err.push(s) })).toBe(1);
    expect(err.join("")).toMatch(/BROKEN at .*\(seq \d+\)/);
    await rm(anchor);
  });

  it("refuses a head file signed by another key when the public key is pinned", async () => {
    await seed();
    const head = (await readHead(dir))!;
    const other = await tempDataDir();
    const { signer } = await openAuditSigner(other.dir);
    await writeHead(dir, signCheckpoint(signer, { seq: head.seq, hash: head.hash, segment: head.segment, replica: "r1", time: head.time }));
    const out: string[] = [];
    expect(await auditCommand(["verify", dir, "--public-key", join(dir, AUDIT_PUBLIC_KEY_FILE)], { stdout: () => {}, stderr: (s) => out.push(s) })).toBe(1);
    expect(out.join("")).toContain("another audit key");
    await other.cleanup();
  });
});

describe("a server restarted on a cut log", () => {
  it("refuses to open a log shorter than its checkpoint, and with acceptGap records the gap", async () => {
    const files = await seed();
    await cutTail(files, 3);
    await expect(open()).rejects.toMatchObject({ errorCode: "audit_gap" });
    await expect(open()).rejects.toThrow(/first missing: seq 39.*--accept-audit-gap/);

    const sink = await open({ acceptGap: true });
    expect(sink.state.gap).toMatchObject({ problem: "log_shorter_than_checkpoint", checkpointSeq: 41, logSeq: 38 });
    await sink.append(sampleEvent(99));
    await sink.close();
    const all = (await Promise.all((await segmentFiles(dir)).map(fileLines))).flat().map((l) => JSON.parse(l));
    const gap = all.find((r) => r.type === "audit.gap");
    expect(gap).toMatchObject({ seq: 39, details: { problem: "log_shorter_than_checkpoint", checkpoint_seq: 41, log_seq: 38 } });
    // Sealed by a new checkpoint: the log now verifies, the gap on record.
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 40 });
    // A second restart is normal again.
    await (await open()).close();
  });

  it("refuses to start on a missing log when the head says records exist", async () => {
    await seed();
    await rm(join(dir, "audit"), { recursive: true });
    await expect(open()).rejects.toThrow(/records 1 to 41 are missing/);
  });

  it("refuses an empty log without a head file when the caller knows records were written", async () => {
    await seed();
    await rm(join(dir, "audit"), { recursive: true });
    await rm(headFileOf(dir));
    await expect(open({ expectRecords: true })).rejects.toMatchObject({ errorCode: "audit_gap" });
    const sink = await open({ expectRecords: true, acceptGap: true });
    expect(sink.state.gap?.problem).toBe("log_missing");
    await sink.close();
  });

  it("refuses a log whose record at the checkpoint was rewritten", async () => {
    const files = await seed();
    const last = files.at(-1)!;
    const lines = await fileLines(last);
    const rec = JSON.parse(lines.at(-1)!);
    const { seq, prev, hash: _h, ...body } = rec;
    body.decision = "deny";
    lines[lines.length - 1] = sealRecord(prev, seq, body).line;
    await writeFile(last, lines.join("\n") + "\n");
    await expect(open()).rejects.toThrow(/differs from the checkpoint/);
  });
});

describe("permissions", () => {
  it("tightens a looser data dir, audit dir and segment to 0700/0600 and warns", async () => {
    await seed(3);
    await chmod(dir, 0o755);
    await chmod(join(dir, "audit"), 0o755);
    const [seg] = await segmentFiles(dir);
    await chmod(seg!, 0o644);
    const warnings: string[] = [];
    const sink = await open({ onWarning: (m) => warnings.push(m) });
    await sink.close();
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, "audit"))).mode & 0o777).toBe(0o700);
    expect((await stat(seg!)).mode & 0o777).toBe(0o600);
    expect((await stat(headFileOf(dir))).mode & 0o777).toBe(0o600);
    expect(warnings.some((w) => w.includes("0755"))).toBe(true);
    expect(warnings.some((w) => w.includes("0644"))).toBe(true);
  });

  it("creates a new audit directory and its files owner-only whatever the umask", async () => {
    const old = process.umask(0o000);
    try {
      await mkdir(join(dir, "x"));
      const sink = await createFileAuditSink({ dir: join(dir, "x"), replica: "r1" });
      await sink.append(sampleEvent(1));
      await sink.close();
      const [seg] = await segmentFiles(join(dir, "x"));
      expect((await stat(join(dir, "x", "audit"))).mode & 0o777).toBe(0o700);
      expect((await stat(seg!)).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(old);
    }
  });
});

void truncate;

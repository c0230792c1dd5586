import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { appendFile, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { GENESIS_PREV, sha256Hex } from "../../src/audit/chain.js";
import type { AuditEvent } from "../../src/audit/event.js";
import { createFileAuditSink } from "../../src/audit/file-sink.js";
import { verifyAuditLog } from "../../src/audit/verify.js";
import { waitFor } from "../helpers/wait.js";
import { controllableFs, fileLines, sampleEvent, segmentFiles, settleIo, tempDataDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
const toClose: { close(): Promise<void> }[] = [];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDataDir());
});
afterEach(async () => {
  for (const s of toClose.splice(0)) await s.close().catch(() => {});
  await cleanup();
});

async function open(opts: Partial<Parameters<typeof createFileAuditSink>[0]> = {}) {
  const sink = await createFileAuditSink({ dir, replica: "r1", ...opts });
  toClose.push(sink);
  return sink;
}

function jwt(): string {
  const { privateKey } = generateKeyPairSync("ed25519");
  const h = Buffer.from(JSON.stringify({ alg: "EdDSA", typ: "at+jwt", kid: "kid_1" })).toString("base64url");
  const p = Buffer.from(JSON.stringify({ sub: "user:alice", jti: "tok_1", exp: 1 })).toString("base64url");
  return `${h}.${p}.${sign(null, Buffer.from(`${h}.${p}`), privateKey).toString("base64url")}`;
}

describe("file audit sink: chain and format", () => {
  it("writes chained JSON lines with seq, prev, hash, time and replica, and they verify", async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 2, 3, 4, 5));
    const sink = await open({ clock });
    for (let i = 0; i < 10; i++) await sink.append(sampleEvent(i));
    await sink.append(sampleEvent(10, { time: "2025-12-31T23:59:59.000Z" }));
    expect(sink.state).toMatchObject({ healthy: true, pending: 0, lastSeq: 11 });
    await sink.close();

    const [file] = await segmentFiles(dir);
    expect(file).toMatch(/audit[/\\]audit-000001\.jsonl$/);
    const lines = await fileLines(file!);
    expect(lines).toHaveLength(11);
    const first = JSON.parse(lines[0]!);
    expect(Object.keys(first).slice(0, 3)).toEqual(["seq", "prev", "hash"]);
    expect(first).toMatchObject({ seq: 1, prev: GENESIS_PREV, replica: "r1", time: "2026-01-02T03:04:05.000Z", jti: "tok_00000000" });
    const second = JSON.parse(lines[1]!);
    expect(second.seq).toBe(2);
    expect(second.prev).toBe(sha256Hex(lines[0]!));
    expect(JSON.parse(lines[10]!).time).toBe("2025-12-31T23:59:59.000Z");
    expect(sink.state.lastHash).toBe(sha256Hex(lines[10]!));

    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 11, files: 1 });
  });

  it("reopening continues seq and chain from the newest record", async () => {
    const a = await open();
    for (let i = 0; i < 3; i++) await a.append(sampleEvent(i));
    await a.close();

    const b = await open();
    expect(b.state.lastSeq).toBe(3);
    await b.append(sampleEvent(3));
    await b.append(sampleEvent(4));
    await b.close();

    const lines = await fileLines((await segmentFiles(dir))[0]!);
    expect(lines.map((l) => JSON.parse(l).seq)).toEqual([1, 2, 3, 4, 5]);
    expect(JSON.parse(lines[3]!).prev).toBe(sha256Hex(lines[2]!));
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 5, files: 1 });
  });

  it("rotates by size and keeps the chain across files", async () => {
    const maxFileBytes = 2_000;
    const sink = await open({ maxFileBytes });
    for (let i = 0; i < 60; i++) await sink.append(sampleEvent(i));
    // Concurrent appends too, so one batch has to be split across a rotation.
    await Promise.all(Array.from({ length: 40 }, (_, i) => sink.append(sampleEvent(60 + i))));
    await sink.close();

    const files = await segmentFiles(dir);
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) expect((await stat(f)).size).toBeLessThanOrEqual(maxFileBytes);
    const lastOfFirst = (await fileLines(files[0]!)).at(-1)!;
    const firstOfSecond = JSON.parse((await fileLines(files[1]!))[0]!);
    expect(firstOfSecond.prev).toBe(sha256Hex(lastOfFirst));
    expect(firstOfSecond.seq).toBe(JSON.parse(lastOfFirst).seq + 1);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 100, files: files.length });

    const reopened = await open({ maxFileBytes });
    expect(reopened.state.lastSeq).toBe(100);
    expect(reopened.state.file).toBe(files.at(-1));
  });

  it("loses no record under 2,000 appends from 64 concurrent loops, and batches them", async () => {
    const { fs, ctl } = controllableFs();
    const sink = await open({ fs, durability: "fsync" });
    let next = 0;
    const loop = async () => {
      while (next < 2_000) await sink.append(sampleEvent(next++));
    };
    await Promise.all(Array.from({ length: 64 }, loop));
    expect(sink.state.pending).toBe(0);
    await sink.close();

    const lines = await fileLines((await segmentFiles(dir))[0]!);
    expect(lines).toHaveLength(2_000);
    const jtis = new Set(lines.map((l) => JSON.parse(l).jti));
    expect(jtis.size).toBe(2_000);
    expect(lines.map((l) => JSON.parse(l).seq)).toEqual(Array.from({ length: 2_000 }, (_, i) => i + 1));
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 2_000, files: 1 });
    // Group commit: far fewer writes (and syncs) than records.
    expect(ctl.appends).toBeLessThan(200);
    expect(ctl.datasyncs).toBe(ctl.appends);
  });

  it('syncs with durability "fsync" and not with "write"', async () => {
    const a = controllableFs();
    const s1 = await open({ fs: a.fs, durability: "fsync" });
    await s1.append(sampleEvent(1));
    await s1.close();
    expect(a.ctl.datasyncs).toBe(1);

    const b = controllableFs();
    const s2 = await open({ fs: b.fs, durability: "write" });
    await s2.append(sampleEvent(2));
    await s2.close();
    expect(b.ctl.appends).toBe(1);
    expect(b.ctl.datasyncs).toBe(0);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 2 });
  });
});

describe("file audit sink: refusing secrets", () => {
  const token = jwt();
  const credential = `ses_abc.${randomBytes(32).toString("base64url")}`;
  const cases: [string, AuditEvent, string][] = [
    ["a JWT as reason", sampleEvent(1, { reason: `bad ${token}` }), "reason"],
    ["a JWT as jti", sampleEvent(1, { jti: token }), "jti"],
    ["a credential in details", sampleEvent(1, { details: { note: credential } }), "details.note"],
    ["a JWT in scopes", sampleEvent(1, { scopes: ["read", token] }), "scopes[1]"],
    ["an orchestrator token in target", sampleEvent(1, { target: { kind: "token_id", value: `cvo_${randomBytes(32).toString("base64url")}` } }), "target.value"],
    ["a PEM private key in details", sampleEvent(1, { details: { note: "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----" } }), "details.note"],
  ];

  it.each(cases)("refuses %s without writing anything", async (_name, event, field) => {
    const sink = await open();
    await sink.append(sampleEvent(0));
    const err = await sink.append(event).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ errorCode: "audit_event_refused" });
    expect((err as Error).message).toContain(`"${field}"`);
    expect((err as Error).message).not.toContain(token);
    expect((err as Error).message).not.toContain(credential);
    expect(sink.state).toMatchObject({ lastSeq: 1, healthy: true, pending: 0 });
    await sink.close();
    const text = await readFile((await segmentFiles(dir))[0]!, "utf8");
    expect(text).not.toContain(token);
    expect(text.split("\n").filter(Boolean)).toHaveLength(1);
  });

  it("refuses unknown types and chain fields", async () => {
    const sink = await open();
    await expect(sink.append({ type: "token.stolen" } as unknown as AuditEvent)).rejects.toMatchObject({ errorCode: "audit_event_refused" });
    await expect(sink.append({ ...sampleEvent(1), seq: 9 } as unknown as AuditEvent)).rejects.toThrow(/"seq" is set by the sink/);
    await expect(sink.append(sampleEvent(1, { exp: Number.NaN }))).rejects.toThrow(/"exp" is not a finite number/);
    expect(sink.state.lastSeq).toBe(0);
  });
});

describe("file audit sink: failing closed", () => {
  it("rejects with audit_unavailable on a write error, reports unhealthy, and recovers", async () => {
    const { fs, ctl } = controllableFs();
    const sink = await open({ fs });
    await sink.append(sampleEvent(0));
    ctl.set("fail");
    const err = await sink.append(sampleEvent(1)).catch((e: unknown) => e);
    expect(err).toMatchObject({ errorCode: "audit_unavailable" });
    expect((err as Error).message).toMatch(/EIO/);
    expect((err as Error).message).not.toContain("tok_00000001");
    expect(sink.state.healthy).toBe(false);
    expect(sink.state.lastError).toMatch(/EIO/);
    expect(sink.state.lastSeq).toBe(1);

    ctl.set("ok");
    await sink.append(sampleEvent(2));
    expect(sink.state.healthy).toBe(true);
    expect(sink.state.lastError).toBeUndefined();
    await sink.close();
    const lines = await fileLines((await segmentFiles(dir))[0]!);
    expect(lines.map((l) => JSON.parse(l).jti)).toEqual(["tok_00000000", "tok_00000002"]);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 2 });
  });

  it("cuts a partial write off before the next batch, so the log stays valid", async () => {
    const { fs, ctl } = controllableFs();
    const sink = await open({ fs });
    await sink.append(sampleEvent(0));
    const goodSize = (await stat(sink.state.file)).size;
    ctl.set("partial-then-fail");
    await expect(Promise.all([sink.append(sampleEvent(1)), sink.append(sampleEvent(2))])).rejects.toMatchObject({ errorCode: "audit_unavailable" });
    expect((await stat(sink.state.file)).size).toBeGreaterThan(goodSize); // garbage is there now

    ctl.set("ok");
    await sink.append(sampleEvent(3));
    await sink.close();
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 2, files: 1 });
    const lines = await fileLines((await segmentFiles(dir))[0]!);
    expect(JSON.parse(lines[1]!)).toMatchObject({ seq: 2, jti: "tok_00000003" });
  });

  it("rejects at the deadline when a write hangs, refuses at once while stuck, and continues cleanly after", async () => {
    const clock = new ManualClock();
    const { fs, ctl } = controllableFs();
    const sink = await open({ fs, clock, timeoutMs: 2_000 });
    await sink.append(sampleEvent(0));

    ctl.set("hang");
    let outcome: unknown = "pending";
    const stuck = sink.append(sampleEvent(1)).then(
      () => (outcome = "resolved"),
      (e: unknown) => (outcome = e),
    );
    await waitFor(() => ctl.hungNow === 1, "the write to hang");
    clock.advance(1_999);
    await settleIo();
    expect(outcome).toBe("pending");
    expect(sink.state.pending).toBe(1);
    clock.advance(1);
    await stuck;
    expect(outcome).toMatchObject({ errorCode: "audit_unavailable" });
    expect((outcome as Error).message).toMatch(/timed out after 2000 ms/);
    expect(sink.state.healthy).toBe(false);
    expect(sink.state.pending).toBe(0);

    // While the write is still stuck, new records fail immediately instead of queueing.
    await expect(sink.append(sampleEvent(2))).rejects.toThrow(/pending for over 2000 ms/);
    expect(ctl.hungNow).toBe(1);

    // The file system recovers: the stuck write lands, then later records follow it.
    ctl.set("ok");
    ctl.release("ok");
    await waitFor(() => sink.state.healthy, "the sink to recover");
    await sink.append(sampleEvent(3));
    await sink.close();
    const lines = await fileLines((await segmentFiles(dir))[0]!);
    // The timed-out record was written late: the log over-reports an attempt, never misses one.
    expect(lines.map((l) => JSON.parse(l).jti)).toEqual(["tok_00000000", "tok_00000001", "tok_00000003"]);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 3, files: 1 });
  });

  it("a hung write that times out and then fails leaves no trace", async () => {
    const clock = new ManualClock();
    const { fs, ctl } = controllableFs();
    const sink = await open({ fs, clock, timeoutMs: 100, checkpoints: false });
    await sink.append(sampleEvent(0));
    ctl.set("hang");
    const stuck = sink.append(sampleEvent(1)).catch((e: unknown) => e);
    await waitFor(() => ctl.hungNow === 1, "the write to hang");
    clock.advance(100);
    expect(await stuck).toMatchObject({ errorCode: "audit_unavailable" });

    ctl.set("ok");
    ctl.release("fail");
    await waitFor(() => ctl.hungNow === 0, "the hung write to settle");
    await settleIo();
    await sink.append(sampleEvent(2));
    expect(sink.state.healthy).toBe(true);
    await sink.close();
    const lines = await fileLines((await segmentFiles(dir))[0]!);
    expect(lines.map((l) => JSON.parse(l).jti)).toEqual(["tok_00000000", "tok_00000002"]);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 2 });
  });

  it("close flushes queued records, is idempotent, and later appends are refused", async () => {
    const sink = await open();
    const writes = Array.from({ length: 20 }, (_, i) => sink.append(sampleEvent(i)));
    const c1 = sink.close();
    const c2 = sink.close();
    expect(c2).toBe(c1);
    await c1;
    await Promise.all(writes);
    await expect(sink.append(sampleEvent(99))).rejects.toThrow(/closed/);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 20 });
  });

  it("close under a stuck write rejects at the bound instead of hanging", async () => {
    const clock = new ManualClock();
    const { fs, ctl } = controllableFs();
    const sink = await open({ fs, clock, timeoutMs: 50, checkpoints: false });
    ctl.set("hang");
    const pendingAppend = sink.append(sampleEvent(1)).catch((e: unknown) => e);
    await waitFor(() => ctl.hungNow === 1, "the write to hang");
    let closed: unknown = "pending";
    const closing = sink.close().then(
      () => (closed = "resolved"),
      (e: unknown) => (closed = e),
    );
    await settleIo();
    expect(closed).toBe("pending");
    // The append's own deadline and close's both fall due at 50 ms.
    clock.advance(50);
    await closing;
    expect(closed).toMatchObject({ errorCode: "audit_unavailable" });
    expect(String(closed)).toMatch(/write still pending/);
    expect(await pendingAppend).toMatchObject({ errorCode: "audit_unavailable" });
    // Still the directory's writer until the stuck write settles.
    await expect(createFileAuditSink({ dir, replica: "r1" })).rejects.toThrow(/already open/);
    ctl.release("fail");
    await waitFor(() => ctl.hungNow === 0, "the hung write to settle");
    await settleIo();
    await open();
  });

  it("refuses a second sink on the same directory in one process", async () => {
    await open();
    await expect(createFileAuditSink({ dir, replica: "r2" })).rejects.toThrow(/already open/);
  });
});

describe("file audit sink: opening a damaged log", () => {
  async function seed(n: number) {
    const sink = await createFileAuditSink({ dir, replica: "r1" });
    for (let i = 0; i < n; i++) await sink.append(sampleEvent(i));
    await sink.close();
    return (await segmentFiles(dir))[0]!;
  }

  it("sets a torn final line aside and continues the chain", async () => {
    const file = await seed(3);
    const goodSize = (await stat(file)).size;
    const torn = '{"seq":4,"prev":"ab';
    await appendFile(file, torn);

    const sink = await open({ clock: new ManualClock(1_700_000_000_000) });
    expect(sink.state.recovered).toEqual({ file, offset: goodSize, bytes: torn.length, savedTo: `${file}.torn-1700000000000` });
    expect(await readFile(`${file}.torn-1700000000000`, "utf8")).toBe(torn);
    expect((await stat(file)).size).toBe(goodSize);
    await sink.append(sampleEvent(3));
    await sink.close();
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 4, files: 1 });
  });

  it('refuses a torn final line with tornTail: "refuse" and leaves the file alone', async () => {
    const file = await seed(2);
    await appendFile(file, "\u0000\u0000\u0000");
    const before = await readFile(file);
    const err = await createFileAuditSink({ dir, replica: "r1", tornTail: "refuse" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ errorCode: "audit_log_corrupt" });
    expect((err as Error).message).toMatch(/3 bytes after the last complete record/);
    expect(await readFile(file)).toEqual(before);
    expect((await readdir(join(dir, "audit"))).some((n) => n.includes(".torn-"))).toBe(false);
    // The refusal released the directory.
    await open();
  });

  it("refuses to continue after a corrupt newest record", async () => {
    const file = await seed(3);
    const lines = await fileLines(file);
    lines[2] = lines[2]!.replace('"agent_id":"agent-2"', '"agent_id":"agent-X"');
    await writeFile(file, lines.join("\n") + "\n");
    const err = await createFileAuditSink({ dir, replica: "r1" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ errorCode: "audit_log_corrupt" });
    expect((err as Error).message).toMatch(/last record .* is invalid: hash does not match/);
  });

  it("continues from the previous segment when the newest is empty", async () => {
    await seed(2);
    await writeFile(join(dir, "audit", "audit-000002.jsonl"), "");
    const sink = await open();
    expect(sink.state.lastSeq).toBe(2);
    await sink.append(sampleEvent(2));
    await sink.close();
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 3, files: 2 });
  });
});

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { combineAuditSinks } from "../../src/audit/combine.js";
import { createFileAuditSink } from "../../src/audit/file-sink.js";
import { createMemoryAuditSink } from "../../src/audit/memory-sink.js";
import type { AuditSink } from "../../src/audit/sink.js";
import { withAuditTimeout } from "../../src/audit/timeout.js";
import { verifyAuditLog } from "../../src/audit/verify.js";
import { sampleEvent, settleIo, tempDataDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDataDir());
});
afterEach(() => cleanup());

function track(p: Promise<unknown>) {
  const t = { state: "pending" as "pending" | "resolved" | "rejected", error: undefined as unknown };
  p.then(
    () => (t.state = "resolved"),
    (e: unknown) => {
      t.state = "rejected";
      t.error = e;
    },
  );
  return t;
}

describe("memory audit sink", () => {
  it("keeps chained records whose lines verify as a file log", async () => {
    const sink = createMemoryAuditSink({ replica: "mem", clock: new ManualClock(0) });
    for (let i = 0; i < 5; i++) await sink.append(sampleEvent(i));
    expect(sink.records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(sink.records[0]).toMatchObject({ replica: "mem", time: "1970-01-01T00:00:00.000Z", jti: "tok_00000000" });
    expect(sink.find({ session_id: "ses_1", jti: "tok_00000001" })).toHaveLength(1);
    await mkdir(join(dir, "audit"));
    await writeFile(join(dir, "audit", "audit-000001.jsonl"), sink.lines.join("\n") + "\n");
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 5, files: 1 });
  });

  it("stores a copy: changing the event after append changes nothing", async () => {
    const sink = createMemoryAuditSink();
    const ev = sampleEvent(1);
    await sink.append(ev);
    ev.scopes!.push("admin");
    ev.caller!.id = "someone-else";
    expect(sink.records[0]).toMatchObject({ scopes: ["read", "write"], caller: { id: "ses_1" } });
  });

  it("refuses secrets like the file sink", async () => {
    const sink = createMemoryAuditSink();
    await expect(sink.append(sampleEvent(1, { reason: `ses_x.${"aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF3hJ5kL7nP9r"}` }))).rejects.toMatchObject({ errorCode: "audit_event_refused" });
    expect(sink.records).toHaveLength(0);
  });

  it("fails on demand and recovers", async () => {
    const sink = createMemoryAuditSink();
    sink.setMode("fail", "disk full");
    await expect(sink.append(sampleEvent(1))).rejects.toThrow(/disk full/);
    expect(sink.state).toMatchObject({ healthy: false, lastError: "audit write failed: disk full" });
    sink.setMode("ok");
    await sink.append(sampleEvent(2));
    expect(sink.state.healthy).toBe(true);
    expect(sink.records.map((r) => r.jti)).toEqual(["tok_00000002"]);
  });

  it("hangs on demand until the deadline, then writes held records that are still waiting when released", async () => {
    const clock = new ManualClock();
    const sink = createMemoryAuditSink({ clock, timeoutMs: 2_000 });
    sink.setMode("hang");
    const a = track(sink.append(sampleEvent(1)));
    clock.advance(1_000);
    const b = track(sink.append(sampleEvent(2)));
    clock.advance(1_000);
    await settleIo();
    expect(a.state).toBe("rejected");
    expect(a.error).toMatchObject({ errorCode: "audit_unavailable" });
    expect(b.state).toBe("pending");
    expect(sink.state).toMatchObject({ healthy: false, pending: 1 });
    sink.setMode("ok");
    await settleIo();
    expect(b.state).toBe("resolved");
    expect(sink.records.map((r) => r.jti)).toEqual(["tok_00000002"]);
  });
});

describe("withAuditTimeout", () => {
  it("bounds a sink that never answers, and ignores its late answer", async () => {
    const clock = new ManualClock();
    let release!: () => void;
    const silent: AuditSink = {
      append: () => new Promise<void>((r) => (release = r)),
      state: { healthy: true, pending: 0 },
      close: async () => {},
    };
    const sink = withAuditTimeout(silent, { clock, timeoutMs: 500, name: "jetstream" });
    const a = track(sink.append(sampleEvent(1)));
    clock.advance(499);
    await settleIo();
    expect(a.state).toBe("pending");
    clock.advance(1);
    await settleIo();
    expect(a.state).toBe("rejected");
    expect(String(a.error)).toContain("jetstream audit sink timed out after 500 ms");
    expect(sink.state.healthy).toBe(false);
    release();
    await settleIo();
    expect(a.state).toBe("rejected");
    expect(sink.state.healthy).toBe(false);

    const b = track(sink.append(sampleEvent(2)));
    release();
    await settleIo();
    expect(b.state).toBe("resolved");
    expect(sink.state.healthy).toBe(true);
  });
});

describe("combineAuditSinks", () => {
  it("resolves when every sink has the record, and rejects when any fails", async () => {
    const file = await createFileAuditSink({ dir, replica: "r1", durability: "write" });
    const mem = createMemoryAuditSink();
    const both = combineAuditSinks(file, mem);
    await both.append(sampleEvent(1));
    expect(mem.records).toHaveLength(1);
    expect(file.state.lastSeq).toBe(1);
    expect(both.state).toMatchObject({ healthy: true, file: file.state.file });

    mem.setMode("fail", "nats down");
    await expect(both.append(sampleEvent(2))).rejects.toThrow(/nats down/);
    expect(both.state.healthy).toBe(false);
    expect(both.state.lastError).toContain("audit sink #1: audit write failed: nats down");

    await expect(both.append(sampleEvent(3, { reason: `x ses_a.${"aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF3hJ5kL7nP9r"}` }))).rejects.toMatchObject({ errorCode: "audit_event_refused" });
    const c1 = both.close();
    expect(both.close()).toBe(c1);
    await c1;
    await expect(file.append(sampleEvent(4))).rejects.toThrow(/closed/);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 2 });
  });
});

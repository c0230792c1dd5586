import { appendFile } from "node:fs/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileAuditSink } from "../../src/audit/file-sink.js";
import { tailAuditLog } from "../../src/audit/tail.js";
import { waitFor } from "../helpers/wait.js";
import { sampleEvent, segmentFiles, tempDataDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDataDir());
});
afterEach(() => cleanup());

async function collect(filter: Parameters<typeof tailAuditLog>[0]["filter"]): Promise<Record<string, unknown>[]> {
  const out: string[] = [];
  await tailAuditLog({ dir, follow: false, filter, out: (l) => out.push(l) });
  return out.map((l) => JSON.parse(l));
}

describe("tailAuditLog", () => {
  it("prints all records, or those of one session, agent or user, including revocations that target them", async () => {
    const sink = await createFileAuditSink({ dir, replica: "r1", durability: "write", maxFileBytes: 3_000 });
    for (let i = 0; i < 30; i++) await sink.append(sampleEvent(i));
    await sink.append({ type: "token.revoked", caller: { kind: "orchestrator", id: "orch" }, target: { kind: "session_id", value: "ses_3" }, reason: "user logout" });
    await sink.close();
    expect((await segmentFiles(dir)).length).toBeGreaterThan(1);

    const all = await collect(undefined);
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));

    const ses3 = await collect({ session_id: "ses_3" });
    expect(ses3.length).toBe(5); // i = 3, 10, 17, 24 and the revocation
    expect(ses3.every((r) => r.session_id === "ses_3" || (r.target as { value: string }).value === "ses_3")).toBe(true);
    expect(ses3.at(-1)!.type).toBe("token.revoked");

    const both = await collect({ agent_id: "agent-1", user_id: "user-2" });
    expect(both.map((r) => r.jti)).toEqual(["tok_00000007", "tok_00000022"]);
    expect(await collect({ user_id: "nobody" })).toEqual([]);
  });

  it("returns at once when there is no log and not following", async () => {
    const out: string[] = [];
    await tailAuditLog({ dir, follow: false, out: (l) => out.push(l) });
    expect(out).toEqual([]);
  });

  it("follows new records across rotations until aborted, never printing a partial line", async () => {
    const sink = await createFileAuditSink({ dir, replica: "r1", durability: "write", maxFileBytes: 2_000 });
    await sink.append(sampleEvent(0));
    const ac = new AbortController();
    const out: string[] = [];
    const done = tailAuditLog({ dir, follow: true, filter: { session_id: "ses_0" }, signal: ac.signal, pollMs: 5, out: (l) => out.push(l) });

    await waitFor(() => out.length === 1, "the first record");
    for (let i = 1; i < 80; i++) {
      await sink.append(sampleEvent(i));
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 7));
    }
    const expected = Array.from({ length: 80 }, (_, i) => i).filter((i) => i % 7 === 0);
    await waitFor(() => out.length === expected.length, "every ses_0 record");
    expect((await segmentFiles(dir)).length).toBeGreaterThan(3);
    expect(out.map((l) => JSON.parse(l).jti)).toEqual(expected.map((i) => `tok_${String(i).padStart(8, "0")}`));

    // A line being written shows up only once complete. One write puts a whole line and the
    // start of the next: once the whole one is printed, the tail has read the partial one too.
    await sink.close();
    const last = (await segmentFiles(dir)).at(-1)!;
    await appendFile(last, '{"seq":81,"session_id":"ses_0","type":"stream.opened"}\n{"seq":82,"session_id":"ses_0"');
    await waitFor(() => out.length === expected.length + 1, "the complete line");
    expect(JSON.parse(out.at(-1)!)).toMatchObject({ seq: 81 });
    expect(out).toHaveLength(expected.length + 1);
    await appendFile(last, ',"type":"stream.closed"}\n');
    await waitFor(() => out.length === expected.length + 2, "the line once completed");
    expect(JSON.parse(out.at(-1)!)).toMatchObject({ seq: 82, type: "stream.closed" });

    ac.abort();
    await done;
  });
});

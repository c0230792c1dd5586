import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { auditCommand } from "../../src/audit/cli.js";
import { createFileAuditSink } from "../../src/audit/file-sink.js";
import { waitFor } from "../helpers/wait.js";
import { fileLines, sampleEvent, segmentFiles, tempDataDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDataDir());
  const sink = await createFileAuditSink({ dir, replica: "r1", durability: "write" });
  for (let i = 0; i < 12; i++) await sink.append(sampleEvent(i));
  await sink.close();
});
afterEach(() => cleanup());

function io(env: Record<string, string | undefined> = {}, signal?: AbortSignal) {
  const out: string[] = [];
  const err: string[] = [];
  const value = {
    stdout: (s: string) => void out.push(s),
    stderr: (s: string) => void err.push(s),
    env,
    ...(signal ? { signal } : {}),
  };
  return { io: value, out, err };
}

describe("capvend audit", () => {
  it("verify exits 0 on an intact log, with the path or from CAPVEND_DATA_DIR", async () => {
    const a = io();
    expect(await auditCommand(["verify", dir], a.io)).toBe(0);
    expect(a.out.join("")).toContain("audit log ok: 12 records in 1 file");
    const b = io({ CAPVEND_DATA_DIR: dir });
    expect(await auditCommand(["audit", "verify"], b.io)).toBe(0);
    expect(b.out.join("")).toContain("12 records");
  });

  it("verify exits non-zero on a broken log and names the record", async () => {
    const [file] = await segmentFiles(dir);
    const lines = await fileLines(file!);
    lines.splice(7, 1);
    await writeFile(file!, lines.join("\n") + "\n");
    const a = io();
    expect(await auditCommand(["verify", dir], a.io)).toBe(1);
    const msg = a.err.join("");
    expect(msg).toContain(`BROKEN at ${file}:8 (seq 9)`);
    expect(msg).toContain("expected seq 8, found 9");
    expect(msg).toContain("7 records verified before it");
  });

  it("verify exits non-zero when there is no log", async () => {
    const a = io();
    expect(await auditCommand(["verify", join(dir, "missing")], a.io)).toBe(1);
    expect(a.err.join("")).toContain("no audit log at");
  });

  it("tail prints the matching records, one JSON line each", async () => {
    const a = io();
    expect(await auditCommand(["tail", "--dir", dir, "--session", "ses_2", "--agent", "agent-0"], a.io)).toBe(0);
    const recs = a.out.join("").trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(recs.map((r) => r.jti)).toEqual(["tok_00000009"]);
    const b = io({ CAPVEND_DATA_DIR: dir });
    expect(await auditCommand(["tail", "--user", "user-1"], b.io)).toBe(0);
    expect(b.out).toHaveLength(3); // i = 1, 6, 11
  });

  it("tail --follow runs until the signal aborts", async () => {
    const ac = new AbortController();
    const a = io({}, ac.signal);
    const code = auditCommand(["tail", "--dir", dir, "--follow"], a.io);
    await waitFor(() => a.out.length === 12, "every record printed");
    ac.abort();
    expect(await code).toBe(0);
  });

  it("rejects unknown subcommands and options with exit code 2", async () => {
    const a = io();
    expect(await auditCommand(["frobnicate"], a.io)).toBe(2);
    expect(a.err.join("")).toContain('unknown subcommand "frobnicate"');
    const b = io();
    expect(await auditCommand(["tail", "--bogus"], b.io)).toBe(2);
    expect(b.err.join("")).toMatch(/--bogus/);
    const c = io();
    expect(await auditCommand([], c.io)).toBe(2);
    expect(c.out.join("")).toContain("usage:");
  });
});

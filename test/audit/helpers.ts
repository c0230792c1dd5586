import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditEvent } from "../../src/audit/event.js";
import type { AuditFileHandle, AuditFs } from "../../src/audit/file-system.js";
import { nodeAuditFs } from "../../src/audit/file-system.js";

/** A fresh temporary data directory and a function that removes it. */
export async function tempDataDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "capvend-audit-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A realistic event; `i` varies the ids. */
export function sampleEvent(i: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: "token.issued",
    caller: { kind: "session", id: `ses_${i % 7}` },
    agent_id: `agent-${i % 3}`,
    user_id: `user-${i % 5}`,
    session_id: `ses_${i % 7}`,
    resource: "salesforce",
    scopes: ["read", "write"],
    jti: `tok_${String(i).padStart(8, "0")}`,
    exp: 1_764_300_900 + i,
    decision: "allow",
    policy_ids: ["policy0"],
    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
    ...over,
  };
}

/** The segment files of a data directory, oldest first. */
export async function segmentFiles(dataDir: string): Promise<string[]> {
  const auditDir = join(dataDir, "audit");
  return (await readdir(auditDir)).filter((n) => /^audit-\d+\.jsonl$/.test(n)).sort().map((n) => join(auditDir, n));
}

/** Lines of a segment (without the final empty string). */
export async function fileLines(path: string): Promise<string[]> {
  const text = await readFile(path, "utf8");
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** How the controllable file system treats the next appends. */
export type WriteBehaviour = "ok" | "fail" | "hang" | "partial-then-fail";

/**
 * The real file system with knobs: appends can fail (EIO), hang until released, or write half
 * of their data and then fail. Counts appends and syncs.
 */
export function controllableFs() {
  let behaviour: WriteBehaviour = "ok";
  let releaseHung: ((outcome: "ok" | "fail") => void)[] = [];
  const ctl = {
    appends: 0,
    datasyncs: 0,
    hungNow: 0,
    set(b: WriteBehaviour) {
      behaviour = b;
    },
    /** Lets every hung append finish, writing its data ("ok") or failing. */
    release(outcome: "ok" | "fail" = "ok") {
      const r = releaseHung;
      releaseHung = [];
      for (const f of r) f(outcome);
    },
  };
  const eio = () => Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" });
  const fs: AuditFs = {
    ...nodeAuditFs,
    async openAppend(path) {
      const h = await nodeAuditFs.openAppend(path);
      const wrapped: AuditFileHandle = {
        ...h,
        async append(data) {
          ctl.appends++;
          switch (behaviour) {
            case "ok":
              return h.append(data);
            case "fail":
              throw eio();
            case "partial-then-fail":
              await h.append(data.subarray(0, Math.max(1, data.length >> 1)));
              throw eio();
            case "hang": {
              ctl.hungNow++;
              const outcome = await new Promise<"ok" | "fail">((res) => releaseHung.push(res));
              ctl.hungNow--;
              if (outcome === "fail") throw eio();
              return h.append(data);
            }
          }
        },
        async datasync() {
          ctl.datasyncs++;
          return h.datasync();
        },
      };
      return wrapped;
    },
  };
  return { fs, ctl };
}

/** Lets pending promise callbacks and I/O completions run. */
export async function settleIo(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

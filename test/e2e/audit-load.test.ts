import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createFileAuditSink, type FileAuditSink } from "../../src/audit/file-sink.js";
import { verifyAuditLog } from "../../src/audit/verify.js";
import { readFile, readdir } from "node:fs/promises";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

let h: Harness;
let sink: FileAuditSink;
let auditDir: string;

beforeAll(async () => {
  auditDir = await mkdtemp(path.join(os.tmpdir(), "capvend-audit-load-"));
  sink = await createFileAuditSink({ dir: auditDir, replica: "load", durability: "fsync" });
  h = await startHarness({ audit: sink });
});
afterAll(async () => {
  await h?.close();
  await rm(auditDir, { recursive: true, force: true });
});

it("a concurrent issuance load over the file sink loses no audit record, and the chain verifies", async () => {
  const sessions = await Promise.all(Array.from({ length: 8 }, () => startSalesSession(h)));
  const jtis = new Set<string>();
  const PER_SESSION = 60;
  await Promise.all(
    sessions.map(async (s) => {
      // 4 concurrent callers per session, 8 sessions: 32 requests in flight at a time.
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = 0; i < PER_SESSION / 4; i++) {
            const { token } = await s.runtime.issueToken({ resource: i % 2 ? "salesforce" : "calendar", scopes: ["read"] });
            jtis.add(token!.tokenId);
          }
        }),
      );
    }),
  );
  expect(jtis.size).toBe(8 * PER_SESSION);
  await sink.close();

  const files = (await readdir(path.join(auditDir, "audit"))).filter((f) => f.endsWith(".jsonl")).sort();
  const records = (await Promise.all(files.map((f) => readFile(path.join(auditDir, "audit", f), "utf8"))))
    .join("")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; jti?: string });
  const issued = records.filter((r) => r.type === "token.issued").map((r) => r.jti!);
  // Exactly one record per token returned: none lost, none doubled.
  expect(issued.length).toBe(jtis.size);
  expect(new Set(issued)).toEqual(jtis);
  expect(records.filter((r) => r.type === "session.started")).toHaveLength(8);
  const verdict = await verifyAuditLog(auditDir);
  expect(verdict.ok).toBe(true);
});

/** With NATS, each audit checkpoint is also kept in the JetStream audit stream: `audit verify --anchor nats://…` holds the log to it. */
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GENESIS_PREV, sealRecord } from "../../src/audit/chain.js";
import { readHead, signCheckpoint, writeHead } from "../../src/audit/checkpoint.js";
import { auditCommand } from "../../src/audit/cli.js";
import { fetchNatsCheckpoint } from "../../src/audit/nats-anchor.js";
import { openAuditSigner } from "../../src/audit/signing-key.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { startReplica } from "../helpers/replica-process.js";

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await nats?.cleanup();
});

describe("audit checkpoints anchored in JetStream", () => {
  it("publishes the replica's checkpoints, verify passes against them, and catches a rebuilt chain re-signed on disk", async () => {
    const r = await startReplica({ natsUrl: nats.url });
    try {
      await r.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "salesforce", scopes: ["read"] }] });
      await r.orchestrator.startSession({ agentId: "sales-bot", userId: "bob", grants: [{ resource: "salesforce", scopes: ["read"] }] });
      await r.kill("SIGTERM");
      const head = (await readHead(r.dataDir))!;
      const anchored = await fetchNatsCheckpoint(nats.url, head.kid);
      expect(anchored).toEqual(head);

      const out: string[] = [];
      const io = { stdout: (s: string) => out.push(s), stderr: (s: string) => out.push(s) };
      expect(await auditCommand(["verify", r.dataDir, "--anchor", nats.url], io)).toBe(0);
      expect(out.join("")).toContain(`(seq ${head.seq})`);

      // Rebuild without bob's session and re-sign the head with the key found on disk.
      const dir = join(r.dataDir, "audit");
      const files = (await readdir(dir)).filter((f) => f.endsWith(".jsonl")).sort();
      const records = (await Promise.all(files.map((f) => readFile(join(dir, f), "utf8")))).join("").split("\n").filter(Boolean).map((l) => JSON.parse(l));
      let prev = GENESIS_PREV;
      const lines: string[] = [];
      for (const { seq: _s, prev: _p, hash: _h, ...body } of records.filter((x) => x.user_id !== "bob")) {
        const sealed = sealRecord(prev, lines.length + 1, body);
        lines.push(sealed.line);
        prev = sealed.lineHash;
      }
      expect(lines.length).toBeLessThan(records.length);
      for (const f of files) await rm(join(dir, f));
      await writeFile(join(dir, files[0]!), lines.join("\n") + "\n");
      const { signer } = await openAuditSigner(r.dataDir);
      await writeHead(r.dataDir, signCheckpoint(signer, { seq: lines.length, hash: prev, segment: 1, replica: head.replica, time: new Date().toISOString() }));

      out.length = 0;
      expect(await auditCommand(["verify", r.dataDir], io)).toBe(0);
      out.length = 0;
      expect(await auditCommand(["verify", r.dataDir, "--anchor", nats.url], io)).toBe(1);
      expect(out.join("")).toMatch(/BROKEN .*\(seq \d+\)/);
    } finally {
      await r.cleanup();
    }
  });
});

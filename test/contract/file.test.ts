/** The shared RevocationList and SessionStore contracts against the durable embedded (journal) implementations. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../../src/clock.js";
import { FileRevocationList } from "../../src/backends/file/file-revocation-list.js";
import { FileSessionStore } from "../../src/backends/file/file-session-store.js";
import { defineRevocationListContract } from "./revocation-list.contract.js";
import { defineSessionStoreContract } from "./session-store.contract.js";

const tempDir = () => mkdtemp(join(tmpdir(), "capvend-state-"));

defineRevocationListContract("file journal", async () => {
  const dir = await tempDir();
  const list = await FileRevocationList.open({ dataDir: dir, clock: systemClock });
  return {
    list,
    async cleanup() {
      await list.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

defineSessionStoreContract("file journal", async () => {
  const dir = await tempDir();
  const store = await FileSessionStore.open({ dataDir: dir, clock: systemClock });
  return {
    store,
    async cleanup() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

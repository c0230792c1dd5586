import { systemClock } from "../../src/clock.js";
import { MemoryRevocationList } from "../../src/backends/memory/memory-revocation-list.js";
import { MemorySessionStore } from "../../src/backends/memory/memory-session-store.js";
import { defineRevocationListContract } from "./revocation-list.contract.js";
import { defineSessionStoreContract } from "./session-store.contract.js";

defineRevocationListContract("memory", async () => {
  const list = new MemoryRevocationList(systemClock);
  return { list, cleanup: () => list.close() };
});

defineSessionStoreContract("memory", async () => {
  const store = new MemorySessionStore(systemClock);
  return { store, cleanup: () => store.close() };
});

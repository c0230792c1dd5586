import type { BackendOptions, Backends } from "../types.js";
import { MemoryRevocationList } from "./memory-revocation-list.js";
import { MemorySessionStore } from "./memory-session-store.js";

/** Opens the in-process backends: one replica, nothing shared. */
export function openMemoryBackends(opts: BackendOptions): Backends {
  const sessions = new MemorySessionStore(opts.clock);
  const revocations = new MemoryRevocationList(opts.clock);
  return {
    sessions,
    revocations,
    publicKeys: opts.keyRing,
    auditSinks: [],
    async close() {
      await revocations.close();
      await sessions.close();
    },
  };
}

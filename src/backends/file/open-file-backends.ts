import type { BackendOptions, Backends } from "../types.js";
import { FileRevocationList } from "./file-revocation-list.js";
import { FileSessionStore } from "./file-session-store.js";

/**
 * Opens the durable embedded backends: one replica, sessions and revocations journaled in
 * `<dataDir>/state/` (see append-journal.ts), as durable as the audit log (CAPVEND_AUDIT_DURABILITY).
 */
export async function openFileBackends(opts: BackendOptions): Promise<Backends> {
  const { config, clock } = opts;
  const settings = { dataDir: config.dataDir, clock, durability: config.audit.durability, timeoutMs: config.audit.timeoutMs };
  const sessions = await FileSessionStore.open(settings);
  let revocations: FileRevocationList;
  try {
    revocations = await FileRevocationList.open(settings);
  } catch (err) {
    await sessions.close();
    throw err;
  }
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

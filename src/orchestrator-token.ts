import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { newOrchestratorToken, sha256Hex } from "./auth/credentials.js";

/** File in the data directory holding the generated bearer of orchestrator `dev`. */
export const ORCHESTRATOR_TOKEN_FILE = "orchestrator-token";

/** The orchestrator that CAPVEND_ORCHESTRATOR_TOKEN (or the generated token) authenticates. */
export const DEV_ORCHESTRATOR_ID = "dev";

/**
 * The embedded default's orchestrator credential: CAPVEND_ORCHESTRATOR_TOKEN when set;
 * otherwise a token generated on first start into `<dataDir>/orchestrator-token` (0600)
 * and read back on later starts. Returns only its hash and, when generated, the file path
 * to print (never the value).
 */
export async function devOrchestratorHash(dataDir: string, fromEnv: string | undefined): Promise<{ hash: string; file?: string; created: boolean; length?: number }> {
  if (fromEnv !== undefined) return { hash: sha256Hex(fromEnv), created: false, length: fromEnv.length };
  const file = path.join(dataDir, ORCHESTRATOR_TOKEN_FILE);
  try {
    const token = (await readFile(file, "utf8")).trim();
    if (token.length < 16) throw new Error(`${file} holds no usable token; delete it to generate a new one`);
    return { hash: sha256Hex(token), file, created: false, length: token.length };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const token = newOrchestratorToken();
  // "wx": never overwrite a token another process wrote in the meantime.
  await writeFile(file, token + "\n", { mode: 0o600, flag: "wx" });
  return { hash: sha256Hex(token), file, created: true, length: token.length };
}

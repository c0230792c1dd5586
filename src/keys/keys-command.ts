import { systemClock } from "../clock.js";
import { ConfigError, loadConfig } from "../config/config.js";
import { openKeyRing } from "./key-ring.js";

const USAGE = `usage:
  capvend keys list   [--data-dir DIR]     the signing key and every key still published
  capvend keys rotate [--data-dir DIR]     a new signing key; run while the replica is stopped
`;

/**
 * `capvend keys …`: offline key management on a replica's data directory. Rotation runs
 * while the replica is stopped (the running process owns `keyring.json`); at its next start
 * the replica signs with the new key and keeps the old one published until every token it
 * signed has expired. Prints key ids only, never key material.
 */
export async function keysCommand(argv: string[], io: { stdout: (s: string) => void; stderr: (s: string) => void; env: Record<string, string | undefined> }): Promise<number> {
  const [sub, ...flags] = argv;
  if (sub !== "list" && sub !== "rotate") {
    io.stderr(USAGE);
    return 2;
  }
  let config;
  try {
    config = loadConfig(io.env, flags);
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr(`capvend keys: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const ring = await openKeyRing({ dataDir: config.dataDir, alg: config.signingAlg, clock: systemClock, maxTokenTtlMs: config.maxTokenTtlMs });
  try {
    if (sub === "rotate") {
      const before = ring.current();
      const after = await ring.rotate();
      io.stdout(`rotated: ${after.kid} (${after.alg}) signs from the next start; ${before.kid} stays published for ${Math.round(config.maxTokenTtlMs / 60000)} min after that\n`);
      return 0;
    }
    const current = ring.current().kid;
    for (const k of ring.jwks().keys) io.stdout(`${k.kid === current ? "signing  " : "published"} ${k.kid} ${k.alg}\n`);
    return 0;
  } finally {
    ring.close();
  }
}

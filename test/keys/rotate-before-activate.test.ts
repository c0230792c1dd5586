import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { ManualClock } from "../../src/clock.js";
import { openKeyRing } from "../../src/keys/key-ring.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function ring() {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-rotate-"));
  dirs.push(dataDir);
  return { dataDir, ring: await openKeyRing({ dataDir, alg: "EdDSA", clock: new ManualClock(), maxTokenTtlMs: 60_000 }) };
}

it("runs beforeActivate with the new key while the old one still signs", async () => {
  const { ring: r } = await ring();
  const old = r.current().kid;
  let seen: { kid: string; currentDuring: string } | undefined;
  const fresh = await r.rotate({
    beforeActivate: async (key) => {
      seen = { kid: key.kid, currentDuring: r.current().kid };
    },
  });
  expect(seen).toEqual({ kid: fresh.kid, currentDuring: old });
  expect(r.current().kid).toBe(fresh.kid);
  expect(r.jwks().keys.map((k) => k.kid)).toEqual([fresh.kid, old]);
});

it("undoes the rotation when beforeActivate fails: same signing key, no new key file", async () => {
  const { dataDir, ring: r } = await ring();
  const old = r.current().kid;
  const files = await readdir(path.join(dataDir, "keys"));
  await expect(r.rotate({ beforeActivate: async () => Promise.reject(new Error("NATS is away")) })).rejects.toThrow("NATS is away");
  expect(r.current().kid).toBe(old);
  expect(r.jwks().keys.map((k) => k.kid)).toEqual([old]);
  expect(await readdir(path.join(dataDir, "keys"))).toEqual(files);
});

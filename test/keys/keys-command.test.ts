import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { keysCommand } from "../../src/keys/keys-command.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function run(argv: string[], env: Record<string, string>) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await keysCommand(argv, { stdout: (s) => out.push(s), stderr: (s) => err.push(s), env });
  return { code, out: out.join(""), err: err.join("") };
}

it("rotates offline: the new key signs, the old one stays published, and only kids are printed", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "capvend-keys-"));
  dirs.push(dir);
  const env = { CAPVEND_DATA_DIR: dir };
  const first = await run(["list"], env);
  expect(first.code).toBe(0);
  const [signing] = first.out.trim().split("\n");
  const oldKid = signing!.split(/\s+/)[1]!;
  expect(signing).toMatch(/^signing/);

  const rotated = await run(["rotate"], env);
  expect(rotated.code).toBe(0);
  expect(rotated.out).toContain(oldKid);
  expect(rotated.out).not.toMatch(/PRIVATE KEY|"d":/);

  const after = (await run(["list"], env)).out.trim().split("\n");
  expect(after).toHaveLength(2);
  expect(after.find((l) => l.startsWith("signing"))).not.toContain(oldKid);
  expect(after.find((l) => l.startsWith("published"))).toContain(oldKid);
});

it("explains its usage and refuses bad flags", async () => {
  expect((await run(["spin"], {})).code).toBe(2);
  const bad = await run(["list", "--data-dri", "/tmp/x"], {});
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("--data-dri");
});

import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const DPDM = path.resolve("node_modules/.bin/dpdm");

/** `npm run check:cycles`'s command line, pointed at another folder. */
async function checkCycles(cwd: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(DPDM, ["--no-warning", "--no-tree", "--no-progress", "--exit-code", "circular:1", "src/**/*.ts"], { cwd });
    return { code: 0, out: stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    return { code: e.code ?? -1, out: e.stdout ?? "" };
  }
}

/**
 * The cycle check must see what the code base is written in: TypeScript ESM whose imports
 * name the compiled `.js` files, and type-only imports (a cycle of types still ties two
 * modules together).
 */
describe("the import cycle check (npm run check:cycles)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "capvend-cycles-"));
    await writeFile(path.join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", strict: true } }));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("fails on a planted cycle through .js specifiers and a type-only import, and passes once it is gone", async () => {
    const { mkdir } = await import("node:fs/promises");
    await mkdir(path.join(dir, "src", "streams"), { recursive: true });
    await writeFile(path.join(dir, "src", "streams", "hub.ts"), 'import { Stream } from "./stream.js";\nexport class Hub { s = new Stream(); }\n');
    await writeFile(path.join(dir, "src", "streams", "stream.ts"), 'import type { Hub } from "./hub.js";\nexport class Stream { hub?: Hub; }\n');
    const planted = await checkCycles(dir);
    expect(planted.code).toBe(1);
    expect(planted.out).toContain("src/streams/stream.ts -> src/streams/hub.ts");

    await writeFile(path.join(dir, "src", "streams", "stream.ts"), "export interface StreamHost { closed(): void }\nexport class Stream { host?: StreamHost; }\n");
    const clean = await checkCycles(dir);
    expect(clean.code).toBe(0);
  }, 60_000);
});

import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Tests that run replicas as separate processes start `node dist/src/cli.js`: build once
 * before any test file runs, so they always run the code under test. Type errors do not
 * stop the emit (CI type-checks in a step of its own), so they only warn here.
 */
export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  const r = spawnSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], { cwd: root, encoding: "utf8" });
  if (r.status !== 0) {
    process.stderr.write(`global-setup: tsc reported errors (dist/ was still emitted):\n${r.stdout}${r.stderr}`);
  }
}

import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Tests that run replicas as separate processes start `node dist/src/cli.js`: build once
 * before any test file runs, so they always run the code under test. Type errors do not
 * stop the emit (CI type-checks in a step of its own), so they only warn here.
 */
export default function setup(): void {
  // CAPVEND_TEST_NO_BUILD=1 skips the build, for re-running a few files whose dist/ is current.
  if (process.env.CAPVEND_TEST_NO_BUILD === "1") return;
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  // The client package first: the server's tests and benchmarks import its dist/.
  for (const project of ["clients/typescript/tsconfig.json", "tsconfig.json"]) {
    const r = spawnSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", project], { cwd: root, encoding: "utf8" });
    if (r.status !== 0) {
      process.stderr.write(`global-setup: tsc -p ${project} reported errors (its dist/ was still emitted):\n${r.stdout}${r.stderr}`);
    }
  }
}

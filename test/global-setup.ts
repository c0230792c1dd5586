import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** What the build reads: a change to any of these (name, size or time) means a rebuild. */
const INPUT_DIRS = ["src", "test", "bench", "clients/typescript/src"];
const INPUT_FILES = ["tsconfig.json", "clients/typescript/tsconfig.json", "package-lock.json"];
/** Where the fingerprint of the inputs of the last build is kept. */
const STAMP = "dist/.test-build-stamp";

/** A fingerprint of the build's inputs: every .ts/.json file's path, size and modification time. */
function inputsFingerprint(root: string): string {
  const hash = createHash("sha256");
  const add = (rel: string) => {
    const st = statSync(path.join(root, rel));
    hash.update(`${rel}\0${st.size}\0${st.mtimeMs}\n`);
  };
  const walk = (rel: string) => {
    for (const entry of readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const child = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (/\.(ts|json)$/.test(entry.name)) add(child);
    }
  };
  for (const dir of INPUT_DIRS) if (existsSync(path.join(root, dir))) walk(dir);
  for (const file of INPUT_FILES) if (existsSync(path.join(root, file))) add(file);
  return hash.digest("hex");
}

/**
 * Tests that run replicas as separate processes start `node dist/src/cli.js`: build once
 * before any test file runs, so they always run the code under test. The build is skipped
 * when nothing it reads changed since the last one (`npm test` runs the TypeScript suite on
 * two Node versions; the output is the same). Type errors do not stop the emit (CI
 * type-checks in a step of its own), so they only warn here.
 */
export default function setup(): void {
  // CAPVEND_TEST_NO_BUILD=1 skips the build, for re-running a few files whose dist/ is current.
  if (process.env.CAPVEND_TEST_NO_BUILD === "1") return;
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
  const fingerprint = inputsFingerprint(root);
  const stamp = path.join(root, STAMP);
  const built = existsSync(path.join(root, "dist/src/cli.js")) && existsSync(path.join(root, "clients/typescript/dist/index.js"));
  if (built && existsSync(stamp) && readFileSync(stamp, "utf8") === fingerprint) {
    process.stderr.write("global-setup: dist/ is current, not rebuilt\n");
    return;
  }
  let clean = true;
  // The client package first: the server's tests and benchmarks import its dist/.
  for (const project of ["clients/typescript/tsconfig.json", "tsconfig.json"]) {
    const r = spawnSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", project], { cwd: root, encoding: "utf8" });
    if (r.status !== 0) {
      clean = false;
      process.stderr.write(`global-setup: tsc -p ${project} reported errors (its dist/ was still emitted):\n${r.stdout}${r.stderr}`);
    }
  }
  // Only a clean build is remembered: one with errors is tried (and reported) again.
  if (clean) writeFileSync(stamp, fingerprint);
}

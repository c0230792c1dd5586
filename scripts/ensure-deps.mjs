// Installs the locked dependencies when they are missing or older than the lock file, so
// that `npm start` and `npm test` work as the first command in a fresh clone.
import { execSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";

const marker = "node_modules/.package-lock.json";
const stale = !existsSync(marker) || statSync(marker).mtimeMs < statSync("package-lock.json").mtimeMs;
if (stale) {
  process.stderr.write("capvend: installing dependencies (npm ci)…\n");
  execSync("npm ci --no-audit --no-fund --ignore-scripts=false", { stdio: "inherit" });
}

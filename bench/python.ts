/**
 * `npm run bench -- python`: the Python credential manager's cached get_token cost and its
 * reconnect time (clients/python/bench/bench_credential_manager.py), run in the Python suite's
 * environment (.venv/python, made by `bash scripts/test.sh python`).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

export async function main(): Promise<void> {
  const python = ".venv/python/bin/python";
  if (!existsSync(python)) {
    process.stdout.write("(not available: run `bash scripts/test.sh python` once to make .venv/python)\n");
    return;
  }
  const r = spawnSync(python, ["clients/python/bench/bench_credential_manager.py"], { stdio: "inherit" });
  if (r.status !== 0) process.stdout.write(`(python benchmark exited with ${r.status ?? r.signal})\n`);
}

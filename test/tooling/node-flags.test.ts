/**
 * `capvend serve`'s Node flags live in src/node-flags.ts, but the process has to be started
 * with them: by `npm start` and by the `capvend` command's `#!` line. They must not drift.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SERVE_NODE_FLAGS } from "../../src/node-flags.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

describe("the Node flags capvend serve runs with", () => {
  it("are passed by npm start", () => {
    const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { scripts: { start: string } };
    const run = pkg.scripts.start.split("&&").at(-1)!.trim();
    expect(run).toBe(`node ${SERVE_NODE_FLAGS.join(" ")} dist/src/cli.js serve`);
  });

  it("are passed by the capvend command's #! line", () => {
    const shebang = readFileSync(path.join(root, "src", "cli.ts"), "utf8").split("\n")[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${SERVE_NODE_FLAGS.join(" ")}`);
  });

  it("are accepted by this node", () => {
    const r = spawnSync(process.execPath, [...SERVE_NODE_FLAGS, "-e", "0"], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});

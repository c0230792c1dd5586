/**
 * @capvend/client as a user gets it: `npm pack` the package, install the tarball into a
 * fresh project outside the repo (with only its peer dependencies and the compiler from the
 * registry), compile the README's ten-line runtime with `tsc --strict`, and run it against a
 * real capvend process.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as jose from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pkgDir = path.join(root, "clients/typescript");
/** The versions the repo itself is built and tested with. */
const lock = JSON.parse(await readFile(path.join(root, "package-lock.json"), "utf8")) as { packages: Record<string, { version: string }> };
const v = (name: string) => lock.packages[`node_modules/${name}`]!.version;

let dir: string;
let r: ReplicaProcess;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "capvend-client-install-"));
  r = await startReplica();
});
afterAll(async () => {
  await r?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("@capvend/client installed from its tarball", () => {
  it("compiles the README's runtime with tsc --strict and runs it against a real server", async () => {
    // Pack (prepare builds dist/ first) and install into a project with nothing of the repo.
    const { stdout: packed } = await run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: pkgDir, maxBuffer: 10 << 20 });
    const info = JSON.parse(packed.slice(packed.indexOf("["))) as { filename: string; files: { path: string }[] }[];
    const tarball = path.join(dir, info[0]!.filename);
    const shipped = info[0]!.files.map((f) => f.path);
    expect(shipped).toContain("dist/index.js");
    expect(shipped).toContain("dist/index.d.ts");
    expect(shipped.some((f) => f.startsWith("dist/gen/capvend/v1/"))).toBe(true);
    expect(shipped.filter((f) => f.startsWith("test/") || f.includes("node_modules"))).toEqual([]);

    const app = path.join(dir, "app");
    await run("mkdir", ["-p", path.join(app, "src")]);
    await writeFile(path.join(app, "package.json"), JSON.stringify({ name: "capvend-install-check", private: true, type: "module" }));
    await writeFile(
      path.join(app, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, types: ["node"], outDir: "dist", rootDir: "src", skipLibCheck: false } }),
    );
    await run(
      "npm",
      [
        "install",
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        tarball,
        `@connectrpc/connect@${v("@connectrpc/connect")}`,
        `@connectrpc/connect-node@${v("@connectrpc/connect-node")}`,
        `@bufbuild/protobuf@${v("@bufbuild/protobuf")}`,
        `typescript@${v("typescript")}`,
        `@types/node@${v("@types/node")}`,
      ],
      { cwd: app, maxBuffer: 10 << 20 },
    );
    // Nothing of the repo leaked in: the package resolves to the installed copy.
    expect((await readdir(path.join(app, "node_modules/@capvend/client"))).sort()).toEqual(expect.arrayContaining(["dist", "package.json", "README.md"]));

    // The README's ten lines, verbatim.
    const readme = await readFile(path.join(pkgDir, "README.md"), "utf8");
    const program = /## A runtime in ten lines\s+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(program).toBeDefined();
    expect(program!.trim().split("\n").filter((l) => l.trim() !== "").length).toBeLessThanOrEqual(12);
    await writeFile(path.join(app, "src/main.ts"), program!);
    await run(process.execPath, [path.join(app, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json", "--strict"], { cwd: app }).catch((err: { stdout?: string }) => {
      throw new Error(`tsc --strict failed:\n${err.stdout}`);
    });

    // Run it against a real capvend process and a CRM that checks the token.
    const s = await r.orchestrator.startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "salesforce", scopes: ["read"] }] });
    const jwks = jose.createRemoteJWKSet(new URL(`${r.url}/.well-known/jwks.json`));
    let claims: jose.JWTPayload | undefined;
    const crm = http.createServer((req, res) => {
      jose
        .jwtVerify((req.headers.authorization ?? "").replace(/^Bearer /, ""), jwks, { audience: "salesforce" })
        .then(({ payload }) => {
          claims = payload;
          res.writeHead(200).end("[]");
        })
        .catch(() => res.writeHead(401).end());
    });
    await new Promise<void>((ok) => crm.listen(0, "127.0.0.1", ok));
    try {
      const { stdout } = await run(process.execPath, ["dist/main.js"], {
        cwd: app,
        timeout: 60_000,
        env: {
          PATH: process.env.PATH ?? "",
          CAPVEND_URLS: r.url,
          CAPVEND_SESSION_CREDENTIAL: s.sessionCredential,
          CRM_URL: `http://127.0.0.1:${(crm.address() as AddressInfo).port}`,
        },
      });
      expect(stdout.trim()).toBe("200");
      expect(claims).toMatchObject({ sid: s.sessionId, aud: "salesforce", sub: "user:alice" });
    } finally {
      await new Promise<void>((ok) => crm.close(() => ok()));
    }
  }, 240_000);
});

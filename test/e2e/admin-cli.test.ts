/**
 * The operators' CLI against a real server process: sessions, revocations, key rotation and
 * policy status/reload over the network, `--version`, and `npm install -g .` putting
 * `capvend` on the PATH.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPLICA_ORCHESTRATOR_TOKEN, startReplica, type ReplicaProcess } from "../helpers/replica-process.js";

const run = promisify(execFile);
const ROOT = path.resolve(".");
const CLI = path.join(ROOT, "dist/src/cli.js");
let server: ReplicaProcess;
let tmp: string;

beforeAll(async () => {
  server = await startReplica({ id: "cli-replica", env: { CAPVEND_KEY_PUBLISH_DELAY: "0s" } });
  tmp = await mkdtemp(path.join(os.tmpdir(), "capvend-admin-cli-"));
}, 60_000);
afterAll(async () => {
  await server?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Runs the CLI with the server's address and the orchestrator token from the environment. */
async function capvend(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: os.tmpdir(), CAPVEND_ADDRESS: server.url, CAPVEND_TOKEN: REPLICA_ORCHESTRATOR_TOKEN };
  try {
    const r = await run(process.execPath, [CLI, ...args], { env, timeout: 30_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout, err: e.stderr };
  }
}

// Each step starts a CLI process; on a loaded two-core machine that is seconds each. The timeout
// only stops a hung test: nothing here is timed.
describe("capvend CLI against a running server", { timeout: 180_000 }, () => {
  it("starts, lists, shows and ends sessions, and revokes", async () => {
    const credFile = path.join(tmp, "cred");
    const started = await capvend("session", "start", "--agent", "sales-bot", "--user", "alice", "--grant", "calendar=read@5m", "--grant", "salesforce=read,write", "--label", "env=cli", "--credential-file", credFile);
    expect(started.err).toBe("");
    expect(started.code, started.err).toBe(0);
    const sessionId = /session: (ses_\S+)/.exec(started.out)![1]!;
    expect(started.out).toContain(`credential: written to ${credFile}`);
    expect((await stat(credFile)).mode & 0o777).toBe(0o600);
    expect((await readFile(credFile, "utf8")).startsWith(sessionId)).toBe(true);

    const listed = await capvend("session", "list", "--agent", "sales-bot");
    expect(listed.code, listed.err).toBe(0);
    expect(listed.out).toContain(sessionId);
    expect(listed.out).toContain("calendar=read");
    expect((await capvend("session", "list", "--agent", "nobody")).out).not.toContain(sessionId);

    const shown = await capvend("session", "show", sessionId);
    expect(shown.code).toBe(0);
    expect(shown.out).toContain("agent:    sales-bot");
    expect(shown.out).toContain("label:    env=cli");
    expect(shown.out).toContain("grant:    calendar read ttl 300s");
    // The credential is never printed by show.
    expect(shown.out).not.toContain((await readFile(credFile, "utf8")).trim());

    // A grant no policy allows is refused at start, with the reason.
    const refused = await capvend("session", "start", "--agent", "sales-bot", "--user", "alice", "--grant", "salesforce=delete");
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("SCOPE_DENIED");

    const revoked = await capvend("revoke", "--resource", "calendar", "--reason", "cli test");
    expect(revoked.code, revoked.err).toBe(0);
    expect(revoked.out).toMatch(/revoked: rev_\S+ at \d{4}-/);

    const ended = await capvend("session", "end", sessionId, "--reason", "done");
    expect(ended.code, ended.err).toBe(0);
    expect((await capvend("session", "list", "--agent", "sales-bot")).out).not.toContain(sessionId);
    expect((await capvend("session", "list", "--agent", "sales-bot", "--all")).out).toContain(`ended`);
    const gone = await capvend("session", "show", "ses_nope");
    expect(gone.code).toBe(1);
    expect(gone.err).toContain("SESSION_NOT_FOUND");
  });

  it("rotates the key, and shows and reloads the policy", async () => {
    const before = (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    const rotated = await capvend("keys", "rotate");
    expect(rotated.code).toBe(0);
    const kid = /rotated on cli-replica: (\S+) is published/.exec(rotated.out)![1]!;
    const after = (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    expect(after.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([kid, ...before.keys.map((k) => k.kid)]));

    const status = await capvend("policy", "status");
    expect(status.code).toBe(0);
    expect(status.out).toMatch(/cli-replica\s+[0-9a-f]{16}/);
    expect(status.out).toContain("converged");
    const reload = await capvend("policy", "reload");
    expect(reload.code).toBe(0);
    expect(reload.out).toMatch(/cli-replica: policy version [0-9a-f]{16} \(unchanged\)/);
  });

  it("refuses without a credential, with a wrong one, and with bad usage", async () => {
    const noToken = await run(process.execPath, [CLI, "session", "list"], { env: { PATH: process.env.PATH ?? "", CAPVEND_ADDRESS: server.url } }).catch((e: { code: number; stderr: string }) => e);
    expect((noToken as { code: number }).code).toBe(2);
    const wrong = await run(process.execPath, [CLI, "session", "list"], { env: { PATH: process.env.PATH ?? "", CAPVEND_ADDRESS: server.url, CAPVEND_TOKEN: "not-a-known-token-0123456789" } }).catch((e: { code: number; stderr: string }) => e);
    expect((wrong as { code: number }).code).toBe(1);
    expect((wrong as { stderr: string }).stderr).toContain("UNAUTHENTICATED");
    expect((wrong as { stderr: string }).stderr).not.toContain("not-a-known-token-0123456789");
    expect((await capvend("revoke", "--agent", "a", "--user", "b")).code).toBe(2);
    expect((await capvend("session", "start", "--agent", "a", "--grant", "nonsense")).code).toBe(2);
  });

  it("prints its version, and `npm install -g .` puts capvend on the PATH", async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    expect((await capvend("--version")).out.trim()).toBe(`capvend ${pkg.version}`);
    const prefix = path.join(tmp, "global");
    await run("npm", ["install", "-g", ".", "--prefix", prefix, "--offline", "--no-audit", "--no-fund", "--ignore-scripts"], { cwd: ROOT, timeout: 120_000 });
    const onPath = await run("capvend", ["--version"], { env: { PATH: `${path.join(prefix, "bin")}:${process.env.PATH}` } });
    expect(onPath.stdout.trim()).toBe(`capvend ${pkg.version}`);
  }, 150_000);
});

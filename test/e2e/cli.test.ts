import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import https from "node:https";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { VendingService } from "../../src/gen/capvend/v1/vending_pb.js";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";
import { waitFor, waitForValue } from "../helpers/wait.js";

const CLI = path.resolve("dist/src/cli.js");
const children: ChildProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), "capvend-cli-"));
  dirs.push(d);
  return d;
}

/** Runs `capvend serve`; resolves with the port once it logs "capvend listening". */
function serve(env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, "serve"], {
    env: { ...process.env, CAPVEND_LISTEN: "127.0.0.1:0", CAPVEND_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const out: string[] = [];
  const err: string[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => out.push(l));
  createInterface({ input: child.stderr! }).on("line", (l) => err.push(l));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const listening = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" line; stdout: ${out.join("\n")}\nstderr: ${err.join("\n")}`)), 15_000);
    const check = setInterval(() => {
      const line = out.map((l) => { try { return JSON.parse(l); } catch { return undefined; } }).find((j) => j?.msg === "capvend listening");
      if (line) {
        clearTimeout(timer);
        clearInterval(check);
        resolve(Number(String(line.address).split(":").pop()));
      }
      if (child.exitCode !== null) {
        clearTimeout(timer);
        clearInterval(check);
        reject(new Error(`exited ${child.exitCode}: ${err.join("\n")}`));
      }
    }, 20);
  });
  // Tests that expect a failed start never await it.
  listening.catch(() => undefined);
  return { child, out, err, exited, listening };
}

describe("capvend serve (the real process)", () => {
  it("starts on embedded defaults, writes the orchestrator token to a 0600 file and prints only its path", async () => {
    const dataDir = await tempDir();
    const s = serve({ CAPVEND_DATA_DIR: dataDir });
    const port = await s.listening;
    const tokenFile = path.join(dataDir, "orchestrator-token");
    const token = (await readFile(tokenFile, "utf8")).trim();
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
    const logs = s.out.join("\n") + s.err.join("\n");
    expect(logs).toContain(tokenFile);
    expect(logs).not.toContain(token);

    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] });
    expect((await createClient(Health, transport).check({ service: "" })).status).toBe(1);
    const res = await createClient(VendingService, transport).startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "calendar", scopes: ["read"] }] });
    expect(res.sessionId).toMatch(/^ses_/);
    expect(s.out.join("\n")).not.toContain(res.sessionCredential);

    s.child.kill("SIGTERM");
    expect(await s.exited).toBe(0);
  });

  it("on SIGTERM tells streams to reconnect, lets them close, and exits without waiting out the grace period", async () => {
    const dataDir = await tempDir();
    // A grace longer than the test's timeout: an exit that waited it out would fail the test.
    const s = serve({ CAPVEND_DATA_DIR: dataDir, CAPVEND_ORCHESTRATOR_TOKEN: "cli-test-orchestrator-token", CAPVEND_SHUTDOWN_GRACE: "10m" });
    const port = await s.listening;
    const bearer = (t: string) => createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${t}`), next(req))] });
    const res = await createClient(VendingService, bearer("cli-test-orchestrator-token")).startSession({
      agentId: "sales-bot",
      userId: "alice",
      grants: [{ resource: "calendar", scopes: ["read"] }],
    });
    const events: string[] = [];
    let code: number | undefined;
    const reading = (async () => {
      try {
        for await (const m of createClient(VendingService, bearer(res.sessionCredential)).watchSession({ grants: [{ resource: "calendar", scopes: ["read"] }] })) {
          events.push(m.event.case ?? "");
          if (events.length === 1) s.child.kill("SIGTERM");
        }
      } catch (err) {
        code = (err as { code?: number }).code;
      }
    })();
    await reading;
    expect(events).toEqual(["tokenIssued", "reconnect"]);
    expect(code).toBe(14); // UNAVAILABLE
    expect(await s.exited).toBe(0);
  });

  it("refuses bad configuration with a message naming the setting", async () => {
    const dataDir = await tempDir();
    const s = serve({ CAPVEND_DATA_DIR: dataDir, CAPVEND_TOKEN_TTL: "15" });
    expect(await s.exited).toBe(2);
    expect(s.err.join("\n")).toContain("CAPVEND_TOKEN_TTL");
  });

  it("refuses a policy directory that does not parse, naming the file and line", async () => {
    const dataDir = await tempDir();
    const policyDir = await tempDir();
    await writeFile(path.join(policyDir, "broken.cedar"), 'permit (principal, action, resource);\n\npermit (principal action, resource);\n');
    const s = serve({ CAPVEND_DATA_DIR: dataDir, CAPVEND_POLICY_DIR: policyDir });
    expect(await s.exited).toBe(1);
    expect(s.err.join("\n")).toMatch(/broken\.cedar:3/);
  });

  it("keeps its signing key across restarts", async () => {
    const dataDir = await tempDir();
    const kidOf = async () => {
      const s = serve({ CAPVEND_DATA_DIR: dataDir });
      const port = await s.listening;
      const jwks = (await (await fetch(`http://127.0.0.1:${port}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
      s.child.kill("SIGTERM");
      await s.exited;
      return jwks.keys.map((k) => k.kid);
    };
    const first = await kidOf();
    expect(first).toHaveLength(1);
    expect(await kidOf()).toEqual(first);
  });

  it("serves TLS when given a certificate and key: gRPC over h2 (ALPN) and HTTPS for the JWKS", async () => {
    const dataDir = await tempDir();
    const tlsDir = await tempDir();
    // node:crypto cannot make X.509 certificates; openssl is on every machine of this kind.
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", path.join(tlsDir, "key.pem"), "-out", path.join(tlsDir, "cert.pem"), "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], { stdio: "ignore" });
    const ca = await readFile(path.join(tlsDir, "cert.pem"));
    const s = serve({
      CAPVEND_DATA_DIR: dataDir,
      CAPVEND_ORCHESTRATOR_TOKEN: "cli-test-orchestrator-token",
      CAPVEND_TLS_CERT: path.join(tlsDir, "cert.pem"),
      CAPVEND_TLS_KEY: path.join(tlsDir, "key.pem"),
    });
    const port = await s.listening;
    const jwks = await new Promise<string>((resolve, reject) => {
      https.get(`https://localhost:${port}/.well-known/jwks.json`, { ca }, (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve(body));
      }).on("error", reject);
    });
    expect(JSON.parse(jwks).keys).toHaveLength(1);
    const transport = createGrpcTransport({
      baseUrl: `https://localhost:${port}`,
      nodeOptions: { ca },
      interceptors: [(next) => (req) => (req.header.set("authorization", "Bearer cli-test-orchestrator-token"), next(req))],
    });
    const res = await createClient(VendingService, transport).startSession({ agentId: "sales-bot", grants: [{ resource: "calendar", scopes: ["read"] }] });
    expect(res.sessionId).toMatch(/^ses_/);
    // Cleartext is refused on a TLS port.
    await expect(fetch(`http://127.0.0.1:${port}/.well-known/jwks.json`)).rejects.toThrow();
    s.child.kill("SIGTERM");
    expect(await s.exited).toBe(0);
  });

  it("rotates its signing key on SIGHUP: new tokens use the new key, tokens of the old one still verify", async () => {
    const dataDir = await tempDir();
    const s = serve({ CAPVEND_DATA_DIR: dataDir, CAPVEND_ORCHESTRATOR_TOKEN: "cli-test-orchestrator-token", CAPVEND_KEY_PUBLISH_DELAY: "1s" });
    const port = await s.listening;
    const base = `http://127.0.0.1:${port}`;
    const bearer = (t: string) => createGrpcTransport({ baseUrl: base, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${t}`), next(req))] });
    const { sessionCredential } = await createClient(VendingService, bearer("cli-test-orchestrator-token")).startSession({ agentId: "sales-bot", userId: "alice", grants: [{ resource: "calendar", scopes: ["read"] }] });
    const runtime = createClient(VendingService, bearer(sessionCredential));
    const kidOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split(".")[0]!, "base64url").toString()).kid as string;
    const before = (await runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!;

    s.child.kill("SIGHUP");
    const keys = await waitForValue(async () => {
      const served = ((await (await fetch(`${base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys;
      return served.length >= 2 ? served : undefined;
    }, "the new key in the JWKS");
    expect(keys.map((k) => k.kid)).toContain(kidOf(before.accessToken));
    expect(keys).toHaveLength(2);
    // Published first; it signs once the publish delay (1 s here) has passed.
    await waitFor(() => s.out.join("\n").includes("signing key rotated"), "the log to say the signing key rotated");
    const after = (await runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!;
    expect(kidOf(after.accessToken)).not.toBe(kidOf(before.accessToken));
    expect(keys.map((k) => k.kid)).toContain(kidOf(after.accessToken));
    const introspect = createClient(VendingService, bearer("cli-test-orchestrator-token"));
    expect((await introspect.introspect({ token: before.accessToken })).active).toBe(true);
    expect((await introspect.introspect({ token: after.accessToken })).active).toBe(true);
    expect(s.out.join("\n")).toContain("signing key rotated");
    s.child.kill("SIGTERM");
    expect(await s.exited).toBe(0);
  });
});

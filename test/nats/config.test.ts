/** NATS settings: read from the environment, validated with errors naming the setting, turned into connection options. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { nkeys } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, DEFAULT_NATS_STARTUP_TIMEOUT_MS, DEFAULT_NATS_TIMEOUT_MS, loadConfig } from "../../src/config/config.js";
import { natsConnectionOptions, NATS_RECONNECT_WAIT_MS } from "../../src/backends/nats/connection-options.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "capvend-nats-config-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function settingOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.setting;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("NATS settings", () => {
  it("are absent without NATS_URL, whatever else is set", () => {
    expect(loadConfig({ NATS_TOKEN: "t" }).nats).toBeUndefined();
  });

  it("split NATS_URL on commas and default the timeout to 2 s", () => {
    const c = loadConfig({ NATS_URL: "nats://10.0.0.1:4222, 10.0.0.2:4222 ,tls://nats.example:4443" });
    expect(c.nats).toEqual({ servers: ["nats://10.0.0.1:4222", "10.0.0.2:4222", "tls://nats.example:4443"], timeoutMs: DEFAULT_NATS_TIMEOUT_MS, startupTimeoutMs: DEFAULT_NATS_STARTUP_TIMEOUT_MS });
    expect(c.natsUrl).toBeDefined();
  });

  it("read credentials, the timeout and the replica count", () => {
    const c = loadConfig({ NATS_URL: "nats://a:4222", NATS_USER: "capvend", NATS_PASSWORD: "pw", CAPVEND_NATS_TIMEOUT: "750ms", CAPVEND_NATS_REPLICAS: "3" });
    expect(c.nats).toMatchObject({ user: "capvend", password: "pw", timeoutMs: 750, replicas: 3 });
  });

  it("read the start-up timeout from CAPVEND_NATS_STARTUP_TIMEOUT or --nats-startup-timeout", () => {
    expect(loadConfig({ NATS_URL: "nats://a:4222", CAPVEND_NATS_STARTUP_TIMEOUT: "2m" }).nats?.startupTimeoutMs).toBe(120_000);
    expect(loadConfig({ NATS_URL: "nats://a:4222" }, ["--nats-startup-timeout", "45s"]).nats?.startupTimeoutMs).toBe(45_000);
    expect(settingOf({ NATS_URL: "nats://a:4222", CAPVEND_NATS_STARTUP_TIMEOUT: "later" })).toBe("CAPVEND_NATS_STARTUP_TIMEOUT");
    expect(settingOf({ NATS_URL: "nats://a:4222", CAPVEND_NATS_STARTUP_TIMEOUT: "10ms" })).toBe("CAPVEND_NATS_STARTUP_TIMEOUT");
  });

  it("are refused with the offending setting named", () => {
    expect(settingOf({ NATS_URL: "http://a:80" })).toBe("NATS_URL");
    expect(settingOf({ NATS_URL: " , " })).toBe("NATS_URL");
    expect(settingOf({ NATS_URL: "nats://a:4222", NATS_USER: "u" })).toBe("NATS_PASSWORD");
    expect(settingOf({ NATS_URL: "nats://a:4222", NATS_PASSWORD: "p" })).toBe("NATS_USER");
    expect(settingOf({ NATS_URL: "nats://a:4222", NATS_USER: "u", NATS_PASSWORD: "p", NATS_TOKEN: "t" })).toBe("NATS_TOKEN");
    expect(settingOf({ NATS_URL: "nats://a:4222", NATS_CREDS_FILE: path.join(dir, "missing.creds") })).toBe("NATS_CREDS_FILE");
    expect(settingOf({ NATS_URL: "nats://a:4222", CAPVEND_NATS_TIMEOUT: "soon" })).toBe("CAPVEND_NATS_TIMEOUT");
    expect(settingOf({ NATS_URL: "nats://a:4222", CAPVEND_NATS_REPLICAS: "7" })).toBe("CAPVEND_NATS_REPLICAS");
  });

  it("never echo a password given inside NATS_URL", () => {
    try {
      loadConfig({ NATS_URL: "http://capvend:hunter2-secret@a:4222" });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain("hunter2");
    }
  });
});

describe("natsConnectionOptions", () => {
  it("reconnect forever with wait and jitter, to every server, named after the replica", async () => {
    const opts = await natsConnectionOptions({ servers: ["nats://a:4222", "nats://b:4222"], timeoutMs: 2000, startupTimeoutMs: 30_000 }, "capvend r1");
    expect(opts).toMatchObject({ servers: ["nats://a:4222", "nats://b:4222"], name: "capvend r1", reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: NATS_RECONNECT_WAIT_MS });
    expect(opts.reconnectJitter).toBeGreaterThan(0);
  });

  it("pass user and password, or a token", async () => {
    expect(await natsConnectionOptions({ servers: ["a"], timeoutMs: 1, startupTimeoutMs: 30_000, user: "u", password: "p" }, "n")).toMatchObject({ user: "u", pass: "p" });
    expect(await natsConnectionOptions({ servers: ["a"], timeoutMs: 1, startupTimeoutMs: 30_000, token: "tkn" }, "n")).toMatchObject({ token: "tkn" });
  });

  it("sign with the nkey seed from NATS_NKEY_SEED_FILE", async () => {
    const user = nkeys.createUser();
    const file = path.join(dir, "user.nk");
    await writeFile(file, new TextDecoder().decode(user.getSeed()) + "\n");
    const opts = await natsConnectionOptions({ servers: ["a"], timeoutMs: 1, startupTimeoutMs: 30_000, nkeySeedFile: file }, "n");
    const auth = (opts.authenticator as (nonce?: string) => { nkey: string; sig: string })("nonce-123");
    expect(auth.nkey).toBe(user.getPublicKey());
    expect(auth.sig).toBeTruthy();
  });

  it("name the setting, not the contents, when a credential file cannot be read", async () => {
    await expect(natsConnectionOptions({ servers: ["a"], timeoutMs: 1, startupTimeoutMs: 30_000, credsFile: path.join(dir, "gone.creds") }, "n")).rejects.toThrow(/NATS_CREDS_FILE: cannot read/);
  });
});

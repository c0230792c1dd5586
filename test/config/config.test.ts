import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  ConfigError,
  DEFAULT_POLICY_DIR,
  flagsToEnv,
  loadConfig,
  type Config,
} from "../../src/config/config.js";

const HASH_A = "a".repeat(64);
const HASH_B = "0123456789abcdef".repeat(4);
const ORCH_TOKEN = "orchestrator-token-0123456789";

/** Runs loadConfig and returns the ConfigError it throws (failing the test if it does not). */
function configError(env: Record<string, string | undefined>, argv: string[] = []): ConfigError {
  try {
    loadConfig(env, argv);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected loadConfig to throw");
}

describe("loadConfig defaults", () => {
  const c: Config = loadConfig({});

  it("listens on 127.0.0.1:8080", () => {
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 8080 });
  });

  it("keeps data in ./.capvend, resolved to an absolute path", () => {
    expect(path.isAbsolute(c.dataDir)).toBe(true);
    expect(c.dataDir).toBe(path.resolve(".capvend"));
  });

  it("reads policy from the shipped examples/policy", () => {
    expect(c.policyDir).toBe(DEFAULT_POLICY_DIR);
    expect(path.isAbsolute(c.policyDir)).toBe(true);
    expect(c.policyDir.endsWith(path.join("examples", "policy"))).toBe(true);
  });

  it("has the documented issuer and timings", () => {
    expect(c.issuer).toBe("https://capvend.local");
    expect(c.tokenTtlMs).toBe(15 * 60_000);
    expect(c.maxTokenTtlMs).toBe(60 * 60_000);
    expect(c.renewLeadMs).toBe(2 * 60_000);
    expect(c.sessionMaxDurationMs).toBe(8 * 3_600_000);
    expect(c.maxMessageBytes).toBe(64 * 1024);
  });

  it("has no orchestrator token, NATS, TLS or OIDC unless configured", () => {
    expect(c.orchestratorToken).toBeUndefined();
    expect(c.natsUrl).toBeUndefined();
    expect(c.tls).toBeUndefined();
    expect(c.oidc).toBeUndefined();
    expect(c.orchestratorHashes.size).toBe(0);
    expect(c.resourceServerHashes.size).toBe(0);
    expect(c.signingAlg).toBe("EdDSA");
  });

  it("treats blank values as unset", () => {
    const b = loadConfig({ CAPVEND_LISTEN: "  ", CAPVEND_TOKEN_TTL: "", NATS_URL: " " });
    expect(b.listen).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(b.tokenTtlMs).toBe(15 * 60_000);
    expect(b.natsUrl).toBeUndefined();
  });
});

describe("loadConfig reads each environment variable", () => {
  it.each<[string, string, (c: Config) => unknown, unknown]>([
    ["CAPVEND_LISTEN", "0.0.0.0:9090", (c) => c.listen, { host: "0.0.0.0", port: 9090 }],
    ["CAPVEND_LISTEN", "[::1]:7000", (c) => c.listen, { host: "::1", port: 7000 }],
    ["CAPVEND_LISTEN", ":8443", (c) => c.listen, { host: "0.0.0.0", port: 8443 }],
    ["CAPVEND_LISTEN", "localhost:0", (c) => c.listen, { host: "localhost", port: 0 }],
    ["CAPVEND_DATA_DIR", "/var/lib/capvend", (c) => c.dataDir, "/var/lib/capvend"],
    ["CAPVEND_DATA_DIR", "rel/data", (c) => c.dataDir, path.resolve("rel/data")],
    ["CAPVEND_POLICY_DIR", "/etc/capvend/policy", (c) => c.policyDir, "/etc/capvend/policy"],
    ["CAPVEND_POLICY_DIR", "my-policy", (c) => c.policyDir, path.resolve("my-policy")],
    ["CAPVEND_ISSUER", "https://tokens.example.com", (c) => c.issuer, "https://tokens.example.com"],
    ["CAPVEND_ISSUER", "http://localhost:8080", (c) => c.issuer, "http://localhost:8080"],
    ["CAPVEND_TOKEN_TTL", "5m", (c) => c.tokenTtlMs, 5 * 60_000],
    ["CAPVEND_TOKEN_TTL", "1h", (c) => c.tokenTtlMs, 3_600_000],
    ["CAPVEND_MAX_TOKEN_TTL", "2h", (c) => c.maxTokenTtlMs, 2 * 3_600_000],
    ["CAPVEND_RENEW_LEAD", "30s", (c) => c.renewLeadMs, 30_000],
    ["CAPVEND_ORCHESTRATOR_TOKEN", ORCH_TOKEN, (c) => c.orchestratorToken, ORCH_TOKEN],
    ["NATS_URL", "nats://127.0.0.1:4222", (c) => c.natsUrl, "nats://127.0.0.1:4222"],
    ["CAPVEND_MAX_MESSAGE_BYTES", "1024", (c) => c.maxMessageBytes, 1024],
    ["CAPVEND_SESSION_MAX_DURATION", "1h", (c) => c.sessionMaxDurationMs, 3_600_000],
    ["CAPVEND_SIGNING_ALG", "ES256", (c) => c.signingAlg, "ES256"],
    ["CAPVEND_ORCHESTRATOR_HASHES", `ci=${HASH_A}, ops=${HASH_B.toUpperCase()}`, (c) => [...c.orchestratorHashes], [["ci", HASH_A], ["ops", HASH_B]]],
    ["CAPVEND_RESOURCE_SERVER_HASHES", `gw=${HASH_B}`, (c) => [...c.resourceServerHashes], [["gw", HASH_B]]],
    ["CAPVEND_SIGNING_KEY_FILES", "a.pem, b.pem,,", (c) => c.signingKeyFiles, ["a.pem", "b.pem"]],
    ["CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR", "25", (c) => c.maxSessionsPerOrchestrator, 25],
  ])("%s=%s", (name, value, get, expected) => {
    expect(get(loadConfig({ [name]: value }))).toEqual(expected);
  });

  it("reads each resource server's audiences; the quota has a default", () => {
    const c = loadConfig({ CAPVEND_RESOURCE_SERVER_HASHES: `gw=${HASH_B},cal=${HASH_A}`, CAPVEND_RESOURCE_SERVER_AUDIENCES: '{"gw":["salesforce","crm eu"],"cal":["calendar"]}' });
    expect([...c.resourceServerAudiences].map(([id, a]) => [id, [...a]])).toEqual([["gw", ["salesforce", "crm eu"]], ["cal", ["calendar"]]]);
    expect(loadConfig({}).resourceServerAudiences.size).toBe(0);
    expect(loadConfig({}).maxSessionsPerOrchestrator).toBe(1000);
  });

  it("TLS needs both cert and key", () => {
    expect(loadConfig({ CAPVEND_TLS_CERT: "c.pem", CAPVEND_TLS_KEY: "k.pem" }).tls).toEqual({ certFile: "c.pem", keyFile: "k.pem" });
  });

  it("OIDC with issuer, audience and exactly one JWKS source", () => {
    const c = loadConfig({
      CAPVEND_OIDC_ISSUER: "https://idp.example.com",
      CAPVEND_OIDC_AUDIENCE: "capvend",
      CAPVEND_OIDC_JWKS_FILE: "/etc/jwks.json",
    });
    expect(c.oidc).toEqual({ issuer: "https://idp.example.com", audience: "capvend", jwksFile: "/etc/jwks.json", jwksUrl: undefined });
  });

  it("a token TTL equal to the maximum is accepted", () => {
    const c = loadConfig({ CAPVEND_TOKEN_TTL: "1h", CAPVEND_MAX_TOKEN_TTL: "60m" });
    expect(c.tokenTtlMs).toBe(c.maxTokenTtlMs);
  });
});

describe("flags override the environment", () => {
  it("--token-ttl 5m wins over CAPVEND_TOKEN_TTL", () => {
    expect(loadConfig({ CAPVEND_TOKEN_TTL: "10m" }, ["--token-ttl", "5m"]).tokenTtlMs).toBe(5 * 60_000);
  });

  it("--name=value works too, and --nats-url sets NATS_URL", () => {
    const c = loadConfig({ CAPVEND_LISTEN: "127.0.0.1:1", NATS_URL: "nats://env:4222" }, ["--listen=127.0.0.1:9999", "--nats-url", "nats://flag:4222"]);
    expect(c.listen.port).toBe(9999);
    expect(c.natsUrl).toBe("nats://flag:4222");
  });

  it("flagsToEnv maps kebab-case flags to CAPVEND_ names", () => {
    expect(flagsToEnv(["--max-token-ttl", "2h", "--data-dir=/tmp/x", "--nats-url", "nats://n"])).toEqual({
      CAPVEND_MAX_TOKEN_TTL: "2h",
      CAPVEND_DATA_DIR: "/tmp/x",
      NATS_URL: "nats://n",
    });
  });

  it("a flag's bad value is checked like the variable's", () => {
    const e = configError({}, ["--token-ttl", "5"]);
    expect(e.setting).toBe("CAPVEND_TOKEN_TTL");
    expect(e.message).toContain("CAPVEND_TOKEN_TTL");
  });

  it("a positional argument or a flag without a value is a ConfigError", () => {
    expect(() => flagsToEnv(["serve"])).toThrow(ConfigError);
    const e = configError({}, ["--token-ttl"]);
    expect(e.message).toContain("--token-ttl");
    expect(e.message).toContain("needs a value");
  });
});

describe("bad values throw a ConfigError naming the setting", () => {
  it.each<[string, Record<string, string>, string, RegExp]>([
    ["a bare-number TTL", { CAPVEND_TOKEN_TTL: "900" }, "CAPVEND_TOKEN_TTL", /not a duration/],
    ["a TTL above the maximum", { CAPVEND_TOKEN_TTL: "2h" }, "CAPVEND_TOKEN_TTL", /must not exceed CAPVEND_MAX_TOKEN_TTL \(1h\)/],
    ["a TTL above a configured maximum", { CAPVEND_TOKEN_TTL: "20m", CAPVEND_MAX_TOKEN_TTL: "10m" }, "CAPVEND_TOKEN_TTL", /must not exceed CAPVEND_MAX_TOKEN_TTL \(10m\)/],
    ["a sub-second TTL", { CAPVEND_TOKEN_TTL: "500ms" }, "CAPVEND_TOKEN_TTL", /at least 1000 ms/],
    ["a zero max TTL", { CAPVEND_MAX_TOKEN_TTL: "0s" }, "CAPVEND_MAX_TOKEN_TTL", /at least/],
    ["a bad renew lead", { CAPVEND_RENEW_LEAD: "soon" }, "CAPVEND_RENEW_LEAD", /not a duration/],
    ["a listen address without port", { CAPVEND_LISTEN: "127.0.0.1" }, "CAPVEND_LISTEN", /not host:port/],
    ["a listen port above 65535", { CAPVEND_LISTEN: "127.0.0.1:70000" }, "CAPVEND_LISTEN", /not host:port/],
    ["a non-numeric listen port", { CAPVEND_LISTEN: "localhost:http" }, "CAPVEND_LISTEN", /not host:port/],
    ["an unbracketed IPv6 listen", { CAPVEND_LISTEN: "::1:8080" }, "CAPVEND_LISTEN", /not host:port/],
    ["an issuer that is not a URL", { CAPVEND_ISSUER: "capvend.local" }, "CAPVEND_ISSUER", /not an http\(s\) URL/],
    ["an issuer with another scheme", { CAPVEND_ISSUER: "ftp://capvend.local" }, "CAPVEND_ISSUER", /not an http\(s\) URL/],
    ["a hash entry without id", { CAPVEND_ORCHESTRATOR_HASHES: `=${HASH_A}` }, "CAPVEND_ORCHESTRATOR_HASHES", /not id=sha256hex/],
    ["a hash entry without =", { CAPVEND_ORCHESTRATOR_HASHES: "justanid" }, "CAPVEND_ORCHESTRATOR_HASHES", /not id=sha256hex/],
    ["a short hash", { CAPVEND_ORCHESTRATOR_HASHES: "ci=abc123" }, "CAPVEND_ORCHESTRATOR_HASHES", /"ci" is not 64 hex digits/],
    ["a non-hex hash", { CAPVEND_RESOURCE_SERVER_HASHES: `gw=${"z".repeat(64)}` }, "CAPVEND_RESOURCE_SERVER_HASHES", /"gw" is not 64 hex digits/],
    ["a duplicated id", { CAPVEND_ORCHESTRATOR_HASHES: `ci=${HASH_A},ci=${HASH_B}` }, "CAPVEND_ORCHESTRATOR_HASHES", /"ci" appears twice/],
    ["a TLS cert without key", { CAPVEND_TLS_CERT: "c.pem" }, "CAPVEND_TLS_KEY", /go together/],
    ["a TLS key without cert", { CAPVEND_TLS_KEY: "k.pem" }, "CAPVEND_TLS_CERT", /go together/],
    ["an OIDC issuer without audience", { CAPVEND_OIDC_ISSUER: "https://idp", CAPVEND_OIDC_JWKS_FILE: "j.json" }, "CAPVEND_OIDC_AUDIENCE", /required when CAPVEND_OIDC_ISSUER/],
    ["an OIDC issuer without JWKS", { CAPVEND_OIDC_ISSUER: "https://idp", CAPVEND_OIDC_AUDIENCE: "capvend" }, "CAPVEND_OIDC_JWKS_URL", /exactly one/],
    ["an OIDC issuer with both JWKS sources", { CAPVEND_OIDC_ISSUER: "https://idp", CAPVEND_OIDC_AUDIENCE: "capvend", CAPVEND_OIDC_JWKS_URL: "https://idp/jwks", CAPVEND_OIDC_JWKS_FILE: "j.json" }, "CAPVEND_OIDC_JWKS_URL", /exactly one/],
    ["an OIDC JWKS URL that is not a URL", { CAPVEND_OIDC_ISSUER: "https://idp", CAPVEND_OIDC_AUDIENCE: "capvend", CAPVEND_OIDC_JWKS_URL: "not a url" }, "CAPVEND_OIDC_JWKS_URL", /is not a URL/],
    ["a short orchestrator token", { CAPVEND_ORCHESTRATOR_TOKEN: "short" }, "CAPVEND_ORCHESTRATOR_TOKEN", /at least 16 characters/],
    ["a non-integer message size", { CAPVEND_MAX_MESSAGE_BYTES: "64KiB" }, "CAPVEND_MAX_MESSAGE_BYTES", /not a positive integer/],
    ["a zero message size", { CAPVEND_MAX_MESSAGE_BYTES: "0" }, "CAPVEND_MAX_MESSAGE_BYTES", /not a positive integer/],
    ["a zero session quota", { CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR: "0" }, "CAPVEND_MAX_SESSIONS_PER_ORCHESTRATOR", /not a positive integer/],
    ["audiences that are not JSON", { CAPVEND_RESOURCE_SERVER_HASHES: `gw=${HASH_B}`, CAPVEND_RESOURCE_SERVER_AUDIENCES: "gw=salesforce" }, "CAPVEND_RESOURCE_SERVER_AUDIENCES", /is not JSON/],
    ["audiences of an unknown resource server", { CAPVEND_RESOURCE_SERVER_HASHES: `gw=${HASH_B}`, CAPVEND_RESOURCE_SERVER_AUDIENCES: '{"gateway":["salesforce"]}' }, "CAPVEND_RESOURCE_SERVER_AUDIENCES", /"gateway" is not a resource server/],
    ["an empty audience list", { CAPVEND_RESOURCE_SERVER_HASHES: `gw=${HASH_B}`, CAPVEND_RESOURCE_SERVER_AUDIENCES: '{"gw":[]}' }, "CAPVEND_RESOURCE_SERVER_AUDIENCES", /non-empty list/],
    ["audiences that are not a map", { CAPVEND_RESOURCE_SERVER_HASHES: `gw=${HASH_B}`, CAPVEND_RESOURCE_SERVER_AUDIENCES: '["salesforce"]' }, "CAPVEND_RESOURCE_SERVER_AUDIENCES", /JSON object/],
    ["an unknown signing alg", { CAPVEND_SIGNING_ALG: "RS256" }, "CAPVEND_SIGNING_ALG", /not one of EdDSA, ES256/],
    ["an unknown log level", { CAPVEND_LOG_LEVEL: "loud" }, "CAPVEND_LOG_LEVEL", /not one of/],
  ])("%s", (_what, env, setting, rule) => {
    const e = configError(env);
    expect(e.name).toBe("ConfigError");
    expect(e.setting).toBe(setting);
    expect(e.message.startsWith(`${setting}: `)).toBe(true);
    expect(e.message).toMatch(rule);
  });

  it("the short orchestrator token is not echoed in the error", () => {
    const e = configError({ CAPVEND_ORCHESTRATOR_TOKEN: "s3cr3t-tok" });
    expect(e.message).not.toContain("s3cr3t-tok");
  });
});

describe("secrets in NATS_URL are not echoed", () => {
  it("a bad NATS_URL with scheme and credentials is reported with the credentials masked", () => {
    const e = configError({ NATS_URL: "http://alice:s3cret-pw@host:4222" });
    expect(e.setting).toBe("NATS_URL");
    expect(e.message).not.toContain("s3cret-pw");
    expect(e.message).toContain("***@");
  });

  // Servers without a scheme are accepted too, so the mask must not depend on "//".
  it("a bad scheme-less NATS_URL with credentials does not echo the password", () => {
    const e = configError({ NATS_URL: "nats://ok:4222,alice:s3cret-pw@" });
    expect(e.setting).toBe("NATS_URL");
    expect(e.message).not.toContain("s3cret-pw");
  });
});

describe("unknown flags", () => {
  // A typo such as --tokn-ttl must not leave the default silently in force.
  it("a mistyped flag is a ConfigError naming it", () => {
    const e = configError({}, ["--tokn-ttl", "5m"]);
    expect(e.message).toContain("--tokn-ttl");
  });
});

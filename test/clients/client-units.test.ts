import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { backoffDelay, CapvendError, DEFAULT_HEARTBEAT_TIMEOUT_MS, EVENT_BUFFER_LIMIT, REDACTED, scrubError, scrubText, scrubValue } from "@capvend/client";
import { EventFeed } from "../../clients/typescript/dist/event-feed.js";
import { TokenCache } from "../../clients/typescript/dist/token-cache.js";
import { HeartbeatInterval } from "../../clients/typescript/dist/watchdog.js";
import { ErrorInfoSchema } from "../../clients/typescript/dist/gen/google/rpc/error_details_pb.js";

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../clients/typescript");
const JWT = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyOmFsaWNlIiwianRpIjoidG9rXzEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU";

describe("backoff with full jitter", () => {
  const opts = { initialMs: 100, maxMs: 1000 };
  it("draws from [0, min(max, initial·2^n)]", () => {
    expect(backoffDelay(0, opts, () => 0)).toBe(0);
    expect(backoffDelay(0, opts, () => 0.999)).toBe(99);
    expect(backoffDelay(3, opts, () => 0.5)).toBe(400);
    expect(backoffDelay(10, opts, () => 0.999)).toBe(999);
    expect(backoffDelay(5000, opts, () => 0.999)).toBe(999);
  });
  it("spreads a fleet: many draws cover the range", () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const draws = Array.from({ length: 2000 }, () => backoffDelay(4, opts, random));
    expect(Math.min(...draws)).toBeLessThan(100);
    expect(Math.max(...draws)).toBeGreaterThan(900);
  });
});

describe("token cache rules", () => {
  const t = (id: string, expiresAt: number) => ({ jwt: `jwt-${id}`, tokenId: id, expiresAt, scopes: ["read"], stream: 1 });
  it("hands out a token only with enough remaining life", () => {
    const c = new TokenCache();
    c.put(0, t("a", 10_000));
    expect(c.usable(0, 8_000, 1000)?.tokenId).toBe("a");
    expect(c.usable(0, 9_500, 1000)).toBeUndefined();
  });
  it("forgets a revoked token at once and refuses it if it is pushed again", () => {
    const c = new TokenCache();
    c.put(0, t("a", 10_000));
    expect(c.revokeTokens(["a", "zzz"])).toEqual([0]);
    expect(c.usable(0, 0, 0)).toBeUndefined();
    expect(c.put(0, t("a", 10_000))).toBe(false);
    expect(c.put(0, t("b", 10_000))).toBe(true);
  });
  it("a stopped grant takes no token again", () => {
    const c = new TokenCache();
    c.put(1, t("a", 10_000));
    c.stop(1, "revoked by test");
    expect(c.held(1)).toBeUndefined();
    expect(c.put(1, t("b", 10_000))).toBe(false);
    expect(c.stopped(1)).toEqual({ reason: "revoked by test", tokenIds: ["a"] });
  });
});

describe("event feed", () => {
  it("delivers to every subscriber and ends them at close", async () => {
    const feed = new EventFeed<number>();
    const a = feed.subscribe();
    const b = feed.subscribe();
    feed.publish(1);
    feed.publish(2);
    feed.close();
    const all = async (it: AsyncIterable<number>) => {
      const out: number[] = [];
      for await (const x of it) out.push(x);
      return out;
    };
    expect(await all(a)).toEqual([1, 2]);
    expect(await all(b)).toEqual([1, 2]);
    expect(feed.size).toBe(0);
  });
  it("a reader that stops reading loses its oldest events, not the others", async () => {
    const feed = new EventFeed<number>();
    const slow = feed.subscribe();
    for (let i = 0; i < EVENT_BUFFER_LIMIT + 10; i++) feed.publish(i);
    expect((await slow.next()).value).toBe(10);
  });
  it("breaking out of for-await detaches the subscriber; an aborted signal ends it", async () => {
    const feed = new EventFeed<number>();
    const it = feed.subscribe();
    feed.publish(1);
    for await (const _ of it) break;
    expect(feed.size).toBe(0);
    const ac = new AbortController();
    const it2 = feed.subscribe(ac.signal);
    const pending = it2.next();
    ac.abort();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(feed.size).toBe(0);
  });
});

describe("heartbeat interval learned from the stream", () => {
  it("uses the default until two heartbeats are seen, then 3 × the smallest gap", () => {
    const h = new HeartbeatInterval();
    expect(h.timeoutMs(undefined)).toBe(DEFAULT_HEARTBEAT_TIMEOUT_MS);
    h.observe(1000);
    expect(h.timeoutMs(undefined)).toBe(DEFAULT_HEARTBEAT_TIMEOUT_MS);
    h.observe(3000);
    h.observe(4000);
    expect(h.intervalMs).toBe(1000);
    expect(h.timeoutMs(undefined)).toBe(3000);
    expect(h.timeoutMs(750)).toBe(750);
    // A new stream's first heartbeat is not a gap from the old stream's last.
    h.resetStream();
    h.observe(4100);
    expect(h.intervalMs).toBe(1000);
  });
});

describe("scrubbing", () => {
  it("removes JWTs, session credentials, bearer values and known secrets", () => {
    const cred = "ses_0123456789abcdefghijklmn.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const text = `token ${JWT} cred ${cred} header Authorization: Bearer opaque-123 custom s3cr3t-value-xyz`;
    const out = scrubText(text, ["s3cr3t-value-xyz"]);
    expect(out).not.toContain(JWT);
    expect(out).not.toContain(cred);
    expect(out).not.toContain("opaque-123");
    expect(out).not.toContain("s3cr3t-value-xyz");
    expect(out).toContain(REDACTED);
    expect(out.startsWith("token ")).toBe(true);
  });
  it("walks results (arrays, objects, maps, cycles) without changing the original", () => {
    const original: Record<string, unknown> = { a: [JWT, 1, { b: `x ${JWT}` }], m: new Map([["k", JWT]]), n: null };
    original.self = original;
    const out = scrubValue(original) as typeof original;
    expect(JSON.stringify({ ...out, self: undefined, m: [...(out.m as Map<string, string>)] })).not.toContain(JWT);
    expect(out.self).toBe(out);
    expect((original.a as unknown[])[0]).toBe(JWT);
  });
  it("scrubs an error's message, stack, fields and cause", () => {
    const err = Object.assign(new Error(`call failed with ${JWT}`, { cause: new Error(`inner Bearer ${JWT}`) }), { request: { headers: { authorization: `Bearer ${JWT}` } } });
    const out = scrubError(err) as Error & { request: unknown };
    expect(out).toBe(err);
    expect(JSON.stringify([out.message, out.stack, (out.cause as Error).message, out.request])).not.toContain(JWT);
  });
});

describe("CapvendError", () => {
  const withInfo = (code: Code, reason: string, metadata: Record<string, string> = {}, domain = "capvend.dev") =>
    new ConnectError("refused", code, undefined, [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain, metadata }) }]);

  it("takes its code from the ErrorInfo reason, with metadata and retryability", () => {
    const e = CapvendError.from(withInfo(Code.PermissionDenied, "SCOPE_NOT_GRANTED", { resource: "crm", scope: "delete" }));
    expect(e).toBeInstanceOf(CapvendError);
    expect(e.code).toBe("SCOPE_NOT_GRANTED");
    expect(e.grpcCode).toBe(Code.PermissionDenied);
    expect(e.metadata).toEqual({ resource: "crm", scope: "delete" });
    expect(e.retryable).toBe(false);
    expect(CapvendError.from(withInfo(Code.Unavailable, "RESUME_AHEAD")).retryable).toBe(true);
  });
  it("an error without capvend's ErrorInfo is TRANSPORT; an unknown reason is UNKNOWN", () => {
    expect(CapvendError.from(new ConnectError("reset", Code.Unavailable)).code).toBe("TRANSPORT");
    expect(CapvendError.from(withInfo(Code.Unavailable, "DRAINING", {}, "example.com")).code).toBe("TRANSPORT");
    const unknown = CapvendError.from(withInfo(Code.Aborted, "SOMETHING_NEW"));
    expect(unknown.code).toBe("UNKNOWN");
    expect(unknown.metadata.reason).toBe("SOMETHING_NEW");
  });
});

describe("the package runs in browsers", () => {
  it("nothing it ships imports node:* or a module outside its peer dependencies", () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(dir, e.name));
        else if (e.name.endsWith(".js")) files.push(path.join(dir, e.name));
      }
    };
    walk(path.join(pkg, "dist"));
    expect(files.length).toBeGreaterThan(10);
    const specifiers = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(f, "utf8").matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
        specifiers.add((m[1] ?? m[2])!);
      }
    }
    const outside = [...specifiers].filter((s) => !s.startsWith("./") && !s.startsWith("../") && !/^@connectrpc\/connect(\/|$)|^@bufbuild\/protobuf(\/|$)/.test(s));
    expect(outside).toEqual([]);
    expect([...specifiers].some((s) => s.startsWith("@connectrpc/connect"))).toBe(true);
  });
  it("the package declares what an installer needs", () => {
    const p = JSON.parse(readFileSync(path.join(pkg, "package.json"), "utf8"));
    expect(p.name).toBe("@capvend/client");
    expect(p.exports["."]).toEqual({ types: "./dist/index.d.ts", import: "./dist/index.js" });
    expect(p.exports["./gen/*"]).toEqual({ types: "./dist/gen/*.d.ts", import: "./dist/gen/*.js" });
    expect(Object.keys(p.peerDependencies).sort()).toEqual(["@bufbuild/protobuf", "@connectrpc/connect"]);
    expect(p.dependencies ?? {}).toEqual({});
    expect(p.files).toContain("dist");
  });
});

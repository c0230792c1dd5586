/**
 * Token signing throughput: jose's SignJWT (WebCrypto) against the minter's hand-built
 * compact JWS over node:crypto.sign, for EdDSA and ES256, with identical claims.
 * Each method gets RUNS timed runs of RUN_MS after a warm-up, interleaved so that drift
 * (thermal, noisy neighbours) hits both alike; the median is the figure to quote.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { SignJWT, generateKeyPair } from "jose";
import { systemClock } from "../src/clock.js";
import { openKeyRing } from "../src/keys/key-ring.js";
import type { SigningAlg } from "../src/keys/signing-key.js";
import { createMinter } from "../src/tokens/mint.js";

const RUNS = 5;
const RUN_MS = 1000;
const WARMUP_MS = 300;
const BATCH = 64;
const TTL_MS = 15 * 60 * 1000;
const ISSUER = "https://capvend.local";

interface Stats {
  median: number;
  min: number;
  max: number;
}

/** Tokens per second of `fn` over `ms`, checking the clock every BATCH calls. */
async function rate(fn: () => unknown, ms: number): Promise<number> {
  let n = 0;
  const start = performance.now();
  const end = start + ms;
  let now = start;
  while (now < end) {
    for (let i = 0; i < BATCH; i++) await fn();
    n += BATCH;
    now = performance.now();
  }
  return n / ((now - start) / 1000);
}

function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}

const fmt = (x: number) => Math.round(x).toLocaleString("en-US").padStart(8);

async function benchAlg(alg: SigningAlg, dataDir: string): Promise<{ jose: Stats; node: Stats }> {
  const ring = await openKeyRing({ dataDir, alg, clock: systemClock, maxTokenTtlMs: TTL_MS });
  const minter = createMinter({ keyRing: ring, issuer: ISSUER, clock: systemClock });
  const { privateKey } = await generateKeyPair(alg, { extractable: false });
  const kid = ring.current().kid;

  const viaJose = () => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      sub: "user:alice",
      act: { sub: "agent:sales-bot" },
      client_id: "sales-bot",
      sid: "ses_bench",
      scope: "read write",
    })
      .setProtectedHeader({ alg, typ: "at+jwt", kid })
      .setIssuer(ISSUER)
      .setAudience("salesforce")
      .setJti(`tok_${randomBytes(16).toString("base64url")}`)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + TTL_MS / 1000)
      .sign(privateKey);
  };
  const viaNode = () =>
    minter.mint({
      agentId: "sales-bot",
      userId: "alice",
      sessionId: "ses_bench",
      resource: "salesforce",
      scopes: ["read", "write"],
      expiresAtMs: Date.now() + TTL_MS,
    });

  await rate(viaJose, WARMUP_MS);
  await rate(viaNode, WARMUP_MS);
  const jose: number[] = [];
  const node: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    jose.push(await rate(viaJose, RUN_MS));
    node.push(await rate(viaNode, RUN_MS));
  }
  ring.close();
  return { jose: stats(jose), node: stats(node) };
}

/** Prints tokens/s (median, min, max of RUNS runs) per alg and method, and the speed-up. */
export async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "capvend-bench-sign-"));
  try {
    console.log(`sign benchmark: ${RUNS} runs x ${RUN_MS} ms per method, one token at a time, node ${process.version}`);
    console.log("alg     method                          median       min       max  tokens/s");
    for (const alg of ["EdDSA", "ES256"] as const) {
      const { jose, node } = await benchAlg(alg, join(dir, alg));
      const row = (name: string, s: Stats) =>
        console.log(`${alg.padEnd(7)} ${name.padEnd(28)} ${fmt(s.median)}  ${fmt(s.min)}  ${fmt(s.max)}`);
      row("jose SignJWT", jose);
      row("minter (node:crypto.sign)", node);
      console.log(`${alg.padEnd(7)} ratio minter/jose (median)      ${(node.median / jose.median).toFixed(2)}x`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}

import * as jose from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.js";
import { rotateWithPublishDelay } from "../../src/keys/rotate.js";
import { startHarness, startSalesSession, type Harness } from "../helpers/harness.js";

/**
 * A verifier as resource servers usually run one: it fetches the JWKS, keeps it for the
 * `max-age` the response allows, and only then fetches again. It never refetches on an
 * unknown kid, so a key that signs before the verifier has it is a failed verification.
 */
class CachingVerifier {
  #jwks: ReturnType<typeof jose.createLocalJWKSet> | undefined;
  #freshUntil = 0;
  #refreshing: Promise<void> | undefined;
  fetches = 0;
  ok = 0;
  failed: string[] = [];

  constructor(
    readonly url: string,
    /** Overrides the response's max-age (ms), to model a verifier that caches longer than told. */
    readonly cacheMs?: number,
  ) {}

  async #keys() {
    if (Date.now() >= this.#freshUntil) {
      this.#refreshing ??= (async () => {
        const res = await fetch(`${this.url}/.well-known/jwks.json`);
        const maxAge = /max-age=(\d+)/.exec(res.headers.get("cache-control") ?? "")?.[1];
        this.#jwks = jose.createLocalJWKSet((await res.json()) as jose.JSONWebKeySet);
        this.#freshUntil = Date.now() + (this.cacheMs ?? Number(maxAge ?? 0) * 1000);
        this.fetches++;
      })().finally(() => (this.#refreshing = undefined));
      await this.#refreshing;
    }
    return this.#jwks!;
  }

  async verify(jwt: string): Promise<void> {
    try {
      await jose.jwtVerify(jwt, await this.#keys(), { issuer: "https://capvend.local" });
      this.ok++;
    } catch (err) {
      this.failed.push(`${jose.decodeProtectedHeader(jwt).kid}: ${(err as Error).message}`);
    }
  }
}

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe("key rotation under issuance load", () => {
  it("leaves zero failed verifications for verifiers that refresh the JWKS when its max-age lapses", async () => {
    // A 2 s publish delay gives a JWKS max-age of 1 s.
    h = await startHarness({ settings: { keyPublishDelayMs: 2000 } });
    const jwksRes = await fetch(`${h.url}/.well-known/jwks.json`);
    expect(jwksRes.headers.get("cache-control")).toBe("public, max-age=1");
    const verifiers = Array.from({ length: 3 }, () => new CachingVerifier(h!.url));
    const s = await startSalesSession(h);
    const oldKid = h.keyRing.current().kid;
    const kids = new Map<string, number>();
    const oldTokens: string[] = [];

    let stop = false;
    const loops = Array.from({ length: 4 }, async (_, i) => {
      let n = 0;
      while (!stop) {
        const { token } = await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] });
        const jwt = token!.accessToken;
        const kid = jose.decodeProtectedHeader(jwt).kid!;
        kids.set(kid, (kids.get(kid) ?? 0) + 1);
        if (kid === oldKid && oldTokens.length < 20) oldTokens.push(jwt);
        await verifiers[(i + n++) % verifiers.length]!.verify(jwt);
      }
    });

    // Load first, then rotate in the middle of it.
    while ((kids.get(oldKid) ?? 0) < 50) await new Promise((r) => setTimeout(r, 20));
    const rotation = await rotateWithPublishDelay(h.keyRing, { clock: systemClock, publishDelayMs: 2000 });
    expect(rotation.retired).toBe(oldKid);
    // Published, not yet signing.
    expect(h.keyRing.jwks().keys.map((k) => k.kid)).toContain(rotation.kid);
    expect(h.keyRing.current().kid).toBe(oldKid);
    await rotation.activated;
    expect(h.keyRing.current().kid).toBe(rotation.kid);
    // Keep the load on until the new key has signed plenty.
    while ((kids.get(rotation.kid) ?? 0) < 100) await new Promise((r) => setTimeout(r, 20));
    stop = true;
    await Promise.all(loops);

    // Tokens of the retired key still verify after the rotation (it stays published).
    for (const jwt of oldTokens) await verifiers[0]!.verify(jwt);

    const failed = verifiers.flatMap((v) => v.failed);
    const ok = verifiers.reduce((n, v) => n + v.ok, 0);
    console.log(
      `rotation under load: ${ok} verifications, ${failed.length} failed; tokens by the old key ${kids.get(oldKid)}, by the new key ${kids.get(rotation.kid)}; JWKS fetches ${verifiers.map((v) => v.fetches).join("/")}`,
    );
    expect(failed).toEqual([]);
    expect(ok).toBe((kids.get(oldKid) ?? 0) + (kids.get(rotation.kid) ?? 0) + oldTokens.length);
    // The verifiers did refresh on their schedule during the test (not one lucky fetch).
    for (const v of verifiers) expect(v.fetches).toBeGreaterThanOrEqual(2);
  });

  it("the same verifiers fail when a new key signs before they could have fetched it (the check above can fail)", async () => {
    h = await startHarness({ settings: { keyPublishDelayMs: 0 } });
    const verifier = new CachingVerifier(h.url, 60_000);
    const s = await startSalesSession(h);
    await verifier.verify((await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!.accessToken);
    expect(verifier.failed).toEqual([]);
    const rotation = await rotateWithPublishDelay(h.keyRing, { clock: systemClock, publishDelayMs: 0 });
    await rotation.activated;
    await verifier.verify((await s.runtime.issueToken({ resource: "calendar", scopes: ["read"] })).token!.accessToken);
    expect(verifier.failed).toHaveLength(1);
    expect(verifier.failed[0]).toContain(rotation.kid);
  });
});

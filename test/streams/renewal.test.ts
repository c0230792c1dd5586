import { describe, expect, it } from "vitest";
import { needsRenewal, renewalLead, renewAt, RENEW_JITTER_FRACTION } from "../../src/streams/renewal.js";

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const LEAD = 2 * M;

/** A tiny deterministic PRNG so a failure reproduces. */
function mulberry32(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("renewAt", () => {
  it("uses min(lead, ttl/3) as the lead", () => {
    expect(renewalLead(0, 15 * M, LEAD)).toBe(LEAD);
    expect(renewalLead(0, 3 * S, LEAD)).toBe(1 * S);
    expect(renewalLead(0, 6 * M, LEAD)).toBe(LEAD);
    expect(renewalLead(0, 5 * M, LEAD)).toBe(100 * S);
  });

  it("renews a 15-minute token 2 minutes before expiry, up to 10% of the lead earlier", () => {
    expect(renewAt(0, 15 * M, LEAD, 0)).toBe(13 * M);
    expect(renewAt(0, 15 * M, LEAD, 0.999999)).toBeGreaterThanOrEqual(13 * M - 12 * S);
    expect(renewAt(0, 15 * M, LEAD, 0.5)).toBe(13 * M - 6 * S);
  });

  it("renews a 3-second token with about a second to spare", () => {
    const at = renewAt(10_000, 13_000, LEAD, 0);
    expect(at).toBe(12_000);
    expect(renewAt(10_000, 13_000, LEAD, 1)).toBe(11_900);
  });

  it("stays within bounds for every TTL from 3 s to 1 h and any jitter", () => {
    const rnd = mulberry32(42);
    for (let ttl = 3 * S; ttl <= H; ttl += 997) {
      const issued = 1_000_000;
      const lead = renewalLead(issued, issued + ttl, LEAD);
      for (let i = 0; i < 5; i++) {
        const j = rnd();
        const at = renewAt(issued, issued + ttl, LEAD, j);
        expect(at).toBeLessThan(issued + ttl);
        expect(at).toBeGreaterThanOrEqual(issued);
        // Remaining life at renewal: the lead, plus at most 10% of it (and a ms of rounding).
        const remaining = issued + ttl - at;
        expect(remaining).toBeGreaterThanOrEqual(lead - 1);
        expect(remaining).toBeLessThanOrEqual(lead * (1 + RENEW_JITTER_FRACTION) + 1);
      }
    }
  });

  it("spreads a fleet's renewals across the jitter window instead of one instant", () => {
    const rnd = mulberry32(7);
    const ats = Array.from({ length: 10_000 }, () => renewAt(0, 15 * M, LEAD, rnd()));
    const min = Math.min(...ats);
    const max = Math.max(...ats);
    expect(max - min).toBeGreaterThan(11 * S); // the window is 12 s wide
    // Roughly uniform: each of 4 quarters of the window gets 20–30% of the renewals.
    const width = 12 * S;
    const quarters = [0, 0, 0, 0];
    for (const a of ats) quarters[Math.min(3, Math.floor(((13 * M - a) / width) * 4))]!++;
    for (const q of quarters) expect(q / ats.length).toBeGreaterThan(0.2), expect(q / ats.length).toBeLessThan(0.3);
  });
});

describe("needsRenewal", () => {
  it("stops once the current token already reaches the session's end", () => {
    expect(needsRenewal(10 * M, 20 * M, 0)).toBe(true);
    expect(needsRenewal(20 * M, 20 * M, 0)).toBe(false);
    expect(needsRenewal(10 * M, 20 * M, 20 * M - 500)).toBe(false);
    // A token clipped to a session ending mid-second already runs to the last whole second.
    expect(needsRenewal(20 * M, 20 * M + 700, 0)).toBe(false);
    expect(needsRenewal(20 * M - 1000, 20 * M + 700, 0)).toBe(true);
  });
});

/**
 * The no-gap invariant, simulated: for 24 hours of fake time, each of many grants with a
 * random TTL is renewed at renewAt() and its new token is clipped to the session's end. At
 * every instant each grant must hold a valid token, and a new one must arrive while the
 * old is still valid.
 */
describe("24 hours of renewals never leave a grant without a valid token", () => {
  it("holds for 200 grants with random TTLs between 3 s and 1 h", () => {
    const rnd = mulberry32(2026);
    const start = Date.UTC(2026, 0, 1);
    const sessionEnd = start + 24 * H;
    let renewals = 0;
    let clipped = 0;
    // Tens of thousands of checks: gathered here and asserted once (an expect() each costs
    // more than the arithmetic), naming the first few that fail.
    const broken: string[] = [];
    const check = (ok: boolean, what: () => string) => {
      if (!ok && broken.length < 10) broken.push(what());
    };
    for (let g = 0; g < 200; g++) {
      const ttl = Math.floor(3 * S + rnd() * (H - 3 * S));
      let issued = start;
      // exp is whole seconds, like the JWT's.
      let exp = Math.floor(Math.min(issued + ttl, sessionEnd) / 1000) * 1000;
      for (;;) {
        check(exp > issued, () => `grant ${g}: exp ${exp} not after issue ${issued}`);
        if (!needsRenewal(exp, sessionEnd, issued)) break;
        const at = renewAt(issued, exp, LEAD, rnd());
        // The replacement is minted while the current token is valid…
        check(at < exp && at >= issued, () => `grant ${g}: renewal at ${at} outside [${issued}, ${exp})`);
        // …and with real margin: at least min(lead, ttl/3) minus a millisecond of rounding.
        check(exp - at >= Math.min(LEAD, (exp - issued) / 3) - 1, () => `grant ${g}: renewal at ${at} only ${exp - at} ms before expiry`);
        issued = at;
        const next = Math.floor(Math.min(issued + ttl, sessionEnd) / 1000) * 1000;
        if (next < issued + ttl) clipped++;
        exp = next;
        renewals++;
      }
      // The last token runs to the session's end (within the second the JWT rounds to).
      check(sessionEnd - exp < S, () => `grant ${g}: last token ends ${sessionEnd - exp} ms before the session`);
    }
    expect(broken).toEqual([]);
    expect(renewals).toBeGreaterThan(10_000);
    expect(clipped).toBeGreaterThan(0);
  });
});

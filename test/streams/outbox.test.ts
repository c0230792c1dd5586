import { describe, expect, it } from "vitest";
import { MAX_PENDING_CONTROL, Outbox } from "../../src/streams/outbox.js";

describe("Outbox", () => {
  it("sends control events first and in order, then the newest token per grant, then one heartbeat", async () => {
    const o = new Outbox<string>();
    o.heartbeat();
    o.pushToken(0, "t0-old");
    o.pushToken(1, "t1");
    o.pushControl({ kind: "revoked", tokenIds: ["a"], grantIndexes: [], reason: "r1" });
    o.pushToken(0, "t0-new");
    o.heartbeat();
    o.pushControl({ kind: "session_ended", reason: "r2" });
    const kinds = [];
    while (o.pending > 0) {
      const item = await o.next();
      kinds.push(item?.kind === "token" ? `token:${item.token}` : item?.kind);
    }
    expect(kinds).toEqual(["revoked", "session_ended", "token:t1", "token:t0-new", "heartbeat"]);
  });

  it("wakes a waiting reader and resolves undefined on abort or close", async () => {
    const o = new Outbox<string>();
    const p = o.next();
    o.pushToken(3, "x");
    expect(await p).toEqual({ kind: "token", grantIndex: 3, token: "x" });
    const ac = new AbortController();
    const q = o.next(ac.signal);
    ac.abort();
    expect(await q).toBeUndefined();
    const r = o.next();
    o.close();
    expect(await r).toBeUndefined();
    o.pushToken(1, "after close");
    expect(o.pending).toBe(0);
  });

  it("drops an unsent token on request", () => {
    const o = new Outbox<string>();
    o.pushToken(0, "x");
    expect(o.dropToken(0)).toBe("x");
    expect(o.pending).toBe(0);
  });

  it("refuses control events beyond its bound instead of growing without limit", () => {
    const o = new Outbox<string>();
    for (let i = 0; i < MAX_PENDING_CONTROL; i++) expect(o.pushControl({ kind: "reconnect", reason: String(i) })).toBe(true);
    expect(o.pushControl({ kind: "reconnect", reason: "one too many" })).toBe(false);
  });
});

import { describe, expect, it } from "vitest";
import { feedPositionOf, nextRevision, REVISION_COUNTER_BITS } from "../../src/streams/revision.js";

describe("stream revisions", () => {
  it("only grow, and carry the feed position they were sent at", () => {
    let r = 0n;
    const seen: bigint[] = [];
    for (const pos of [0, 0, 0, 3, 3, 3, 7, 7]) {
      r = nextRevision(pos, r);
      seen.push(r);
      expect(feedPositionOf(r)).toBe(pos);
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i]! > seen[i - 1]!).toBe(true);
  });

  it("continue above a resumed revision even at a lower feed position", () => {
    const resumed = (5n << REVISION_COUNTER_BITS) + 9n;
    const r = nextRevision(5, resumed);
    expect(r).toBe(resumed + 1n);
  });
});

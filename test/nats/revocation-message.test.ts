/** The revocation message schema is a public interface: pin its field names and its checks. */
import { describe, expect, it } from "vitest";
import { decodeRevocation, encodeRevocation, revocationSubject } from "../../src/backends/nats/revocation-message.js";
import type { Revocation } from "../../src/backends/types.js";

const r: Revocation = { id: "rev_abc", kind: "user_id", value: "alice", reason: "left", revokedAt: 1_764_300_000_123, expiresAt: 1_764_328_800_123, by: "orchestrator:dev", seq: 7 };

describe("revocation messages", () => {
  it("go on capvend.revocations.<kind> as the documented JSON, without the feed position", () => {
    expect(revocationSubject("user_id")).toBe("capvend.revocations.user_id");
    expect(JSON.parse(new TextDecoder().decode(encodeRevocation(r, "capvend-1")))).toEqual({
      v: 1,
      id: "rev_abc",
      kind: "user_id",
      value: "alice",
      reason: "left",
      revoked_at_ms: 1_764_300_000_123,
      expires_at_ms: 1_764_328_800_123,
      by: "orchestrator:dev",
      replica: "capvend-1",
    });
  });

  it("decode back to the revocation, ignoring unknown fields", () => {
    const data = new TextEncoder().encode(JSON.stringify({ ...JSON.parse(new TextDecoder().decode(encodeRevocation(r))), future_field: true }));
    const { seq: _seq, ...rest } = r;
    expect(decodeRevocation(data, "capvend.revocations.user_id")).toEqual({ revocation: rest });
  });

  it("refuse what does not hold a revocation, saying which field without echoing it", () => {
    const bad = (o: unknown, subject = "capvend.revocations.user_id") => decodeRevocation(new TextEncoder().encode(JSON.stringify(o)), subject);
    const good = JSON.parse(new TextDecoder().decode(encodeRevocation(r)));
    expect(decodeRevocation(new TextEncoder().encode("{"), "x.user_id")).toEqual({ error: "not JSON" });
    expect(bad([1])).toEqual({ error: "not a JSON object" });
    expect(bad({ ...good, v: "1" })).toMatchObject({ error: expect.stringContaining('"v"') });
    expect(bad({ ...good, kind: "everything" })).toMatchObject({ error: expect.stringContaining('"kind"') });
    expect(bad(good, "capvend.revocations.agent_id")).toMatchObject({ error: expect.stringContaining("subject") });
    expect(bad({ ...good, value: "" })).toMatchObject({ error: expect.stringContaining('"value"') });
    expect(bad({ ...good, revoked_at_ms: 1.5 })).toMatchObject({ error: expect.stringContaining('"revoked_at_ms"') });
    expect(bad({ ...good, reason: "x".repeat(5000) })).toMatchObject({ error: expect.stringContaining('"reason"') });
  });
});

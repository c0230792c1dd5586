/** Failed authentications are recorded one by one up to a limit per window, then summarised: a flood cannot fill the disk. */
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { createDecisionLog, describeCredential } from "../../src/audit/decision-log.js";
import { createMemoryAuditSink } from "../../src/audit/memory-sink.js";
import { ManualClock } from "../../src/clock.js";
import { capvendError } from "../../src/errors.js";

describe("failed-authentication records", () => {
  it("records the first N of a window, counts the rest, and writes one summary per window", async () => {
    const clock = new ManualClock();
    const audit = createMemoryAuditSink({ clock });
    const log = createDecisionLog({ audit, clock, maxRecordsPerWindow: 5, windowMs: 60_000 });
    const err = capvendError("UNKNOWN_CREDENTIAL", "unknown credential");
    for (let i = 0; i < 1000; i++) await log.authFailed({ method: "IssueToken", authorization: `Bearer attacker-${i}-xxxxxxxxxxxxxxxx`, error: err });
    expect(audit.find({ type: "auth.failed" })).toHaveLength(5);
    expect(audit.find({ type: "auth.failed.summary" })).toHaveLength(0);
    clock.advance(60_000);
    await new Promise((r) => setImmediate(r));
    const [summary] = audit.find({ type: "auth.failed.summary" });
    expect(summary).toMatchObject({ decision: "deny", details: { suppressed: 995, "count.bearer.UNKNOWN_CREDENTIAL": 995, recorded_individually: 5 } });
    // A new window records again.
    await log.authFailed({ method: "IssueToken", authorization: null, error: capvendError("MISSING_CREDENTIAL", "missing") });
    expect(audit.find({ type: "auth.failed" })).toHaveLength(6);
    await log.close();
    expect(audit.records).toHaveLength(7);
  });

  it("writes the pending summary on close", async () => {
    const clock = new ManualClock();
    const audit = createMemoryAuditSink({ clock });
    const log = createDecisionLog({ audit, clock, maxRecordsPerWindow: 1 });
    const err = new ConnectError("nope", Code.Unauthenticated);
    await log.authFailed({ method: "Revoke", authorization: "Basic abc", error: err });
    await log.authFailed({ method: "Revoke", authorization: "Basic abc", error: err });
    await log.close();
    expect(audit.find({ type: "auth.failed" })[0]).toMatchObject({ details: { credential_kind: "malformed" } });
    expect(audit.find({ type: "auth.failed.summary" })[0]).toMatchObject({ details: { suppressed: 1 } });
  });

  it("describes a credential by kind and an 8-digit hash prefix, never by value", () => {
    expect(describeCredential(null)).toEqual({ kind: "none" });
    const s = describeCredential(`Bearer ses_${"a".repeat(22)}.${"b".repeat(43)}`);
    expect(s).toMatchObject({ kind: "session", sessionId: `ses_${"a".repeat(22)}` });
    expect(s.sha256Prefix).toMatch(/^[0-9a-f]{8}$/);
    expect(describeCredential("Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln").kind).toBe("jwt");
    expect(describeCredential("Bearer cvo_whatever").kind).toBe("bearer");
  });
});

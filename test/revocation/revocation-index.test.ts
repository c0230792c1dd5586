import { describe, expect, it } from "vitest";
import { RevocationIndex } from "../../src/backends/revocation-index.js";
import { REVOCATION_KINDS, type Revocation, type RevocationKind, type SessionSubject, type TokenSubject } from "../../src/backends/types.js";
import { revokesSession, revokesToken } from "../../src/backends/revocation-rules.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0); // a whole second
const HOUR = 3_600_000;

let n = 0;
function rule(kind: RevocationKind, value: string, revokedAt: number, expiresAt = revokedAt + HOUR): Revocation {
  return { id: `rev_${++n}`, kind, value, reason: "test", revokedAt, expiresAt, by: "orchestrator:dev" };
}

const token: TokenSubject = {
  jti: "tok_1",
  sessionId: "ses_A",
  agentId: "sales-bot",
  userId: "alice",
  resource: "salesforce",
  issuedAtSec: T0 / 1000,
};

const session: SessionSubject = { sessionId: "ses_A", agentId: "sales-bot", userId: "alice", createdAt: T0 };

describe("revokesToken", () => {
  it.each<[RevocationKind, string]>([
    ["token_id", "tok_1"],
    ["session_id", "ses_A"],
    ["agent_id", "sales-bot"],
    ["user_id", "alice"],
    ["resource", "salesforce"],
  ])("a %s rule matching the token revokes it when issued before the rule", (kind, value) => {
    expect(revokesToken(rule(kind, value, T0 + 5000), token)).toBe(true);
  });

  it.each<[RevocationKind, string]>([
    ["token_id", "tok_2"],
    ["session_id", "ses_B"],
    ["agent_id", "other-bot"],
    ["user_id", "bob"],
    ["resource", "calendar"],
  ])("a %s rule for another value does not", (kind, value) => {
    expect(revokesToken(rule(kind, value, T0 + 5000), token)).toBe(false);
  });

  it("a token issued in the same second as the rule counts as revoked (whole-second iat: safe side)", () => {
    // iat = T0 s; the rule at T0 + 999 ms is still in second T0.
    expect(revokesToken(rule("resource", "salesforce", T0), token)).toBe(true);
    expect(revokesToken(rule("resource", "salesforce", T0 + 999), token)).toBe(true);
  });

  it("a token issued after the rule's second is not revoked", () => {
    expect(revokesToken(rule("resource", "salesforce", T0 - 1), token)).toBe(false);
    expect(revokesToken(rule("resource", "salesforce", T0 - 1000), token)).toBe(false);
    expect(revokesToken(rule("token_id", "tok_1", T0 - 1), token)).toBe(false);
  });

  it("a user rule never matches a token with no user", () => {
    const agentOnly: TokenSubject = { ...token, userId: undefined };
    expect(revokesToken(rule("user_id", "alice", T0 + 5000), agentOnly)).toBe(false);
  });
});

describe("revokesSession", () => {
  it.each<[RevocationKind, string, boolean]>([
    ["session_id", "ses_A", true],
    ["agent_id", "sales-bot", true],
    ["user_id", "alice", true],
    ["session_id", "ses_B", false],
    ["agent_id", "other", false],
    ["user_id", "bob", false],
    // Token and resource rules revoke tokens, never whole sessions.
    ["token_id", "tok_1", false],
    ["resource", "salesforce", false],
  ])("a %s rule for %s → %s", (kind, value, expected) => {
    expect(revokesSession(rule(kind, value, T0 + 10), session)).toBe(expected);
  });

  it("is judged in ms: created before or at the rule → ended; created 1 ms after → not", () => {
    expect(revokesSession(rule("agent_id", "sales-bot", T0 + 1), session)).toBe(true);
    expect(revokesSession(rule("agent_id", "sales-bot", T0), session)).toBe(true);
    expect(revokesSession(rule("agent_id", "sales-bot", T0 - 1), session)).toBe(false);
    // Same second, 1 ms apart: unlike tokens, a session is not caught by the rounding.
    expect(revokesSession(rule("user_id", "alice", T0 - 1), { ...session, createdAt: T0 })).toBe(false);
  });

  it("a user rule never ends a session with no user", () => {
    expect(revokesSession(rule("user_id", "alice", T0 + 10), { ...session, userId: undefined })).toBe(false);
  });
});

describe("RevocationIndex", () => {
  it("token() answers token_id and resource rules only; session() answers session, agent and user rules", () => {
    const idx = new RevocationIndex();
    idx.add(rule("session_id", "ses_A", T0 + 5000));
    idx.add(rule("agent_id", "sales-bot", T0 + 5000));
    idx.add(rule("user_id", "alice", T0 + 5000));
    // Those end the session, but are not token-level rules.
    expect(idx.token(token)).toBeUndefined();
    expect(idx.session(session)?.kind).toBe("session_id");

    const idx2 = new RevocationIndex();
    const byJti = rule("token_id", "tok_1", T0 + 5000);
    const byRes = rule("resource", "salesforce", T0 + 5000);
    idx2.add(byJti);
    idx2.add(byRes);
    expect(idx2.token(token)).toEqual(byJti);
    expect(idx2.token({ ...token, jti: "tok_9" })).toEqual(byRes);
    expect(idx2.session(session)).toBeUndefined();
  });

  it.each<[RevocationKind, string]>([
    ["session_id", "ses_A"],
    ["agent_id", "sales-bot"],
    ["user_id", "alice"],
  ])("session() finds a lone %s rule", (kind, value) => {
    const idx = new RevocationIndex();
    const r = rule(kind, value, T0 + 1);
    idx.add(r);
    expect(idx.session(session)).toEqual(r);
    expect(idx.session({ ...session, createdAt: T0 + 2 })).toBeUndefined();
  });

  it("a session with no user is never matched by a user rule", () => {
    const idx = new RevocationIndex();
    idx.add(rule("user_id", "alice", T0 + 1));
    expect(idx.session({ ...session, userId: undefined })).toBeUndefined();
  });

  it("keeps only the latest rule per target: one entry however often a target is revoked", () => {
    const idx = new RevocationIndex();
    const first = rule("agent_id", "sales-bot", T0);
    const later = rule("agent_id", "sales-bot", T0 + 60_000);
    expect(idx.add(first)).toBe(true);
    expect(idx.add(later)).toBe(true);
    expect(idx.size).toBe(1);
    // A session created between the two is caught by the later rule.
    const between = { ...session, createdAt: T0 + 30_000 };
    expect(idx.session(between)?.id).toBe(later.id);
    // An older rule arriving late changes nothing.
    expect(idx.add(rule("agent_id", "sales-bot", T0 - 60_000))).toBe(false);
    expect(idx.session(between)?.id).toBe(later.id);
    // The same rule again changes nothing.
    expect(idx.add(later)).toBe(false);
    expect(idx.size).toBe(1);
  });

  it("the kept rule lives until the latest expiry of any rule for that target", () => {
    const idx = new RevocationIndex();
    const longLived = rule("resource", "salesforce", T0, T0 + 10 * HOUR);
    const later = rule("resource", "salesforce", T0 + 1000, T0 + HOUR);
    idx.add(longLived);
    expect(idx.add(later)).toBe(true);
    // Prune just after the later rule's own expiry: the merged rule must survive.
    expect(idx.prune(T0 + HOUR + 1)).toBe(0);
    expect(idx.token({ ...token, issuedAtSec: T0 / 1000 + 1 })?.id).toBe(later.id);
    expect(idx.prune(T0 + 10 * HOUR)).toBe(1);
    expect(idx.size).toBe(0);
  });

  it("an older rule with a later expiry only extends the expiry", () => {
    const idx = new RevocationIndex();
    const current = rule("token_id", "tok_1", T0 + 5000, T0 + HOUR);
    idx.add(current);
    expect(idx.add(rule("token_id", "tok_1", T0, T0 + 2 * HOUR))).toBe(true);
    expect(idx.token(token)?.id).toBe(current.id);
    expect(idx.token(token)?.revokedAt).toBe(T0 + 5000);
    expect(idx.token(token)?.expiresAt).toBe(T0 + 2 * HOUR);
  });

  it("the same value under different kinds is a different target", () => {
    const idx = new RevocationIndex();
    for (const kind of REVOCATION_KINDS) idx.add(rule(kind, "x", T0));
    expect(idx.size).toBe(REVOCATION_KINDS.length);
  });

  it("prune drops rules at or past expiresAt and keeps the rest; size follows", () => {
    const idx = new RevocationIndex();
    idx.add(rule("token_id", "a", T0, T0 + 1000));
    idx.add(rule("token_id", "b", T0, T0 + 2000));
    idx.add(rule("agent_id", "c", T0, T0 + 3000));
    expect(idx.size).toBe(3);
    expect(idx.prune(T0 + 999)).toBe(0);
    expect(idx.prune(T0 + 1000)).toBe(1); // exactly at expiresAt: gone
    expect(idx.size).toBe(2);
    expect(idx.token({ ...token, jti: "a" })).toBeUndefined();
    expect(idx.token({ ...token, jti: "b", issuedAtSec: T0 / 1000 })?.value).toBe("b");
    expect(idx.prune(T0 + 5000)).toBe(2);
    expect(idx.size).toBe(0);
    // A target can be revoked again after its rule was pruned.
    expect(idx.add(rule("token_id", "a", T0 + 6000))).toBe(true);
    expect(idx.size).toBe(1);
  });
});

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  digestsEqual,
  newOrchestratorToken,
  newRevocationId,
  newSessionCredential,
  newSessionId,
  parseSessionCredential,
  sha256Hex,
} from "../../src/auth/credentials.js";

const SESSION_ID = /^ses_[A-Za-z0-9_-]{22}$/;
const CREDENTIAL = /^ses_[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/;

describe("ids and credentials", () => {
  it("session ids are ses_ + 22 base64url characters, and differ", () => {
    const ids = new Set(Array.from({ length: 200 }, () => newSessionId()));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(SESSION_ID);
  });

  it("revocation ids are rev_ + 22 base64url characters", () => {
    expect(newRevocationId()).toMatch(/^rev_[A-Za-z0-9_-]{22}$/);
    expect(newRevocationId()).not.toBe(newRevocationId());
  });

  it("orchestrator tokens are cvo_ + 43 base64url characters", () => {
    expect(newOrchestratorToken()).toMatch(/^cvo_[A-Za-z0-9_-]{43}$/);
  });

  it("sha256Hex is lower-case hex sha256", () => {
    expect(sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(sha256Hex("")).toBe(createHash("sha256").update("").digest("hex"));
  });

  it("a session credential is ses_<22>.<43>; only the secret's hash is kept", () => {
    const id = newSessionId();
    const { credential, hash } = newSessionCredential(id);
    expect(credential).toMatch(CREDENTIAL);
    expect(credential.startsWith(`${id}.`)).toBe(true);
    const secret = credential.slice(id.length + 1);
    expect(hash).toBe(sha256Hex(secret));
    expect(hash).not.toContain(secret);
    expect(newSessionCredential(id).credential).not.toBe(credential);
  });

  it("parseSessionCredential round-trips a new credential", () => {
    const id = newSessionId();
    const { credential, hash } = newSessionCredential(id);
    expect(parseSessionCredential(credential)).toEqual({ sessionId: id, secretHash: hash });
  });

  it.each([
    ["empty", ""],
    ["no secret", "ses_AAAAAAAAAAAAAAAAAAAAAA"],
    ["empty secret", "ses_AAAAAAAAAAAAAAAAAAAAAA."],
    ["short id", `ses_AAAAAAAAAAAAAAAAAAAAA.${"B".repeat(43)}`],
    ["long id", `ses_AAAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(43)}`],
    ["short secret", `ses_AAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(42)}`],
    ["long secret", `ses_AAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(44)}`],
    ["wrong prefix", `sex_AAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(43)}`],
    ["upper-case prefix", `SES_AAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(43)}`],
    ["padding", `ses_AAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(42)}=`],
    ["standard base64", `ses_AAAAAAAAAAAAAAAAAAAA+/.${"B".repeat(43)}`],
    ["trailing newline", `ses_AAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(43)}\n`],
    ["leading space", ` ses_AAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(43)}`],
    ["two dots", `ses_AAAAAAAAAAAAAAAAAAAAAA.${"B".repeat(20)}.${"B".repeat(22)}`],
    ["a JWT", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"],
  ])("parseSessionCredential refuses %s", (_what, bearer) => {
    expect(parseSessionCredential(bearer)).toBeUndefined();
  });
});

describe("digestsEqual", () => {
  const a = sha256Hex("one");
  const b = sha256Hex("two");

  it("is true for equal digests, also across letter case", () => {
    expect(digestsEqual(a, a)).toBe(true);
    expect(digestsEqual(a, a.toUpperCase())).toBe(true);
  });

  it("is false for different digests, different lengths and empty input", () => {
    expect(digestsEqual(a, b)).toBe(false);
    expect(digestsEqual(a, a.slice(0, 62))).toBe(false);
    expect(digestsEqual(a.slice(0, 62), a)).toBe(false);
    expect(digestsEqual("", "")).toBe(false);
    expect(digestsEqual(a, "")).toBe(false);
  });

  // Buffer.from(x, "hex") silently stops at the first non-hex character or drops a trailing
  // odd digit, so without an explicit check two different strings could compare equal.
  it.each([
    ["trailing junk after a shared prefix", `${a}zz`, `${a}yy`],
    ["an odd trailing digit", `${a}1`, `${a}2`],
    ["junk in the middle", `${a.slice(0, 10)}zz${a.slice(12)}`, `${a.slice(0, 10)}yy${a.slice(12)}`],
    ["entirely non-hex", "zzzz", "yyyy"],
    ["a digest vs itself with junk appended", a, `${a}zz`],
  ])("is false for malformed hex: %s", (_what, x, y) => {
    expect(digestsEqual(x, y)).toBe(false);
  });
});

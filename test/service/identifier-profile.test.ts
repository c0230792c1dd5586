/**
 * The identifier profile and scope-token rules of the contract (proto/capvend/v1, enforced
 * by src/service/contract-validator.ts), as a table: what is accepted and what is refused,
 * at StartSession, IssueToken and WatchSession alike.
 */
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { CapvendError } from "../../src/errors.js";
import { IssueTokenRequestSchema, RevokeRequestSchema, StartSessionRequestSchema, WatchSessionRequestSchema } from "../../src/gen/capvend/v1/vending_pb.js";
import { createContractValidator } from "../../src/service/contract-validator.js";

const contract = createContractValidator();

/** The refusal for a request, or undefined when the contract accepts it. */
function refusal(check: () => void): CapvendError | undefined {
  try {
    check();
    return undefined;
  } catch (err) {
    if (err instanceof CapvendError) return err;
    throw err;
  }
}

const ids: [string, string, boolean][] = [
  ["a plain id", "sales-bot", true],
  ["letters, digits and punctuation", "agent:sales_bot.v2/eu@example.com", true],
  ["non-ASCII letters", "café-böt", true],
  ["CJK", "販売ボット", true],
  ["an inner space", "sales bot", true],
  ["an emoji", "bot-🤖", true],
  ["exactly 256 bytes", "a".repeat(256), true],
  ["empty", "", false],
  ["257 bytes", "a".repeat(257), false],
  ["129 two-byte characters (258 bytes)", "é".repeat(129), false],
  ["whitespace only", "   ", false],
  ["a no-break space only", "\u00a0", false],
  ["a leading space", " sales-bot", false],
  ["a trailing space", "sales-bot ", false],
  ["a trailing ideographic space", "sales-bot\u3000", false],
  ['"."', ".", false],
  ['".."', "..", false],
  ["a newline", "sales-bot\nforged", false],
  ["a tab", "sales\tbot", false],
  ["NUL", "sales\u0000bot", false],
  ["DEL", "sales\u007fbot", false],
  ["C1 NEL U+0085", "sales\u0085bot", false],
  ["C1 CSI U+009B", "sales\u009bbot", false],
  ["LINE SEPARATOR U+2028", "sales\u2028bot", false],
  ["PARAGRAPH SEPARATOR U+2029", "sales\u2029bot", false],
  ["RIGHT-TO-LEFT OVERRIDE U+202E", "sales\u202ebot", false],
  ["LEFT-TO-RIGHT EMBEDDING U+202A", "\u202asales", false],
  ["FIRST STRONG ISOLATE U+2068", "sales\u2068bot", false],
  ["RIGHT-TO-LEFT MARK U+200F", "sales\u200fbot", false],
  ["ZERO WIDTH SPACE U+200B", "sales\u200bbot", false],
  ["ZERO WIDTH JOINER U+200D", "sales\u200dbot", false],
  ["BYTE ORDER MARK U+FEFF", "\ufeffsales", false],
  ["a private-use character U+E000", "sales\ue000", false],
];

describe("the identifier profile", () => {
  it.each(ids)("%s → %s", (_what, id, accepted) => {
    const places: [string, () => void][] = [
      ["agent_id", () => contract.check(StartSessionRequestSchema, create(StartSessionRequestSchema, { agentId: id, grants: [{ resource: "calendar", scopes: ["read"] }] }))],
      ["user_id", () => contract.check(StartSessionRequestSchema, create(StartSessionRequestSchema, { agentId: "a", userId: id, grants: [{ resource: "calendar", scopes: ["read"] }] }))],
      ["grants[0].resource", () => contract.check(StartSessionRequestSchema, create(StartSessionRequestSchema, { agentId: "a", grants: [{ resource: id, scopes: ["read"] }] }))],
      ["resource", () => contract.check(IssueTokenRequestSchema, create(IssueTokenRequestSchema, { resource: id, scopes: ["read"] }))],
      ["grants[0].resource", () => contract.check(WatchSessionRequestSchema, create(WatchSessionRequestSchema, { grants: [{ resource: id, scopes: ["read"] }] }))],
      ["session_id", () => contract.check(RevokeRequestSchema, create(RevokeRequestSchema, { target: { case: "sessionId", value: id } }))],
    ];
    for (const [field, check] of places) {
      const e = refusal(check);
      if (accepted) {
        expect(e, `${field} should accept ${JSON.stringify(id)}`).toBeUndefined();
      } else {
        expect(e?.reason, `${field} should refuse ${JSON.stringify(id)}`).toBe("INVALID_ARGUMENT");
        expect(e?.subject.field).toBe(field);
        expect(e?.rawMessage.startsWith(`${field}: `)).toBe(true);
        // The message never echoes the refused value (it may be a terminal escape).
        if (id.length > 2) expect(e?.rawMessage).not.toContain(id);
      }
    }
  });
});

const scopes: [string, string, boolean][] = [
  ["a word", "read", true],
  ["namespaced", "files:read", true],
  ["a URL-like scope", "https://api.example.com/read", true],
  ["every allowed punctuation", "!#$%&'()*+,-./:;<=>?@[]^_`{|}~", true],
  ["128 characters", "s".repeat(128), true],
  ["129 characters", "s".repeat(129), false],
  ["empty", "", false],
  ["a space", "read write", false],
  ["a tab", "read\twrite", false],
  ['a double quote', 'read"', false],
  ["a backslash", "read\\", false],
  ["non-ASCII", "lecture-é", false],
  ["a control character", "read\u0007", false],
  ["DEL", "read\u007f", false],
];

describe("scopes are RFC 6749 scope-tokens", () => {
  it.each(scopes)("%s → %s", (_what, scope, accepted) => {
    const checks: [string, () => void][] = [
      ["grants[0].scopes[0]", () => contract.check(StartSessionRequestSchema, create(StartSessionRequestSchema, { agentId: "a", grants: [{ resource: "r", scopes: [scope] }] }))],
      ["scopes[0]", () => contract.check(IssueTokenRequestSchema, create(IssueTokenRequestSchema, { resource: "r", scopes: [scope] }))],
      ["grants[0].scopes[0]", () => contract.check(WatchSessionRequestSchema, create(WatchSessionRequestSchema, { grants: [{ resource: "r", scopes: [scope] }] }))],
    ];
    for (const [field, check] of checks) {
      const e = refusal(check);
      if (accepted) expect(e, `${field} should accept ${JSON.stringify(scope)}`).toBeUndefined();
      else expect(e?.subject.field, `${field} should refuse ${JSON.stringify(scope)}`).toBe(field);
    }
  });
});

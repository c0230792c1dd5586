import { mkdir, symlink } from "node:fs/promises";
import { join } from "node:path";

import { afterEach, describe, expect, it } from "vitest";

import { loadPolicyEngine, PolicyLoadError } from "../../src/policy/engine.js";
import { cleanup, policyDir } from "./helpers.js";

const dirs: string[] = [];
async function dirWith(files: Record<string, string>): Promise<string> {
  const dir = await policyDir(files);
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map(cleanup));
});

async function loadError(dir: string): Promise<PolicyLoadError> {
  const err = await loadPolicyEngine({ dir }).then(
    (e) => {
      e.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PolicyLoadError);
  return err as PolicyLoadError;
}

const PERMIT = 'permit (principal, action == Action::"read", resource);\n';

describe("loading a policy directory", () => {
  it("names the file, line and column of a syntax error", async () => {
    const dir = await dirWith({
      "a.cedar": PERMIT,
      "b.cedar": '// fine so far\npermit (principal, action, resource)\n  when { 1 + };\n',
    });
    const err = await loadError(dir);
    expect(err.code).toBe("policy_syntax");
    expect(err.file).toBe(join(dir, "b.cedar"));
    expect(err.line).toBe(3);
    expect(err.column).toBe(14);
    expect(err.message.startsWith(`${join(dir, "b.cedar")}:3:14: unexpected token`)).toBe(true);
  });

  it("counts columns in characters when the line holds non-ASCII text", async () => {
    // Cedar reports UTF-8 byte offsets; "é" and "日本" take 2 and 6 bytes but 3 columns.
    const dir = await dirWith({ "u.cedar": 'permit (principal, action, resource) when { "é日本" == ) };\n' });
    const err = await loadError(dir);
    expect([err.line, err.column]).toEqual([1, 54]);
  });

  it("names a missing semicolon at the end of the file", async () => {
    const dir = await dirWith({ "a.cedar": PERMIT + "\npermit (principal, action, resource)\n" });
    const err = await loadError(dir);
    expect(err.file).toBe(join(dir, "a.cedar"));
    expect(err.line).toBeGreaterThanOrEqual(3);
  });

  it("rejects templates, naming the policy", async () => {
    const dir = await dirWith({ "t.cedar": PERMIT + "\npermit (principal == ?principal, action, resource);\n" });
    const err = await loadError(dir);
    expect(err.code).toBe("policy_syntax");
    expect([err.file, err.line]).toEqual([join(dir, "t.cedar"), 3]);
  });

  it("rejects a missing directory", async () => {
    const err = await loadError("/nonexistent/capvend/policies");
    expect(err.code).toBe("directory_unreadable");
    expect(err.message).toBe("/nonexistent/capvend/policies: policy directory does not exist");
  });

  it("rejects a directory without .cedar files", async () => {
    const dir = await dirWith({ "README.md": "no policies here", "entities.json": "[]" });
    const err = await loadError(dir);
    expect(err.code).toBe("no_policies");
    expect(err.file).toBe(dir);
    expect(err.message).toMatch(/no \.cedar policy files/);
  });

  it("rejects .cedar files that hold only comments", async () => {
    const dir = await dirWith({ "a.cedar": "// nothing yet\n" });
    expect((await loadError(dir)).code).toBe("no_policies");
  });

  it("ignores dot files, subdirectories and other suffixes", async () => {
    const dir = await dirWith({ "a.cedar": PERMIT, ".#a.cedar": "broken (", "notes.txt": "broken (" });
    await mkdir(join(dir, "sub.cedar"));
    const engine = await loadPolicyEngine({ dir });
    expect(engine.state.policyCount).toBe(1);
    engine.close();
  });

  it("follows symlinked policy files, as Kubernetes mounts them", async () => {
    const src = await dirWith({ "real.cedar": PERMIT });
    const dir = await dirWith({});
    await symlink(join(src, "real.cedar"), join(dir, "linked.cedar"));
    const engine = await loadPolicyEngine({ dir });
    expect(engine.authorize({ principal: { type: "A", id: "a" }, action: "read", resource: { type: "R", id: "r" } }).policyIds).toEqual([
      "linked.cedar:1",
    ]);
    engine.close();
  });

  it("rejects a duplicate @id across files, naming both places", async () => {
    const dir = await dirWith({
      "a.cedar": `// one\n@id("same")\n${PERMIT}`,
      "b.cedar": `\n\n\n@id("same") ${PERMIT}`,
    });
    const err = await loadError(dir);
    expect(err.code).toBe("duplicate_policy_id");
    expect([err.file, err.line, err.column]).toEqual([join(dir, "b.cedar"), 4, 1]);
    expect(err.message).toContain(`already used at ${join(dir, "a.cedar")}:2:1`);
  });

  it("rejects an @id that equals another policy's generated id", async () => {
    const dir = await dirWith({ "a.cedar": PERMIT + `@id("a.cedar:1") ${PERMIT}` });
    expect((await loadError(dir)).code).toBe("duplicate_policy_id");
  });

  it("rejects an empty @id", async () => {
    const dir = await dirWith({ "a.cedar": `@id("") ${PERMIT}` });
    expect((await loadError(dir)).message).toMatch(/@id must not be empty/);
  });
});

describe("entities.json", () => {
  it("is optional", async () => {
    const dir = await dirWith({ "a.cedar": PERMIT });
    const engine = await loadPolicyEngine({ dir });
    expect(engine.state.version).toBe(1);
    engine.close();
  });

  it("names the line of a JSON syntax error", async () => {
    const dir = await dirWith({ "a.cedar": PERMIT, "entities.json": '[\n  { "uid": { "type": "User", "id": "a" },\n    "attrs": { },\n  }\n]' });
    const err = await loadError(dir);
    expect(err.code).toBe("entities_invalid");
    expect([err.file, err.line, err.column]).toEqual([join(dir, "entities.json"), 4, 3]);
    expect(err.message).toMatch(/invalid JSON/);
  });

  it("must be an array", async () => {
    const dir = await dirWith({ "a.cedar": PERMIT, "entities.json": '{ "uid": {} }' });
    expect((await loadError(dir)).message).toMatch(/expected a JSON array/);
  });

  it("names the line of an entity Cedar rejects", async () => {
    const entities = [
      { uid: { type: "User", id: "ok" }, attrs: {}, parents: [] },
      { uid: { type: "User", id: "bad" }, attrs: { score: 1.5 }, parents: [] },
    ];
    const dir = await dirWith({ "a.cedar": PERMIT, "entities.json": JSON.stringify(entities, null, 2) });
    const err = await loadError(dir);
    expect(err.code).toBe("entities_invalid");
    expect(err.line).toBe(10);
    expect(err.message).toMatch(/entity #2/);
  });

  it("rejects an entity without parents", async () => {
    const dir = await dirWith({ "a.cedar": PERMIT, "entities.json": '[{ "uid": { "type": "User", "id": "a" }, "attrs": {} }]' });
    expect((await loadError(dir)).message).toMatch(/missing field `parents`/);
  });

  it("rejects an entity defined twice", async () => {
    const e = '{ "uid": { "type": "User", "id": "a" }, "attrs": {}, "parents": [] }';
    const dir = await dirWith({ "a.cedar": PERMIT, "entities.json": `[\n${e},\n${e}\n]` });
    const err = await loadError(dir);
    expect(err.line).toBe(3);
    expect(err.message).toMatch(/User::"a" is defined twice \(first at line 2\)/);
  });

  it("rejects a cycle in the hierarchy", async () => {
    const entities = [
      { uid: { type: "G", id: "a" }, attrs: {}, parents: [{ type: "G", id: "b" }] },
      { uid: { type: "G", id: "b" }, attrs: {}, parents: [{ type: "G", id: "a" }] },
    ];
    const dir = await dirWith({ "a.cedar": PERMIT, "entities.json": JSON.stringify(entities) });
    const err = await loadError(dir);
    expect(err.code).toBe("entities_invalid");
    expect(err.message).toMatch(/cycle/);
  });
});

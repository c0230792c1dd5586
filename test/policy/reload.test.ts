import { watch } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { afterEach, describe, expect, it } from "vitest";

import { ManualClock } from "../../src/clock.js";
import { loadPolicyEngine, policyVersionOf, type PolicyEngine, type ReloadEvent } from "../../src/policy/engine.js";
import { slotsMinted } from "../../src/policy/preparsed-slots.js";
import { waitFor } from "../helpers/wait.js";
import { cleanup, policyDir, writeFiles } from "./helpers.js";

const bot = { type: "Agent", id: "bot" };
const crm = { type: "Resource", id: "crm" };
const READ = '@id("read") permit (principal, action == Action::"read", resource);\n';
const WRITE = '@id("write") permit (principal, action == Action::"write", resource);\n';

const dirs: string[] = [];
const engines: PolicyEngine[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) e.close();
  await Promise.all(dirs.splice(0).map(cleanup));
});
async function setup(files: Record<string, string>, opts: { watch?: boolean; events?: ReloadEvent[] } = {}) {
  const dir = await policyDir(files);
  dirs.push(dir);
  const engine = await loadPolicyEngine({
    dir,
    watch: opts.watch ?? false,
    debounceMs: 20,
    onReload: (e) => opts.events?.push(e),
  });
  engines.push(engine);
  return { dir, engine };
}
const SENTINEL = "zz-sentinel.txt";
let sentinels = 0;

/**
 * Resolves once every change made in `dir` so far has reached every watch of it: renames a
 * sentinel file (not a policy file) into `dir` and waits until a watch of its own sees it.
 * All watches of a directory in a process share one inotify queue, read in order, so when
 * this one hears of the sentinel, the engine's watch has heard of every earlier change.
 */
async function changesDelivered(dir: string): Promise<void> {
  const seen = new Promise<void>((resolve) => {
    const w = watch(dir, { persistent: false }, (_event, name) => {
      if (name !== SENTINEL) return;
      w.close();
      resolve();
    });
  });
  const tmp = join(dir, `.sentinel-${++sentinels}`);
  await writeFile(tmp, String(sentinels));
  await rename(tmp, join(dir, SENTINEL));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([seen, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("the sentinel was never seen")), 20_000)))]);
  clearTimeout(timer);
}

const can = (engine: PolicyEngine, action: string) => engine.authorize({ principal: bot, action, resource: crm }).allowed;

describe("reload()", () => {
  it("puts an edited directory in force and counts versions", async () => {
    const events: ReloadEvent[] = [];
    const { dir, engine } = await setup({ "a.cedar": READ }, { events });
    expect([can(engine, "read"), can(engine, "write")]).toEqual([true, false]);
    const before = engine.state.policyVersion;
    expect(before).toBe(policyVersionOf({ files: { "a.cedar": READ } }));
    await writeFiles(dir, { "a.cedar": WRITE });
    const after = policyVersionOf({ files: { "a.cedar": WRITE } });
    expect(after).not.toBe(before);
    expect(await engine.reload()).toEqual({ ok: true, version: 2, policyVersion: after, changed: true });
    expect([can(engine, "read"), can(engine, "write")]).toEqual([false, true]);
    expect(engine.state).toMatchObject({ version: 2, policyCount: 1, policyVersion: after, origin: dir });
    expect(events).toEqual([{ ok: true, version: 2, policyVersion: after, previousPolicyVersion: before }]);
    // The same content again: a new generation, the same version, nothing changed.
    expect(await engine.reload()).toMatchObject({ ok: true, version: 3, policyVersion: after, changed: false });
  });

  it("keeps the previous policies and entities when the new ones do not load", async () => {
    const events: ReloadEvent[] = [];
    const { dir, engine } = await setup(
      {
        "a.cedar": 'permit (principal in G::"g", action, resource);',
        "entities.json": '[{ "uid": { "type": "Agent", "id": "bot" }, "attrs": {}, "parents": [{ "type": "G", "id": "g" }] }]',
      },
      { events },
    );
    expect(can(engine, "read")).toBe(true);
    await writeFiles(dir, { "entities.json": "[ not json" });
    const r = await engine.reload();
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe("entities_invalid");
    expect(can(engine, "read")).toBe(true);
    expect(engine.state.version).toBe(1);
    expect(engine.state.lastError).toBe(r.error.message);
    const v1 = engine.state.policyVersion;
    expect(events).toEqual([{ ok: false, version: 1, policyVersion: v1, error: r.error }]);

    await writeFiles(dir, { "entities.json": "[]" });
    expect(await engine.reload()).toMatchObject({ ok: true, version: 2, changed: true });
    expect(can(engine, "read")).toBe(false);
    expect(engine.state.lastError).toBeUndefined();
  });

  it("runs concurrent reloads one after the other", async () => {
    const { engine } = await setup({ "a.cedar": READ });
    const results = await Promise.all([engine.reload(), engine.reload(), engine.reload()]);
    expect(results.map((r) => r.ok && r.version)).toEqual([2, 3, 4]);
  });

  it("reports a directory that disappeared", async () => {
    const { dir, engine } = await setup({ "a.cedar": READ });
    await rm(dir, { recursive: true });
    const r = await engine.reload();
    expect(r.ok === false && r.error.code).toBe("directory_unreadable");
    expect(can(engine, "read")).toBe(true);
  });

  it("reloads into its one preparsed slot: reloads mint no new wasm set", async () => {
    // cedar-wasm keeps every preparsed name for good (about 0.9 MB per 300-policy set), so a
    // name per reload would leak. The memory figure itself is `npm run bench -- reload-memory`.
    const many = Array.from({ length: 300 }, (_, i) => `permit (principal == Agent::"a${i}", action in [Action::"read", Action::"write"], resource == Resource::"r${i}") when { context.ttl_seconds <= ${i} };`);
    const { engine } = await setup({ "many.cedar": many.join("\n") });
    const minted = slotsMinted();
    for (let i = 0; i < 5; i++) expect((await engine.reload()).ok).toBe(true);
    expect(slotsMinted()).toBe(minted);
    expect(engine.authorize({ principal: { type: "Agent", id: "a7" }, action: "read", resource: { type: "Resource", id: "r7" }, context: { ttl_seconds: 5 } }).allowed).toBe(true);
  });
});

describe("watch", () => {
  it("picks up an edited file, and keeps the old policies through a broken edit", async () => {
    const events: ReloadEvent[] = [];
    const { dir, engine } = await setup({ "a.cedar": READ }, { watch: true, events });

    await writeFiles(dir, { "a.cedar": READ + WRITE });
    await waitFor(() => engine.state.version >= 2, "the edit to load");
    expect(can(engine, "write")).toBe(true);
    expect(engine.state.policyCount).toBe(2);

    const seen = events.length;
    await writeFiles(dir, { "a.cedar": "permit (principal, action, resource" });
    await waitFor(() => events.slice(seen).some((e) => !e.ok), "the broken edit to be reported");
    const failure = events.slice(seen).find((e) => !e.ok)!;
    expect(failure.error?.code).toBe("policy_syntax");
    expect(failure.error?.file).toMatch(/a\.cedar$/);
    expect(engine.state.lastError).toMatch(/a\.cedar:1:/);
    expect([can(engine, "read"), can(engine, "write")]).toEqual([true, true]);

    const version = engine.state.version;
    await writeFiles(dir, { "a.cedar": WRITE });
    await waitFor(() => engine.state.version > version, "the fix to load");
    expect([can(engine, "read"), can(engine, "write")]).toEqual([false, true]);
    expect(engine.state.lastError).toBeUndefined();
  });

  it("picks up a new file and a new entities.json", async () => {
    const { dir, engine } = await setup({ "a.cedar": READ }, { watch: true });
    await writeFiles(dir, {
      "b.cedar": '@id("group") permit (principal in G::"g", action == Action::"delete", resource);',
      "entities.json": '[{ "uid": { "type": "Agent", "id": "bot" }, "attrs": {}, "parents": [{ "type": "G", "id": "g" }] }]',
    });
    await waitFor(() => can(engine, "delete"), "the new file to load");
    expect(engine.state.policyCount).toBe(2);
  });

  it("folds a burst of changes into one reload", async () => {
    const clock = new ManualClock();
    const events: ReloadEvent[] = [];
    const dir = await policyDir({ "a.cedar": READ });
    dirs.push(dir);
    const engine = await loadPolicyEngine({ dir, watch: true, debounceMs: 300, clock, onReload: (e) => events.push(e) });
    engines.push(engine);
    for (let i = 0; i < 10; i++) await writeFiles(dir, { "a.cedar": READ + `// edit ${i}\n` + (i === 9 ? WRITE : "") });
    await changesDelivered(dir);
    // Every change moved the one pending reload later instead of adding one.
    expect(clock.pendingTimers).toBe(1);
    expect(events).toEqual([]);
    clock.advance(300);
    await waitFor(() => events.length === 1, "the reload");
    expect(events[0]).toMatchObject({ ok: true, version: 2 });
    expect(can(engine, "write")).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it("waits for the debounce time on the injected clock", async () => {
    const clock = new ManualClock();
    const dir = await policyDir({ "a.cedar": READ });
    dirs.push(dir);
    const engine = await loadPolicyEngine({ dir, watch: true, clock });
    engines.push(engine);
    expect(engine.state.loadedAt).toBe(clock.now());

    await writeFiles(dir, { "a.cedar": WRITE });
    await changesDelivered(dir);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(199);
    // The manual clock fires due timers inside advance(): the reload's timer is still pending.
    expect(clock.pendingTimers).toBe(1);
    expect(engine.state.version).toBe(1);
    expect(can(engine, "write")).toBe(false);

    clock.advance(1);
    await waitFor(() => engine.state.version === 2, "the reload");
    expect(can(engine, "write")).toBe(true);
    expect(engine.state.loadedAt).toBe(clock.now());
  });

  it("stops watching on close", async () => {
    const clock = new ManualClock();
    const dir = await policyDir({ "a.cedar": READ });
    dirs.push(dir);
    const engine = await loadPolicyEngine({ dir, watch: true, clock });
    // Sanity: while open, an edit schedules a reload.
    await writeFiles(dir, { "a.cedar": READ + "// 1\n" });
    await waitFor(() => clock.pendingTimers === 1, "the watcher to see the edit");
    engine.close();
    expect(clock.pendingTimers).toBe(0);
    await writeFiles(dir, { "a.cedar": WRITE });
    await changesDelivered(dir);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe("close()", () => {
  it("is idempotent and denies afterwards", async () => {
    const { engine } = await setup({ "a.cedar": READ });
    engine.close();
    expect(() => engine.close()).not.toThrow();
    expect(engine.authorize({ principal: bot, action: "read", resource: crm })).toEqual({
      allowed: false,
      policyIds: [],
      errors: ["policy engine is closed"],
    });
    const r = await engine.reload();
    expect(r.ok === false && r.error.code).toBe("closed");
  });

  it("hands its slot to a later engine without the two mixing", async () => {
    const first = await setup({ "a.cedar": READ });
    const second = await setup({ "a.cedar": WRITE });
    first.engine.close();
    const third = await setup({ "a.cedar": '@id("delete") permit (principal, action == Action::"delete", resource);' });
    expect([can(second.engine, "write"), can(second.engine, "delete")]).toEqual([true, false]);
    expect([can(third.engine, "delete"), can(third.engine, "read")]).toEqual([true, false]);
    expect(can(first.engine, "read")).toBe(false);
  });

  it("makes a reload that was reading when it closed give up", async () => {
    const { engine } = await setup({ "a.cedar": READ });
    const pending = engine.reload();
    engine.close();
    const r = await pending;
    expect(r.ok === false && r.error.code).toBe("closed");
  });
});

import os from "node:os";
import path from "node:path";
import { systemClock } from "../clock.js";
import { ConfigError, DEFAULT_POLICY_DIR, loadConfig } from "../config/config.js";
import { parseDuration } from "../config/duration.js";
import { explainDenial, scopeRequest } from "./requests.js";
import type { SessionRecord } from "../backends/types.js";
import { loadPolicyEngine, PolicyLoadError } from "./engine.js";
import { parsePolicySet } from "./policy-directory.js";
import { readPolicyFiles } from "./policy-set.js";
import { remotePolicyCommand } from "../cli/admin-commands.js";
import { parseFlags, UsageError } from "../cli/remote.js";

export const POLICY_USAGE = `usage:
  capvend policy check DIR
      Validates a policy directory offline; prints its version, or the file:line:column of
      the first problem (exit 1).
  capvend policy explain --agent A [--user U] --resource R --scope S [--ttl 15m] [--label k=v ...] [--dir DIR]
      Prints the decision for one scope of one token and the deciding policy ids (exit 0 when
      allowed, 1 when denied). DIR defaults to CAPVEND_POLICY_DIR or the shipped policy.
  capvend policy push DIR [--wait DURATION]
      Checks DIR and publishes it to every replica through NATS (NATS_URL and the usual
      NATS_* credentials); a broken set is refused before anything is published. With
      --wait, waits until every reporting replica runs the pushed version.
  capvend policy status [--address URL] [--token-file FILE]
      The policy version every replica runs (exit 1 when they differ).
  capvend policy reload [--address URL] [--token-file FILE]
      Reloads the policy on the server addressed and re-evaluates its live grants.
`;

export interface PolicyCommandIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: Record<string, string | undefined>;
}

/** `capvend policy check|explain|push`: the offline and NATS parts of policy management. */
export async function policyCommand(argv: string[], io: PolicyCommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case "check":
        return await check(rest, io);
      case "explain":
        return await explain(rest, io);
      case "push":
        return await push(rest, io);
      case "status":
      case "reload":
        return await remotePolicyCommand(sub, rest, io);
      default:
        io.stderr(POLICY_USAGE);
        return 2;
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`capvend policy ${sub}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof PolicyLoadError) {
      io.stderr(`capvend policy ${sub}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

async function readChecked(dir: string | undefined) {
  if (!dir) throw new UsageError("name the policy directory");
  const abs = path.resolve(dir);
  const files = await readPolicyFiles(abs);
  return { files, parsed: parsePolicySet(files, abs), dir: abs };
}

async function check(argv: string[], io: PolicyCommandIo): Promise<number> {
  const { positional } = parseFlags(argv, []);
  if (positional.length !== 1) throw new UsageError("expects exactly one directory");
  const { parsed, dir } = await readChecked(positional[0]);
  // Parsing checks syntax and entities; a load also runs Cedar's own preparse of the whole set.
  const engine = await loadPolicyEngine({ dir });
  engine.close();
  const forbids = parsed.policies.filter((p) => p.effect === "forbid").length;
  io.stdout(`ok: ${dir}: ${parsed.policies.length} policies (${parsed.policies.length - forbids} permit, ${forbids} forbid), ${parsed.entities.size} entities, version ${parsed.version}\n`);
  return 0;
}

async function explain(argv: string[], io: PolicyCommandIo): Promise<number> {
  const { flags, positional } = parseFlags(argv, ["agent", "user", "resource", "scope", "ttl", "label", "dir"], { multi: ["label"] });
  if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);
  const one = (name: string, required: boolean) => {
    const v = flags.get(name)?.[0];
    if (required && !v) throw new UsageError(`--${name} is required`);
    return v;
  };
  const agent = one("agent", true)!;
  const user = one("user", false);
  const resource = one("resource", true)!;
  const scope = one("scope", true)!;
  const ttlRaw = one("ttl", false) ?? "15m";
  const ttlMs = parseDuration(ttlRaw);
  if (ttlMs === undefined || ttlMs < 1000) throw new UsageError(`--ttl ${JSON.stringify(ttlRaw)} is not a duration of at least 1s`);
  const labels: Record<string, string> = {};
  for (const l of flags.get("label") ?? []) {
    const eq = l.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label ${JSON.stringify(l)} is not key=value`);
    labels[l.slice(0, eq)] = l.slice(eq + 1);
  }
  const dir = path.resolve(one("dir", false) ?? io.env.CAPVEND_POLICY_DIR ?? DEFAULT_POLICY_DIR);
  const engine = await loadPolicyEngine({ dir });
  try {
    const session = { id: "ses_explain", agentId: agent, userId: user, labels } as SessionRecord;
    const d = engine.authorize(scopeRequest(session, resource, scope, Math.ceil(ttlMs / 1000)));
    const who = `agent "${agent}"${user ? ` for user "${user}"` : ""}`;
    io.stdout(`${d.allowed ? "ALLOW" : "DENY"}: scope "${scope}" on resource "${resource}" for ${who} (ttl ${Math.ceil(ttlMs / 1000)} s)\n`);
    io.stdout(d.allowed ? `  permitted by: ${d.policyIds.join(", ")}\n` : `  ${explainDenial(d)}\n`);
    for (const e of d.errors) io.stdout(`  evaluation error: ${e}\n`);
    io.stdout(`  policy version ${engine.state.policyVersion} (${dir})\n`);
    return d.allowed ? 0 : 1;
  } finally {
    engine.close();
  }
}

async function push(argv: string[], io: PolicyCommandIo): Promise<number> {
  const { flags, positional } = parseFlags(argv, ["wait"]);
  if (positional.length !== 1) throw new UsageError("expects exactly one directory");
  const waitRaw = flags.get("wait")?.[0];
  const waitMs = waitRaw === undefined ? 0 : parseDuration(waitRaw);
  if (waitMs === undefined) throw new UsageError(`--wait ${JSON.stringify(waitRaw)} is not a duration`);
  // Checked before anything connects: a broken set is never published.
  const { files, parsed, dir } = await readChecked(positional[0]);
  const engine = await loadPolicyEngine({ dir });
  engine.close();

  let config;
  try {
    config = loadConfig(io.env);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  if (!config.nats) throw new UsageError("NATS_URL is not set: without NATS, each replica reads its own policy directory");
  const { connect } = await import("@nats-io/transport-node");
  const { jetstream, jetstreamManager } = await import("@nats-io/jetstream");
  const { natsConnectionOptions } = await import("../backends/nats/connection-options.js");
  const { openPolicyBucket, openPolicyStatusBucket, pushPolicySet, readPolicyStatuses } = await import("../backends/nats/kv-policy.js");
  const { POLICY_STATUS_BUCKET } = await import("../backends/nats/names.js");
  const { CLUSTER_DEFAULT_REPLICAS } = await import("../backends/nats/open-nats-backends.js");
  const { describeNatsError } = await import("../backends/nats/deadline.js");
  const nc = await connect(await natsConnectionOptions(config.nats, "capvend policy push"));
  try {
    const timeoutMs = config.nats.timeoutMs;
    // As a replica would create them, should the push come first.
    const replicas = config.nats.replicas ?? (nc.info?.cluster ? CLUSTER_DEFAULT_REPLICAS : 1);
    const js = jetstream(nc, { timeout: timeoutMs });
    const kv = await openPolicyBucket(js, { replicas, timeoutMs });
    const pushedBy = `${os.userInfo().username}@${os.hostname()}`;
    const { version, revision } = await pushPolicySet(kv, files, { pushedBy, clock: systemClock, timeoutMs });
    io.stdout(`pushed: version ${version} (${parsed.policies.length} policies from ${dir}), revision ${revision}\n`);
    if (waitMs === 0) return 0;
    const statusRef = { kv: await openPolicyStatusBucket(js, { replicas, timeoutMs }), jsm: await jetstreamManager(nc, { timeout: timeoutMs }), bucket: POLICY_STATUS_BUCKET };
    const deadline = Date.now() + waitMs;
    let lastError: string | undefined;
    for (;;) {
      let statuses: Awaited<ReturnType<typeof readPolicyStatuses>> | undefined;
      try {
        statuses = await readPolicyStatuses(statusRef, { clock: systemClock, timeoutMs });
        lastError = undefined;
      } catch (err) {
        // The push is done; one failed status read is no reason to stop waiting.
        lastError = describeNatsError(err);
      }
      const behind = statuses?.filter((s) => s.policy_version !== version) ?? [];
      if (statuses && statuses.length > 0 && behind.length === 0) {
        io.stdout(`every replica runs ${version}: ${statuses.map((s) => s.replica).join(", ")}\n`);
        return 0;
      }
      if (Date.now() >= deadline) {
        for (const s of behind) io.stderr(`replica ${s.replica} runs ${s.policy_version}${s.last_error ? ` (last error: ${s.last_error})` : ""}\n`);
        if (lastError) io.stderr(`could not read the replicas' policy status: ${lastError}\n`);
        io.stderr(`not every replica runs ${version} after ${waitRaw}\n`);
        return 1;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/**
 * The client scenario (test/scenario/README.md) driven through @capvend/client against real
 * capvend server processes. Each step records what it observed in the shape of its
 * `expect`; the results go to $CAPVEND_SCENARIO_OUT/typescript.json (default
 * .scenario-results/ under the repo root) and each observation must equal its expectation.
 *
 * The server runs exactly as scenario.json says (command, environment, one port kept across
 * the restart, one data directory kept across the restart), plus NATS_URL pointing at a
 * real nats-server of this test: its session bucket and revocation stream are what let the
 * session and its revocations outlive the SIGKILL of the restart step.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Code, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CapvendError, CredentialManager, type CredentialEvent } from "@capvend/client";
import { VendingService } from "@capvend/client/gen/capvend/v1/vending_pb";
import { freePort, startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { startReplica, type ReplicaProcess } from "../helpers/replica-process.js";
import { grpcTransport, recordEvents } from "../clients/client-helpers.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
interface Step {
  id: string;
  do: string;
  expect: unknown;
  [k: string]: unknown;
}
const scenario = JSON.parse(readFileSync(path.join(root, "test/scenario/scenario.json"), "utf8")) as {
  server: { env: Record<string, string> };
  steps: Step[];
};
const outDir = process.env.CAPVEND_SCENARIO_OUT ?? path.join(root, ".scenario-results");

/** "10s", "300s", "1500ms" → milliseconds. */
function ms(d: unknown): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(String(d));
  if (!m) throw new Error(`not a duration: ${String(d)}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"];
}

/** A gRPC code as the scenario names it: "PERMISSION_DENIED". */
const codeName = (c: Code) => Code[c]!.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
const errorOf = (err: unknown) => {
  const e = CapvendError.from(err);
  return { error: { code: codeName(e.grpcCode), reason: e.code } };
};

let nats: NatsServer;
let server: ReplicaProcess;
let port: number;
let dataDir: string;
let orchestrator: Client<typeof VendingService>;
let sessionCredential = "";
let sessionId = "";
let manager: CredentialManager | undefined;
let rec: ReturnType<typeof recordEvents>;
const results: { id: string; observed: unknown }[] = [];

const bearer = (token: string): Interceptor => (next) => (req) => {
  req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
const clientWith = (token: string) => createClient(VendingService, createGrpcTransport({ baseUrl: server.url, interceptors: [bearer(token)] }));

async function startServer(): Promise<void> {
  server = await startReplica({
    dataDir,
    natsUrl: nats.url,
    env: { ...scenario.server.env, CAPVEND_POLICY_DIR: path.join(root, scenario.server.env.CAPVEND_POLICY_DIR!), CAPVEND_LISTEN: `127.0.0.1:${port}` },
  });
  orchestrator = clientWith(scenario.server.env.CAPVEND_ORCHESTRATOR_TOKEN!);
}

/** The id of the token the manager holds for `resource` now. */
const heldId = (resource: string) => manager!.state().grants.find((g) => g.resource === resource)?.tokenId;

/** Whether getToken(resource) ever returns the token `tokenId` during `forMs`. */
async function returnsToken(resource: string, tokenId: string, forMs: number): Promise<boolean> {
  const until = Date.now() + forMs;
  do {
    try {
      const jwt = await manager!.getToken(resource, undefined, { timeoutMs: 200 });
      const payload = JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString()) as { jti: string };
      if (payload.jti === tokenId) return true;
    } catch {
      // refused: not returned
    }
    await new Promise((r) => setTimeout(r, 20));
  } while (Date.now() < until);
  return false;
}

async function revokeHeld(step: Step) {
  const resource = String(step.resource);
  const tokenId = heldId(resource);
  if (!tokenId) return { revoked_event: false, revoked_token_returned: false, note: `no ${resource} token held` };
  const from = rec.events.length;
  await orchestrator.revoke({ target: { case: "tokenId", value: tokenId }, reason: String(step.reason) });
  const revokedEvent = await rec
    .next("revoked", (e) => e.tokenIds.includes(tokenId), ms(step.timeout), from)
    .then(() => true)
    .catch(() => false);
  return { revoked_event: revokedEvent, revoked_token_returned: await returnsToken(resource, tokenId, 500) };
}

const drivers: Record<string, (step: Step) => Promise<unknown>> = {
  async start_session(step) {
    try {
      const s = await orchestrator.startSession({ agentId: String(step.agent_id), userId: String(step.user_id), grants: step.grants as { resource: string; scopes: string[] }[] });
      sessionCredential = s.sessionCredential;
      sessionId = s.sessionId;
      return { ok: true };
    } catch (err) {
      return errorOf(err);
    }
  },
  async watch(step) {
    const grants = (scenario.steps.find((s) => s.do === "start_session")!.grants as { resource: string; scopes: string[] }[]).map((g) => ({ resource: g.resource, scopes: g.scopes }));
    manager = new CredentialManager({ endpoints: [server.url], transport: grpcTransport, sessionCredential, grants });
    rec = recordEvents(manager);
    await manager.start({ timeoutMs: ms(step.timeout) }).catch(() => undefined);
    return { tokens_for: manager.state().grants.filter((g) => g.tokenId !== undefined).map((g) => g.resource).sort() };
  },
  async await_renewal(step) {
    const resource = String(step.resource);
    const before = manager!.state().grants.find((g) => g.resource === resource)!;
    try {
      await rec.next("renewed", (e) => e.resource === resource && e.replacesTokenId === before.tokenId, ms(step.timeout));
      return { renewed: true, before_expiry: Date.now() < before.expiresAt! };
    } catch {
      return { renewed: false, before_expiry: false };
    }
  },
  revoke_token: revokeHeld,
  async watch_with_credential(step) {
    const m = new CredentialManager({ endpoints: [server.url], transport: grpcTransport, sessionCredential: String(step.credential), grants: [{ resource: "crm", scopes: ["read"] }] });
    try {
      await m.start({ timeoutMs: 10_000 });
      return { ok: true };
    } catch (err) {
      return errorOf(err);
    } finally {
      await m.close();
    }
  },
  async issue_token(step) {
    try {
      await clientWith(sessionCredential).issueToken({
        resource: String(step.resource),
        scopes: step.scopes as string[],
        ...(step.ttl !== undefined && { ttl: { seconds: BigInt(ms(step.ttl) / 1000), nanos: 0 } }),
      });
      return { ok: true };
    } catch (err) {
      return errorOf(err);
    }
  },
  async restart_server(step) {
    await server.kill(step.signal as NodeJS.Signals);
    await startServer();
    return { ok: true };
  },
  async end_session(step) {
    const ended = rec.next("ended", () => true, ms(step.timeout));
    await orchestrator.endSession({ sessionId, reason: String(step.reason) });
    const endedEvent = await ended.then((e: Extract<CredentialEvent, { type: "ended" }>) => e.code === "SESSION_ENDED").catch(() => false);
    const stopped = manager!.state().status === "ended";
    const getTokenError = await manager!.getToken("calendar").then(
      () => undefined,
      (err: unknown) => ({ reason: CapvendError.from(err).code }),
    );
    return { ended_event: endedEvent, manager_stopped: stopped, get_token_error: getTokenError };
  },
};

beforeAll(async () => {
  nats = await startNatsServer();
  port = await freePort();
  dataDir = await mkdtemp(path.join(os.tmpdir(), "capvend-scenario-"));
  await startServer();
}, 60_000);

afterAll(async () => {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, "typescript.json"), JSON.stringify({ language: "typescript", results }, null, 2) + "\n");
  await manager?.close();
  await server?.cleanup();
  await nats?.cleanup();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("client scenario, TypeScript driver (@capvend/client)", () => {
  for (const step of scenario.steps) {
    it(`${step.id} (${step.do})`, async () => {
      const drive = drivers[step.do];
      let observed: unknown;
      try {
        observed = drive ? await drive(step) : { unsupported: step.do };
      } catch (err) {
        observed = { exception: String(err) };
      }
      results.push({ id: step.id, observed });
      expect(observed).toEqual(step.expect);
    }, 60_000);
  }
});

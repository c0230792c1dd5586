import { writeFileSync } from "node:fs";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { parseDuration } from "../config/duration.js";
import { errorInfoOf } from "../errors.js";
import { CONNECTION_FLAGS, connect, parseFlags, UsageError, type RemoteIo } from "./remote.js";

export const SESSION_USAGE = `usage (against a running server; --address or CAPVEND_ADDRESS, CAPVEND_TOKEN or --token-file):
  capvend session start --agent A [--user U] --grant RESOURCE=SCOPE[,SCOPE...][@TTL] ... [--max-duration 8h] [--label k=v ...] [--credential-file FILE]
      Prints the session id and expiry, and the session credential (or writes it, 0600, to FILE).
  capvend session list [--agent A] [--user U] [--resource R] [--all] [--page-size N]
  capvend session show SESSION_ID
  capvend session end SESSION_ID [--reason TEXT]
  capvend revoke --session ID | --agent A | --user U | --resource R | --token JTI [--reason TEXT]
`;

const iso = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : "-");

/** `capvend session start|list|show|end`. */
export async function sessionCommand(argv: string[], io: RemoteIo): Promise<number> {
  const [sub, ...rest] = argv;
  return guard(io, `session ${sub ?? ""}`.trim(), async () => {
    switch (sub) {
      case "start":
        return start(rest, io);
      case "list":
        return list(rest, io);
      case "show":
        return show(rest, io);
      case "end":
        return end(rest, io);
      default:
        throw new UsageError(sub ? `unknown subcommand "${sub}"` : "name a subcommand");
    }
  });
}

/** `capvend revoke --session|--agent|--user|--resource|--token VALUE [--reason TEXT]`. */
export async function revokeCommand(argv: string[], io: RemoteIo): Promise<number> {
  return guard(io, "revoke", async () => {
    const kinds = { session: "sessionId", agent: "agentId", user: "userId", resource: "resource", token: "tokenId" } as const;
    const { flags, positional } = parseFlags(argv, [...CONNECTION_FLAGS, ...Object.keys(kinds), "reason"]);
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);
    const given = (Object.keys(kinds) as (keyof typeof kinds)[]).filter((k) => flags.has(k));
    if (given.length !== 1) throw new UsageError("give exactly one of --session, --agent, --user, --resource, --token");
    const kind = given[0]!;
    const remote = connect(flags, io.env);
    const r = await remote.vending.revoke({ target: { case: kinds[kind], value: flags.get(kind)![0]! }, reason: flags.get("reason")?.[0] ?? "" });
    io.stdout(`revoked: ${r.revocationId} at ${iso(r.revokedAt)}\n`);
    return 0;
  });
}

/** Runs a remote command: usage errors exit 2, server refusals 1 with the code and reason. */
export async function guard(io: RemoteIo, what: string, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`capvend ${what}: ${err.message}\n\n${SESSION_USAGE}`);
      return 2;
    }
    if (err instanceof ConnectError) {
      const reason = errorInfoOf(err)?.reason;
      io.stderr(`capvend ${what}: ${err.rawMessage} (${codeName(err)}${reason ? `, ${reason}` : ""})\n`);
      return 1;
    }
    throw err;
  }
}

function codeName(err: ConnectError): string {
  return ["OK", "CANCELED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"][err.code] ?? String(err.code);
}

async function start(argv: string[], io: RemoteIo): Promise<number> {
  const { flags, positional } = parseFlags(argv, [...CONNECTION_FLAGS, "agent", "user", "grant", "max-duration", "label", "credential-file"], { multi: ["grant", "label"] });
  if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);
  const agentId = flags.get("agent")?.[0];
  if (!agentId) throw new UsageError("--agent is required");
  const grants = (flags.get("grant") ?? []).map(parseGrant);
  if (grants.length === 0) throw new UsageError("at least one --grant RESOURCE=SCOPE[,SCOPE...] is required");
  const labels: Record<string, string> = {};
  for (const l of flags.get("label") ?? []) {
    const eq = l.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label ${JSON.stringify(l)} is not key=value`);
    labels[l.slice(0, eq)] = l.slice(eq + 1);
  }
  const maxRaw = flags.get("max-duration")?.[0];
  const maxMs = maxRaw === undefined ? undefined : parseDuration(maxRaw);
  if (maxMs === undefined && maxRaw !== undefined) throw new UsageError(`--max-duration ${JSON.stringify(maxRaw)} is not a duration`);
  const remote = connect(flags, io.env);
  const r = await remote.vending.startSession({
    agentId,
    userId: flags.get("user")?.[0],
    grants,
    labels,
    maxDuration: maxMs === undefined ? undefined : { seconds: BigInt(Math.floor(maxMs / 1000)), nanos: (maxMs % 1000) * 1e6 },
  });
  io.stdout(`session: ${r.sessionId}\nexpires: ${iso(r.expiresAt)}\n`);
  const file = flags.get("credential-file")?.[0];
  if (file) {
    writeFileSync(file, r.sessionCredential + "\n", { mode: 0o600 });
    io.stdout(`credential: written to ${file}\n`);
  } else io.stdout(`credential: ${r.sessionCredential}\n`);
  return 0;
}

/** `crm=read,write@15m` → a grant. */
function parseGrant(raw: string) {
  const m = /^([^=]+)=([^@]+)(?:@(.+))?$/.exec(raw);
  if (!m) throw new UsageError(`--grant ${JSON.stringify(raw)} is not RESOURCE=SCOPE[,SCOPE...][@TTL]`);
  const ttlMs = m[3] === undefined ? undefined : parseDuration(m[3]);
  if (m[3] !== undefined && ttlMs === undefined) throw new UsageError(`--grant ${JSON.stringify(raw)}: ${JSON.stringify(m[3])} is not a duration`);
  return {
    resource: m[1]!,
    scopes: m[2]!.split(",").filter(Boolean),
    ttl: ttlMs === undefined ? undefined : { seconds: BigInt(Math.floor(ttlMs / 1000)), nanos: (ttlMs % 1000) * 1e6 },
  };
}

async function list(argv: string[], io: RemoteIo): Promise<number> {
  const { flags, positional } = parseFlags(argv, [...CONNECTION_FLAGS, "agent", "user", "resource", "all", "page-size"], { bool: ["all"] });
  if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);
  const pageSize = Number(flags.get("page-size")?.[0] ?? 100);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 500) throw new UsageError("--page-size must be from 1 to 500");
  const remote = connect(flags, io.env);
  let token = "";
  let n = 0;
  io.stdout("SESSION                         AGENT            USER             GRANTS                   EXPIRES / ENDED\n");
  do {
    const page = await remote.admin.listSessions({
      agentId: flags.get("agent")?.[0] ?? "",
      userId: flags.get("user")?.[0] ?? "",
      resource: flags.get("resource")?.[0] ?? "",
      includeEnded: flags.has("all"),
      pageSize,
      pageToken: token,
    });
    for (const s of page.sessions) {
      const grants = s.grants.map((g) => `${g.resource}=${g.scopes.join(",")}`).join(" ");
      const when = s.endedAt ? `ended ${iso(s.endedAt)} (${s.endReason})` : iso(s.expiresAt);
      io.stdout(`${s.sessionId.padEnd(31)} ${s.agentId.padEnd(16)} ${(s.userId || "-").padEnd(16)} ${grants.padEnd(24)} ${when}\n`);
      n++;
    }
    token = page.nextPageToken;
  } while (token !== "");
  io.stderr(`${n} session(s)\n`);
  return 0;
}

async function show(argv: string[], io: RemoteIo): Promise<number> {
  const { flags, positional } = parseFlags(argv, [...CONNECTION_FLAGS]);
  if (positional.length !== 1) throw new UsageError("name one session id");
  const remote = connect(flags, io.env);
  const r = await remote.admin.getSession({ sessionId: positional[0]! });
  const s = r.session!;
  io.stdout(`session:  ${s.sessionId}\nagent:    ${s.agentId}\nuser:     ${s.userId || "-"}\nstarted:  ${iso(s.createdAt)} by ${s.startedBy}\nexpires:  ${iso(s.expiresAt)}\n`);
  if (s.endedAt) io.stdout(`ended:    ${iso(s.endedAt)} (${s.endReason})\n`);
  for (const [k, v] of Object.entries(s.labels)) io.stdout(`label:    ${k}=${v}\n`);
  for (const g of s.grants) io.stdout(`grant:    ${g.resource} ${g.scopes.join(",")}${g.ttl ? ` ttl ${g.ttl.seconds}s` : ""}\n`);
  io.stdout(`streams:  ${r.streams.length}\n`);
  for (const st of r.streams) {
    io.stdout(`  stream ${st.streamId} on ${st.replica} (${st.state})\n`);
    for (const g of st.grants) {
      io.stdout(`    [${g.grantIndex}] ${g.resource} ${g.scopes.join(",")}${g.live ? "" : " (revoked)"}\n`);
      for (const t of g.tokens) io.stdout(`        token ${t.tokenId} expires ${iso(t.expiresAt)}\n`);
    }
  }
  for (const u of r.unansweredReplicas) io.stdout(`  (replica ${u} did not answer)\n`);
  return 0;
}

async function end(argv: string[], io: RemoteIo): Promise<number> {
  const { flags, positional } = parseFlags(argv, [...CONNECTION_FLAGS, "reason"]);
  if (positional.length !== 1) throw new UsageError("name one session id");
  const remote = connect(flags, io.env);
  const r = await remote.vending.endSession({ sessionId: positional[0]!, reason: flags.get("reason")?.[0] ?? "" });
  io.stdout(`ended: ${positional[0]} at ${iso(r.endedAt)}\n`);
  return 0;
}

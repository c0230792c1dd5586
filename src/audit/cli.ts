/**
 * `capvend audit verify [path]` and `capvend audit tail [--session S] [--agent A] [--user U]
 * [--follow] [--dir D]`. The main CLI passes the arguments after `audit` (a leading "audit"
 * is accepted too) and its output streams.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import type { Checkpoint } from "./checkpoint.js";
import { readCheckpointFile, readHead } from "./checkpoint.js";
import { fetchNatsCheckpoint } from "./nats-anchor.js";
import { AUDIT_SUBDIR } from "./segments.js";
import { describeError } from "../errors.js";
import { AUDIT_PUBLIC_KEY_FILE, readAuditPublicKey } from "./signing-key.js";
import { jwkThumbprint } from "../keys/thumbprint.js";
import { tailAuditLog } from "./tail.js";
import { verifyAuditLog, type AuditVerifyOptions } from "./verify.js";

/** Data directory used when neither a path nor `CAPVEND_DATA_DIR` is given. */
export const DEFAULT_DATA_DIR = "./.capvend";

/** Where `auditCommand` writes, and what it reads from its environment. */
export interface AuditCommandIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Default `process.env`; only `CAPVEND_DATA_DIR` is read. */
  env?: Record<string, string | undefined>;
  /** Stops `tail --follow`; without it, following lasts until the process ends. */
  signal?: AbortSignal;
}

const USAGE = `usage:
  capvend audit verify [path] [--anchor FILE|nats://HOST:PORT]... [--public-key PEM] [--no-head]
                                   check the hash chain and the signed checkpoints; path is a
                                   data dir, audit dir or segment. --anchor: a checkpoint kept
                                   elsewhere (a copy of audit-head.json, a JSON Lines file of
                                   checkpoints, or the JetStream audit stream); --public-key:
                                   the audit public key checkpoints must be signed by
  capvend audit tail [--session S] [--agent A] [--user U] [--follow] [--dir D]
data dir default: $CAPVEND_DATA_DIR or ${DEFAULT_DATA_DIR}
`;

/**
 * Runs an audit subcommand. Exit codes: 0 success, 1 the log is broken or missing, 2 usage
 * error.
 */
export async function auditCommand(argv: string[], io: AuditCommandIo): Promise<number> {
  const args = argv[0] === "audit" ? argv.slice(1) : argv;
  const [sub, ...rest] = args;
  const dataDir = (io.env ?? process.env).CAPVEND_DATA_DIR || DEFAULT_DATA_DIR;
  try {
    switch (sub) {
      case "verify":
        return await verify(rest, dataDir, io);
      case "tail":
        return await tail(rest, dataDir, io);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        io.stdout(USAGE);
        return sub === undefined ? 2 : 0;
      default:
        io.stderr(`capvend audit: unknown subcommand "${sub}"\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr(`capvend audit ${sub}: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    io.stderr(`capvend audit ${sub}: ${describeError(err)}\n`);
    return 1;
  }
}

async function verify(args: string[], dataDir: string, io: AuditCommandIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      dir: { type: "string" },
      anchor: { type: "string", multiple: true },
      "public-key": { type: "string" },
      "no-head": { type: "boolean", default: false },
    },
  });
  if (positionals.length > 1) {
    io.stderr(`capvend audit verify: expected at most one path\n${USAGE}`);
    return 2;
  }
  const path = positionals[0] ?? values.dir ?? dataDir;
  const opts: AuditVerifyOptions = { head: !values["no-head"] };
  // The data directory the path belongs to, for the public key and the log's id.
  const home = basename(path) === AUDIT_SUBDIR ? dirname(path) : path.endsWith(".jsonl") ? dirname(dirname(path)) : path;
  if (values["public-key"] !== undefined) opts.trustedKeyX = await readAuditPublicKey(values["public-key"]);
  const anchors: { checkpoint: Checkpoint; source: string }[] = [];
  for (const a of values.anchor ?? []) {
    if (/^(nats|tls):\/\//i.test(a)) {
      const kid = await logKid(home, opts.trustedKeyX);
      if (!kid) throw new Error(`--anchor ${maskUrl(a)}: the log's audit key is unknown (no ${AUDIT_PUBLIC_KEY_FILE} or head file in ${home}); pass --public-key`);
      anchors.push({ checkpoint: await fetchNatsCheckpoint(a, kid), source: maskUrl(a) });
    } else {
      const cps = await readCheckpointFile(a);
      cps.forEach((c, i) => anchors.push({ checkpoint: c, source: cps.length === 1 ? a : `${a}:${i + 1}` }));
    }
  }
  if (anchors.length > 0) opts.anchors = anchors;
  const result = await verifyAuditLog(path, opts);
  if (result.ok === true) {
    const cps = result.checkpoints ?? [];
    const against = cps.length === 0 ? "; no checkpoint to hold it to" : `; matches ${cps.map((c) => `${c.source === "head" ? "the head" : c.source} (seq ${c.seq})`).join(", ")}`;
    io.stdout(`audit log ok: ${result.records} records in ${result.files} file${result.files === 1 ? "" : "s"} (${path})${against}\n`);
    return 0;
  }
  if (result.code === "not_found") {
    io.stderr(`capvend audit verify: ${result.reason}\n`);
    return 1;
  }
  const seq = result.seq !== undefined ? ` (seq ${result.seq})` : "";
  const at = result.line > 0 ? `${result.file}:${result.line}` : result.file;
  io.stderr(
    `audit log BROKEN at ${at}${seq}: ${result.reason}\n` +
      `${result.records} record${result.records === 1 ? "" : "s"} verified before it\n`,
  );
  return 1;
}

/** The audit key id of the log in `dataDir`: from the trusted key, the public key file, or the head file. */
async function logKid(dataDir: string, trustedX: string | undefined): Promise<string | undefined> {
  if (trustedX) return jwkThumbprint({ kty: "OKP", crv: "Ed25519", x: trustedX });
  const pub = join(dataDir, AUDIT_PUBLIC_KEY_FILE);
  if (existsSync(pub)) return jwkThumbprint({ kty: "OKP", crv: "Ed25519", x: await readAuditPublicKey(pub) });
  return (await readHead(dataDir).catch(() => undefined))?.kid;
}

function maskUrl(u: string): string {
  return u.replace(/\/\/[^@/]*@/, "//***@");
}

async function tail(args: string[], dataDir: string, io: AuditCommandIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: false,
    options: {
      session: { type: "string" },
      agent: { type: "string" },
      user: { type: "string" },
      follow: { type: "boolean", short: "f", default: false },
      dir: { type: "string" },
    },
  });
  void positionals;
  const filter: { session_id?: string; agent_id?: string; user_id?: string } = {};
  if (values.session !== undefined) filter.session_id = values.session;
  if (values.agent !== undefined) filter.agent_id = values.agent;
  if (values.user !== undefined) filter.user_id = values.user;
  const opts: Parameters<typeof tailAuditLog>[0] = {
    dir: values.dir ?? dataDir,
    follow: values.follow ?? false,
    filter,
    out: (line) => io.stdout(`${line}\n`),
  };
  if (io.signal) opts.signal = io.signal;
  await tailAuditLog(opts);
  return 0;
}

/**
 * `capvend audit verify [path]` and `capvend audit tail [--session S] [--agent A] [--user U]
 * [--follow] [--dir D]`. The main CLI passes the arguments after `audit` (a leading "audit"
 * is accepted too) and its output streams.
 */
import { parseArgs } from "node:util";
import { tailAuditLog } from "./tail.js";
import { verifyAuditLog } from "./verify.js";

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
  capvend audit verify [path]      check the hash chain; path is a data dir, audit dir or segment
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
    io.stderr(`capvend audit ${sub}: ${(err as Error).message}\n`);
    return 1;
  }
}

async function verify(args: string[], dataDir: string, io: AuditCommandIo): Promise<number> {
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { dir: { type: "string" } } });
  if (positionals.length > 1) {
    io.stderr(`capvend audit verify: expected at most one path\n${USAGE}`);
    return 2;
  }
  const path = positionals[0] ?? values.dir ?? dataDir;
  const result = await verifyAuditLog(path);
  if (result.ok === true) {
    io.stdout(`audit log ok: ${result.records} records in ${result.files} file${result.files === 1 ? "" : "s"} (${path})\n`);
    return 0;
  }
  if (result.code === "not_found") {
    io.stderr(`capvend audit verify: ${result.reason}\n`);
    return 1;
  }
  const seq = result.seq !== undefined ? ` (seq ${result.seq})` : "";
  io.stderr(
    `audit log BROKEN at ${result.file}:${result.line}${seq}: ${result.reason}\n` +
      `${result.records} record${result.records === 1 ? "" : "s"} verified before it\n`,
  );
  return 1;
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

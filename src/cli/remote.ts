import { readFileSync } from "node:fs";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService } from "../gen/capvend/admin/v1/admin_pb.js";
import { VendingService } from "../gen/capvend/v1/vending_pb.js";

/** Where the CLI's remote commands go when neither --address nor CAPVEND_ADDRESS says. */
export const DEFAULT_ADDRESS = "http://127.0.0.1:8080";

/** The flags every remote command takes. */
export const CONNECTION_FLAGS = ["address", "token-file"] as const;

export interface RemoteIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: Record<string, string | undefined>;
}

/** The clients of one running server, authenticated as an orchestrator. */
export interface Remote {
  address: string;
  vending: Client<typeof VendingService>;
  admin: Client<typeof AdminService>;
}

/** A usage mistake: printed with the usage, exit code 2. */
export class UsageError extends Error {}

/**
 * Connects to the server named by `--address` (or CAPVEND_ADDRESS, default
 * http://127.0.0.1:8080; https URLs use TLS) with the orchestrator bearer from
 * `--token-file FILE`, or CAPVEND_TOKEN, or CAPVEND_ORCHESTRATOR_TOKEN. Bearers are never
 * taken from a flag's value: a command line is visible to every user of the machine.
 */
export function connect(flags: Map<string, string[]>, env: RemoteIo["env"]): Remote {
  const raw = flags.get("address")?.[0] ?? env.CAPVEND_ADDRESS ?? DEFAULT_ADDRESS;
  const address = /^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`;
  try {
    const u = new URL(address);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
  } catch {
    throw new UsageError(`--address ${JSON.stringify(raw)} is not host:port or an http(s) URL`);
  }
  const file = flags.get("token-file")?.[0];
  let token: string | undefined;
  if (file) {
    try {
      token = readFileSync(file, "utf8").trim();
    } catch (err) {
      throw new UsageError(`--token-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  } else token = env.CAPVEND_TOKEN ?? env.CAPVEND_ORCHESTRATOR_TOKEN;
  if (!token) throw new UsageError("no credential: set CAPVEND_TOKEN (an orchestrator token) or pass --token-file FILE");
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcTransport({ baseUrl: address, interceptors: [bearer] });
  return { address, vending: createClient(VendingService, transport), admin: createClient(AdminService, transport) };
}

/** Parses `--name value` flags (and `--name=value`); `multi` names may repeat; `bool` names take no value. */
export function parseFlags(
  argv: readonly string[],
  known: readonly string[],
  opts: { multi?: readonly string[]; bool?: readonly string[] } = {},
): { flags: Map<string, string[]>; positional: string[] } {
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    } else if (opts.bool?.includes(name)) value = "true";
    else value = argv[++i];
    if (!known.includes(name)) throw new UsageError(`unknown flag --${name}`);
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    const list = flags.get(name) ?? [];
    if (list.length > 0 && !opts.multi?.includes(name)) throw new UsageError(`--${name} given twice`);
    list.push(value);
    flags.set(name, list);
  }
  return { flags, positional };
}

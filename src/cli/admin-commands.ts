import { timestampDate } from "@bufbuild/protobuf/wkt";
import { CONNECTION_FLAGS, connect, parseFlags, UsageError, type RemoteIo } from "./remote.js";
import { guard } from "./session-command.js";

/** `capvend policy status|reload` against a running server (AdminService). */
export async function remotePolicyCommand(sub: "status" | "reload", argv: string[], io: RemoteIo): Promise<number> {
  return guard(io, `policy ${sub}`, async () => {
    const { flags, positional } = parseFlags(argv, [...CONNECTION_FLAGS]);
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);
    const remote = connect(flags, io.env);
    if (sub === "reload") {
      const r = await remote.admin.reloadPolicy({});
      if (r.error) {
        io.stderr(`reload failed on ${r.replica}: ${r.error}\nstill in force: ${r.policyVersion}\n`);
        return 1;
      }
      io.stdout(`${r.replica}: policy version ${r.policyVersion}${r.changed ? " (changed)" : " (unchanged)"}\n`);
      return 0;
    }
    const r = await remote.admin.policyStatus({});
    for (const p of r.replicas) {
      const loaded = p.loadedAt ? timestampDate(p.loadedAt).toISOString() : "-";
      io.stdout(`${p.replica.padEnd(24)} ${p.policyVersion}  ${p.origin}  loaded ${loaded}${p.lastError ? `  last error: ${p.lastError}` : ""}\n`);
    }
    io.stdout(r.converged ? "converged: every replica runs the same version\n" : "NOT converged: replicas run different versions\n");
    return r.converged ? 0 : 1;
  });
}

/** `capvend keys rotate` against a running server: published now, signing after the publish delay. */
export async function remoteKeysRotate(argv: string[], io: RemoteIo): Promise<number> {
  return guard(io, "keys rotate", async () => {
    const { flags, positional } = parseFlags(argv, [...CONNECTION_FLAGS]);
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);
    const r = await connect(flags, io.env).admin.rotateKeys({});
    const at = r.activatesAt ? timestampDate(r.activatesAt).toISOString() : "now";
    io.stdout(`rotated on ${r.replica}: ${r.kid} is published and signs from ${at}; ${r.retiredKid} stays published until its last token expires\n`);
    return 0;
  });
}

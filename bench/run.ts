/**
 * `npm run bench [-- name ...]`: runs every benchmark (or the named ones) one after the
 * other and prints their figures. Each benchmark measures its own baseline in the same run,
 * because this machine is shared and noisy: compare ratios, quote medians.
 */
const BENCHES: Record<string, () => Promise<{ main(): Promise<void> }>> = {
  sign: () => import("./sign.js"),
  policy: () => import("./policy.js"),
  audit: () => import("./audit.js"),
  streams: () => import("./streams.js"),
  issuance: () => import("./issuance.js"),
  validation: () => import("./validation.js"),
  "cross-replica": () => import("./cross-replica.js"),
  "policy-drift": () => import("./policy-drift.js"),
  peer: () => import("./peer.js"),
  profile: () => import("./profile.js"),
  limits: () => import("./limits.js"),
  client: () => import("./client.js"),
  durability: () => import("./durability.js"),
  python: () => import("./python.js"),
  "push-latency": () => import("./push-latency.js"),
  "reload-memory": () => import("./reload-memory.js"),
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((n) => !(n in BENCHES));
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark(s): ${unknown.join(", ")}; known: ${Object.keys(BENCHES).join(", ")}\n`);
  process.exit(2);
}
for (const name of wanted.length > 0 ? wanted : Object.keys(BENCHES)) {
  process.stdout.write(`\n=== ${name} ===\n`);
  let mod;
  try {
    mod = await BENCHES[name]!();
  } catch (err) {
    process.stdout.write(`(not available: ${(err as Error).message})\n`);
    continue;
  }
  await mod.main();
}
process.exit(0);

/**
 * The Node.js flags `capvend serve` runs with: `npm start` and the `capvend` command's
 * `#!` line pass them (a flag of V8's heap layout cannot be set once the process runs), and
 * the benchmarks start the server with them. A test keeps the three in step.
 *
 * `--max-semi-space-size=64` (MiB, default 16): a token renewal or issuance allocates tens of
 * KiB that live for a few ms, in bursts of hundreds when renewals fall due together. With the
 * default young generation, a scavenge lands in most bursts and copies, then promotes, what is
 * still in flight; with 64 MiB there are a quarter as many, and about 40% less is promoted
 * (`npm run bench -- streams`, 10,000 streams: GC time per renewal 28 → 20 µs, about 30% more
 * renewals per CPU-second, about 85 MiB more resident memory while the streams open). V8 grows
 * the young generation only as far as the load needs: an idle replica stays small.
 */
export const SERVE_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=64"];

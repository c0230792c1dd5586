/**
 * Request validation cost: what the contract's protovalidate rules (src/service/contract-
 * validator.ts) add to each IssueToken and StartSession, as µs per request, median of 5
 * runs. Baselines in the same run: decoding the request from its wire bytes (what every
 * request pays anyway), and protovalidate with its default RE2 engine instead of the
 * platform RegExp the server plugs in.
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { IssueTokenRequestSchema, StartSessionRequestSchema, WatchSessionRequestSchema } from "../src/gen/capvend/v1/vending_pb.js";
import { createContractValidator } from "../src/service/contract-validator.js";

const RUNS = 5;
const RUN_MS = 700;

/** µs per call of `fn` over about RUN_MS, RUNS times; the median. */
function usPerCall(fn: () => void): number {
  for (let i = 0; i < 2000; i++) fn();
  const runs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let n = 0;
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < RUN_MS) {
      for (let i = 0; i < 100; i++) fn();
      n += 100;
      elapsed = performance.now() - start;
    }
    runs.push((elapsed * 1000) / n);
  }
  runs.sort((a, b) => a - b);
  return runs[Math.floor(RUNS / 2)]!;
}

function row(label: string, us: number): void {
  process.stdout.write(`${label.padEnd(58)} ${us.toFixed(2).padStart(8)} µs\n`);
}

export async function main(): Promise<void> {
  const contract = createContractValidator();
  const re2 = createValidator({ failFast: true });
  const cases: [string, DescMessage, MessageShape<DescMessage>][] = [
    ["IssueToken (1 resource, 2 scopes, ttl)", IssueTokenRequestSchema, create(IssueTokenRequestSchema, { resource: "salesforce", scopes: ["read", "write"], ttl: { seconds: 300n } })],
    [
      "StartSession (user, 2 grants, 2 labels, request_id)",
      StartSessionRequestSchema,
      create(StartSessionRequestSchema, {
        agentId: "sales-bot",
        userId: "alice",
        grants: [
          { resource: "salesforce", scopes: ["read", "write"], ttl: { seconds: 600n } },
          { resource: "calendar", scopes: ["read"] },
        ],
        labels: { env: "prod", team: "sales" },
        requestId: "0b7f4a2e-6c1d-4f3a-9e8b-2d5c7a1f0e94",
      }),
    ],
    ["WatchSession (2 grants)", WatchSessionRequestSchema, create(WatchSessionRequestSchema, { grants: [{ resource: "salesforce", scopes: ["read", "write"] }, { resource: "calendar", scopes: ["read"] }] })],
  ];
  for (const [label, schema, msg] of cases) {
    const bytes = toBinary(schema, msg);
    process.stdout.write(`\n${label}\n`);
    row("  decode from wire bytes (baseline)", usPerCall(() => fromBinary(schema, bytes)));
    row("  contract check (protovalidate, platform RegExp)", usPerCall(() => contract.check(schema, msg)));
    row("  plain protovalidate (RE2, durations in CEL every time)", usPerCall(() => re2.validate(schema, msg)));
  }
  let seconds = 1n;
  const fresh = () => create(IssueTokenRequestSchema, { resource: "salesforce", scopes: ["read", "write"], ttl: { seconds: (seconds = (seconds % 3000n) + 1n) } });
  process.stdout.write("\nIssueToken with a TTL not seen before (cycling through 3000)\n");
  const fresher = createContractValidator();
  row("  contract check", usPerCall(() => fresher.check(IssueTokenRequestSchema, fresh())));
}

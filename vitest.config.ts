import { defineConfig } from "vitest/config";

/**
 * The backends the in-process e2e suite runs on: `CAPVEND_TEST_BACKEND` (memory, file or
 * nats; test/helpers/harness.ts opens them). Unset, vitest runs every test, the e2e suite on
 * the memory backends. Set, it runs only the e2e suite, named `e2e-<backend>` in the output,
 * as scripts/suites/11-e2e-backends.sh does for file and nats.
 */
const backend = process.env.CAPVEND_TEST_BACKEND;

/**
 * E2E files that do not run on the harness's backends, each for its reason, so they run once
 * (in the default run) rather than once per backend.
 */
export const BACKEND_INDEPENDENT_E2E = [
  // Start replicas as processes with their own configuration (test/helpers/replica-process.ts).
  "test/e2e/admin-cli.test.ts",
  "test/e2e/restart.test.ts",
  // Runs the CLI as a process.
  "test/e2e/cli.test.ts",
  // Runs on stores of its own that fail on demand.
  "test/e2e/error-reasons.test.ts",
];

export default defineConfig({
  test: {
    ...(backend ? { name: `e2e-${backend}`, include: ["test/e2e/**/*.test.ts"], exclude: BACKEND_INDEPENDENT_E2E } : { include: ["test/**/*.test.ts"] }),
    // Builds dist/ for the tests that run replicas as processes; the per-backend e2e runs have none.
    globalSetup: backend ? [] : ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real servers and nats-server processes bind loopback ports; two cores are all we have.
    pool: "forks",
    maxWorkers: 2,
  },
});

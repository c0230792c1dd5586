#!/usr/bin/env bash
# The in-process e2e suite (test/e2e) again on the other backends: the durable file store and
# NATS JetStream (each harness starts its own nats-server on free ports). The default run
# (10-typescript) covers the memory backends; vitest.config.ts lists the e2e files that do
# not depend on the backend and so run there only. Writes "<passed> <failed> <skipped>" to $1.
set -uo pipefail
out="$1"
export PATH="$PATH:/usr/sbin"
passed=0 failed=0 skipped=0 status=0
for backend in file nats; do
  printf '\n--- e2e on the %s backends (CAPVEND_TEST_BACKEND=%s) ---\n' "$backend" "$backend"
  results=$(mktemp --suffix=.json)
  CAPVEND_TEST_BACKEND="$backend" npx vitest run --reporter=default --reporter=json --outputFile="$results"
  rc=$?
  counts=$(node -e '
    const fs = require("fs");
    try {
      const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
      // A file that fails to load has no failed test of its own: count it as one.
      const failed = r.numFailedTests + (r.numFailedTests === 0 ? r.numFailedTestSuites : 0);
      console.log(`${r.numPassedTests} ${failed} ${r.numPendingTests + r.numTodoTests}`);
    } catch { console.log("0 1 0"); }
  ' "$results")
  rm -f "$results"
  read -r p f s <<< "$counts"
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  [ "$rc" -ne 0 ] && status=1
  echo "e2e-$backend: $p passed, $f failed, $s skipped"
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
echo "$passed $failed $skipped" > "$out"
exit $status

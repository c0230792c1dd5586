#!/usr/bin/env bash
# The TypeScript suite: vitest over test/**/*.test.ts. Writes "<passed> <failed> <skipped>" to $1.
set -uo pipefail
out="$1"
results=$(mktemp --suffix=.json)
npx vitest run --reporter=default --reporter=json --outputFile="$results"
status=$?
node -e '
  const fs = require("fs");
  try {
    const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    // A file that fails to load has no failed test of its own: count it as one.
    const failed = r.numFailedTests + (r.numFailedTests === 0 ? r.numFailedTestSuites : 0);
    fs.writeFileSync(process.argv[2], `${r.numPassedTests} ${failed} ${r.numPendingTests + r.numTodoTests}\n`);
  } catch { fs.writeFileSync(process.argv[2], "0 1 0\n"); }
' "$results" "$out"
rm -f "$results"
exit $status

#!/usr/bin/env bash
# The Go suite: `go vet ./...` and `go test -race ./...` in clients/go (the Go client and its
# scenario driver, which starts real capvend processes from dist/ and its own nats-server).
# Writes "<passed> <failed> <skipped>" to $1: every test and subtest counted from
# `go test -json`, plus one failure when vet finds problems or a package fails to build.
set -uo pipefail
out="$1"
root="$PWD"

if ! command -v go >/dev/null 2>&1; then
  echo "go suite: no go toolchain on PATH"
  echo "0 1 0" > "$out"
  exit 1
fi
# The tests run the built server: build it when it is missing or older than its sources.
if [ ! -f dist/src/cli.js ] || [ -n "$(find src -name '*.ts' -newer dist/src/cli.js -print -quit)" ]; then
  echo "go suite: building dist/ (npm run build)"
  npm run build --silent || { echo "0 1 0" > "$out"; exit 1; }
fi
export CAPVEND_SCENARIO_OUT="${CAPVEND_SCENARIO_OUT:-$root/.scenario-results}"
mkdir -p "$CAPVEND_SCENARIO_OUT"

cd clients/go || { echo "0 1 0" > "$out"; exit 1; }
vet_failed=0
echo "go vet ./..."
go vet ./... || vet_failed=1

events=$(mktemp --suffix=.json)
go test -race -count=1 -timeout 12m -json ./... > "$events"
status=$?
# Print the run as `go test -v` would, then count.
node -e '
  const fs = require("fs");
  const lines = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
  let passed = 0, failed = 0, skipped = 0, pkgFailed = 0;
  const pkgTestFailed = new Set();
  for (const l of lines) {
    let e;
    try { e = JSON.parse(l); } catch { process.stdout.write(l + "\n"); continue; }
    if (e.Action === "output") process.stdout.write(e.Output);
    if (e.Test) {
      if (e.Action === "pass") passed++;
      else if (e.Action === "fail") { failed++; pkgTestFailed.add(e.Package); }
      else if (e.Action === "skip") skipped++;
    } else if (e.Action === "fail" && !pkgTestFailed.has(e.Package)) {
      pkgFailed++; // a build failure, or a failure outside any test
    }
  }
  const vet = Number(process.argv[3]);
  fs.writeFileSync(process.argv[2], `${passed} ${failed + pkgFailed + vet} ${skipped}\n`);
' "$events" "$out" "$vet_failed" || echo "0 1 0" > "$out"
rm -f "$events"
[ "$vet_failed" -ne 0 ] && exit 1
exit $status

#!/usr/bin/env bash
# Runs every test suite in the repo, in every language, and ends with one line that sums
# them up: "N passed, N failed" (", N skipped" when some were skipped).
#
# Each suite is a script in scripts/suites/, run in name order from the repo root. It runs
# its tests and writes "<passed> <failed> <skipped>" to the file named by its first
# argument. A suite that exits non-zero without writing counts as one failure.
#
#   scripts/test.sh                 every suite
#   scripts/test.sh typescript      only the suites whose file name contains "typescript"
set -uo pipefail
cd "$(dirname "$0")/.."

filter="${1:-}"
# Scenario drivers write their results here; the last suite compares them.
export CAPVEND_SCENARIO_OUT="${CAPVEND_SCENARIO_OUT:-$PWD/.scenario-results}"
[ -z "$filter" ] && rm -rf "$CAPVEND_SCENARIO_OUT"
mkdir -p "$CAPVEND_SCENARIO_OUT"
passed=0 failed=0 skipped=0 status=0
for suite in scripts/suites/*.sh; do
  name=$(basename "$suite" .sh)
  [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
  printf '\n=== suite %s ===\n' "$name"
  counts=$(mktemp)
  bash "$suite" "$counts"
  rc=$?
  read -r p f s < "$counts" || true
  rm -f "$counts"
  if [ -z "${p:-}" ]; then p=0 f=1 s=0; echo "suite $name: wrote no counts (exit $rc)"; fi
  [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && f=1
  [ "$rc" -ne 0 ] && status=1
  [ "${f:-0}" -gt 0 ] && status=1
  echo "suite $name: $p passed, $f failed, ${s:-0} skipped"
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + ${s:-0}))
  unset p f s
done
[ $((passed + failed)) -eq 0 ] && { failed=1; status=1; echo "no suite ran"; }
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
exit $status

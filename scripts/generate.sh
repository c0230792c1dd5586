#!/usr/bin/env bash
# Generates every language's code from proto/ (and proto-vendor/) with buf and local
# plugins only:
#   src/gen                          TypeScript for the server      (buf.gen.yaml)
#   clients/typescript/src/gen       TypeScript for @capvend/client (buf.gen.client-ts.yaml)
#   clients/python/src/capvend/v1    Python (and buf/validate)      (buf.gen.python.yaml)
#   clients/go/gen/capvend/v1        Go                             (buf.gen.go.yaml)
# Installs the pinned Go and Python generators into .tools/ first (a no-op when present).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-generators.sh >/dev/null
npx buf generate
npx buf generate --template buf.gen.client-ts.yaml
# clients/python/src holds hand-written code too: remove only generated files.
find clients/python/src/capvend/v1 clients/python/src/buf/validate -maxdepth 1 -type f \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' \) -delete 2>/dev/null || true
npx buf generate --template buf.gen.python.yaml
npx buf generate --template buf.gen.go.yaml

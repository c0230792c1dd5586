#!/usr/bin/env bash
# Installs the code generators that `buf generate` runs as local plugins, at pinned versions,
# into .tools/ (ignored by git). Idempotent: a generator already at its pinned version is
# kept. Run it once after cloning and whenever a version below changes; CI runs it first.
#
#   .tools/bin/protoc-gen-go, .tools/bin/protoc-gen-go-grpc   from the Go module proxy
#   .tools/venv                                               grpcio-tools from PyPI
#   .tools/bin/protoc                                         runs grpcio-tools' protoc
#   .tools/bin/protoc-gen-grpc-python                         its gRPC Python generator
#
# protoc-gen-es comes from npm (package.json) and needs nothing here.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
GRPCIO_TOOLS_VERSION=1.85.1

TOOLS="$PWD/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

# A stamp per generator records the version installed, so a rerun skips it.
have() { [ -f "$TOOLS/$1.version" ] && [ "$(cat "$TOOLS/$1.version")" = "$2" ]; }
stamp() { echo "$2" > "$TOOLS/$1.version"; }

if ! have protoc-gen-go "$PROTOC_GEN_GO_VERSION" || [ ! -x "$BIN/protoc-gen-go" ]; then
  echo "install-generators: protoc-gen-go $PROTOC_GEN_GO_VERSION"
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  stamp protoc-gen-go "$PROTOC_GEN_GO_VERSION"
fi

if ! have protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION" || [ ! -x "$BIN/protoc-gen-go-grpc" ]; then
  echo "install-generators: protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC_VERSION"
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  stamp protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
fi

if ! have grpcio-tools "$GRPCIO_TOOLS_VERSION" || [ ! -x "$TOOLS/venv/bin/python" ]; then
  echo "install-generators: grpcio-tools $GRPCIO_TOOLS_VERSION"
  rm -rf "$TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS_VERSION"
  stamp grpcio-tools "$GRPCIO_TOOLS_VERSION"
fi

# buf's protoc_builtin plugins (python, pyi, grpc_python) run this protoc: grpcio-tools'
# own, which carries the grpc_python generator and matches the grpcio runtime.
cat > "$BIN/protoc" <<SHIM
#!/usr/bin/env bash
exec "$TOOLS/venv/bin/python" -m grpc_tools.protoc "\$@"
SHIM
chmod +x "$BIN/protoc"
# grpcio-tools has no standalone gRPC Python plugin: this one drives its protoc.
cat > "$BIN/protoc-gen-grpc-python" <<SHIM
#!/usr/bin/env bash
exec "$TOOLS/venv/bin/python" "$PWD/scripts/generators/protoc-gen-grpc-python.py" "\$@"
SHIM
chmod +x "$BIN/protoc-gen-grpc-python"
echo "install-generators: ready in .tools/"

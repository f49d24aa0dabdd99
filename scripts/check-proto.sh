#!/usr/bin/env bash
# Regenerates the protobuf Go code into a temp copy of the tree and fails if it
# differs from what is checked in (run `make proto` and commit the result).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/proto" "$tmp/proto"
go build -o "$tmp/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$tmp/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
cd "$tmp"
protoc -I proto \
  --plugin=protoc-gen-go="$tmp/protoc-gen-go" --go_out=proto --go_opt=paths=source_relative \
  --plugin=protoc-gen-go-grpc="$tmp/protoc-gen-go-grpc" --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
  $(cd "$root" && find proto -name '*.proto')
if ! diff -r "$root/proto" "$tmp/proto" >/dev/null; then
  diff -r "$root/proto" "$tmp/proto" | head -40
  echo "check-proto: generated code is stale: run 'make proto' and commit" >&2
  exit 1
fi
echo "check-proto: generated code matches the .proto files"

#!/usr/bin/env bash
# Regenerates the protobuf code into a temp copy of proto/ and fails if it differs
# from what is checked in (then run `make proto` and commit the result).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/proto" "$tmp/proto"
"$root/scripts/gen-proto.sh" "$tmp/proto"
if ! diff -r "$root/proto" "$tmp/proto" >/dev/null; then
  diff -r "$root/proto" "$tmp/proto" | head -40
  echo "check-proto: generated code is stale: run 'make proto' and commit" >&2
  exit 1
fi
echo "check-proto: generated code matches the .proto files"

#!/usr/bin/env bash
# gen-proto.sh OUT: generates the Go code of every .proto under proto/ into OUT
# (a copy of proto/), with Debian's protoc and the plugins pinned in go.mod.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(cd "$1" && pwd)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cd "$root"
for tool in google.golang.org/protobuf/cmd/protoc-gen-go \
            google.golang.org/grpc/cmd/protoc-gen-go-grpc \
            github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
            github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2; do
  go build -o "$bin/$(basename "$tool")" "$tool"
done
plugins=(--plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc"
         --plugin=protoc-gen-grpc-gateway="$bin/protoc-gen-grpc-gateway" --plugin=protoc-gen-openapiv2="$bin/protoc-gen-openapiv2")
cd "$out"
# Plugin protocols: Go and gRPC only.
protoc -I . "${plugins[@]}" \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  $(find plugdb -name '*.proto' | sort)
# The public API also gets its REST gateway and OpenAPI document.
protoc -I . "${plugins[@]}" \
  --grpc-gateway_out=. --grpc-gateway_opt=paths=source_relative \
  --grpc-gateway_opt=grpc_api_configuration=plugdb/v1/kv.gateway.yaml \
  --openapiv2_out=. --openapiv2_opt=grpc_api_configuration=plugdb/v1/kv.gateway.yaml \
  --openapiv2_opt=json_names_for_fields=false \
  plugdb/v1/kv.proto

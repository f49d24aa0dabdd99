package plugdbv1

import _ "embed"

// OpenAPI is the OpenAPI (Swagger 2.0) document that protoc-gen-openapiv2 generates
// from kv.proto and kv.gateway.yaml (kv.swagger.json), as generated. core/rest serves
// it at /v1/openapi.json after adapting it to the REST codec (bytes as UTF-8 text,
// 64-bit integers as JSON numbers, its own error shape).
//
//go:embed kv.swagger.json
var OpenAPI []byte

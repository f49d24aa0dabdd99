package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// OpenAPI returns the OpenAPI (Swagger 2.0) document served at /v1/openapi.json: the one
// protoc-gen-openapiv2 generates from kv.proto (plugdbv1.OpenAPI), adapted to what this
// package does — bytes fields described as UTF-8 text with their <name>_base64
// alternative, 64-bit integers as JSON numbers, Scan's response as newline-delimited
// KeyValue objects, and the error object {"code","error","message"} instead of
// google.rpc.Status.
func OpenAPI() ([]byte, error) { return openAPIOnce() }

var openAPIOnce = sync.OnceValues(func() ([]byte, error) {
	doc, err := adaptOpenAPI(plugdbv1.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("rest: adapting the OpenAPI document: %w", err)
	}
	return doc, nil
})

type obj = map[string]any

const (
	errorDef          = "v1Error"
	errorRef          = "#/definitions/" + errorDef
	bytesDesc         = "UTF-8 text. Bytes that are not valid UTF-8 are carried instead by %s (standard base64); on input send one of the two."
	bytesB64Desc      = "%s in standard base64, used instead of %s when the bytes are not valid UTF-8."
	errorRespDesc     = `An error: {"code": gRPC code number, "error": gRPC code name, "message": text}. The HTTP status follows the gRPC code: 400 INVALID_ARGUMENT (also malformed JSON), 404 NOT_FOUND, 409 ALREADY_EXISTS, 421 FAILED_PRECONDITION (a key refused by a node of another partition), 503 UNAVAILABLE (with Retry-After when the server gives a delay), 504 DEADLINE_EXCEEDED…`
	scanRespDesc      = `Newline-delimited JSON (application/x-ndjson): one KeyValue object per line, in key order across all partitions. An error after the first line (HTTP status 200 already sent) ends the stream with a line holding the error object {"code", "error", "message"}.`
	infoDesc          = "The REST API of plugdb, served by grpc-gateway in front of the gRPC API plugdb.v1.KV. Request bodies are read as JSON whatever their Content-Type. Field names are the proto names; keys and values are UTF-8 text, and a bytes field that is not valid UTF-8 is carried as <name>_base64 in standard base64 instead; 64-bit integers are JSON numbers; enums are names (on input in any case, prefix optional). An unknown field or malformed JSON is a 400 error."
	keyParamDesc      = "The key's UTF-8 text, percent-encoded as needed. It may contain '/' (as is or as %2F) and ':'; a key that is not valid UTF-8 is percent-encoded byte by byte."
	keyspaceParamDesc = "The keyspace's name (see docs/keyspaces.md); the /v1/… route without it serves the default keyspace. An unknown keyspace is a 400 INVALID_ARGUMENT naming the served ones."
	enumInputDesc     = "On input the name in any case, with or without its prefix (put, PUT, OP_PUT), or the number."
	consistencyDoc    = "Read consistency: strong (the default) reads from the partition's leader; stale lets a follower answer, which may miss recent writes."
	ackDoc            = "When the write is acknowledged: async after the leader's durable commit, semi-sync once at least one in-sync follower persisted it too, sync once every in-sync follower did. Default: the partition's configured mode; a weaker mode than the configured one is served at the configured one. Or give \"ack\" in the body (not both)."
)

func adaptOpenAPI(src []byte) ([]byte, error) {
	var doc obj
	if err := json.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	info, _ := doc["info"].(obj)
	if info == nil {
		info = obj{}
		doc["info"] = info
	}
	info["title"] = "plugdb REST API"
	info["version"] = "v1"
	info["description"] = infoDesc

	defs, ok := doc["definitions"].(obj)
	if !ok {
		return nil, fmt.Errorf("no definitions")
	}
	delete(defs, "googleRpcStatus")
	delete(defs, "protobufAny")
	defs[errorDef] = obj{
		"type": "object",
		"properties": obj{
			"code":    obj{"type": "integer", "format": "int32", "description": "The gRPC status code number."},
			"error":   obj{"type": "string", "description": "The gRPC status code name, as in google.rpc.Code: NOT_FOUND, ALREADY_EXISTS…"},
			"message": obj{"type": "string"},
		},
	}
	for _, d := range defs {
		s, ok := d.(obj)
		if !ok {
			continue
		}
		if _, isEnum := s["enum"]; isEnum {
			s["description"] = joinDesc(s["description"], enumInputDesc)
		}
		adaptProperties(s)
	}

	paths, ok := doc["paths"].(obj)
	if !ok {
		return nil, fmt.Errorf("no paths")
	}
	for path, item := range paths {
		ops, _ := item.(obj)
		for method, op := range ops {
			o, ok := op.(obj)
			if !ok {
				continue
			}
			adaptOperation(o, path, method)
		}
	}
	paths[OpenAPIPath] = obj{"get": obj{
		"summary":     "This document.",
		"operationId": "OpenAPI",
		"produces":    []any{MIMEJSON},
		"responses":   obj{"200": obj{"description": "The OpenAPI (Swagger 2.0) document of this API."}},
	}}
	replaceRefs(doc)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func joinDesc(old any, add string) string {
	if s, _ := old.(string); s != "" {
		return s + "\n\n" + add
	}
	return add
}

// adaptProperties adapts the properties of a schema: bytes → text with a _base64
// sibling, 64-bit integers → numbers.
func adaptProperties(s obj) {
	props, ok := s["properties"].(obj)
	if !ok {
		return
	}
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p, ok := props[name].(obj)
		if !ok {
			continue
		}
		target, isList := p, false
		if items, ok := p["items"].(obj); ok && p["type"] == "array" {
			target, isList = items, true
		}
		if isBytes(target) {
			delete(target, "format")
			p["description"] = joinDesc(p["description"], fmt.Sprintf(bytesDesc, name+Base64Suffix))
			alt := obj{"type": "string", "format": "byte"}
			if isList {
				alt = obj{"type": "array", "items": alt}
			}
			alt["description"] = fmt.Sprintf(bytesB64Desc, name, name)
			props[name+Base64Suffix] = alt
		}
		adaptInteger(target)
	}
}

func isBytes(s obj) bool { return s["type"] == "string" && s["format"] == "byte" }

func adaptInteger(s obj) {
	if s["type"] != "string" {
		return
	}
	switch s["format"] {
	case "int64", "uint64", "fixed64", "sfixed64", "sint64":
		s["type"] = "integer"
	}
}

// adaptOperation adapts the operation of method on path; a route of a named keyspace
// (/v1/keyspaces/{keyspace}/…) is adapted as its /v1/… twin.
func adaptOperation(op obj, path, method string) {
	if twin, ok := defaultTwin(path); ok {
		path = twin
	}
	params, _ := op["parameters"].([]any)
	var out []any
	for _, p := range params {
		param, ok := p.(obj)
		if !ok {
			out = append(out, p)
			continue
		}
		name, _ := param["name"].(string)
		switch {
		case param["in"] == "query" && name == "ack":
			continue // replaced below by the values the REST API takes
		case param["in"] == "query" && name == "keyspace":
			continue // named by the path only (/v1/keyspaces/{keyspace}/…)
		case param["in"] == "path" && name == "keyspace":
			param["description"] = keyspaceParamDesc
		case param["in"] == "path" && name == "key":
			delete(param, "format")
			param["description"] = keyParamDesc
		case param["in"] == "query" && isBytes(param):
			delete(param, "format")
			param["description"] = joinDesc(param["description"], fmt.Sprintf("UTF-8 text (percent-encoded in the URL); for bytes that are not UTF-8 use %s instead.", name+Base64Suffix))
			out = append(out, param)
			out = append(out, obj{
				"name": name + Base64Suffix, "in": "query", "required": false,
				"type": "string", "format": "byte",
				"description": fmt.Sprintf(bytesB64Desc, name, name),
			})
			continue
		case param["in"] == "query":
			adaptInteger(param)
		}
		out = append(out, param)
	}
	if method == "get" && (path == "/v1/kv" || strings.HasPrefix(path, "/v1/kv/") || path == "/v1/status") {
		out = append(out, obj{
			"name": "consistency", "in": "query", "required": false,
			"type": "string", "enum": []any{"strong", "stale"}, "description": consistencyDoc,
		})
	}
	if method == "put" || method == "post" || method == "patch" || method == "delete" {
		out = append(out, obj{
			"name": "ack", "in": "query", "required": false,
			"type": "string", "enum": []any{"async", "semi-sync", "sync"}, "description": ackDoc,
		})
	}
	if out != nil {
		op["parameters"] = out
	}

	responses, _ := op["responses"].(obj)
	if def, ok := responses["default"].(obj); ok {
		def["description"] = errorRespDesc
	}
	if path == "/v1/kv" && method == "get" {
		op["produces"] = []any{MIMENDJSON}
		if ok200, ok := responses["200"].(obj); ok {
			ok200["description"] = scanRespDesc
			ok200["schema"] = obj{"$ref": "#/definitions/v1KeyValue"}
		}
	}
}

// replaceRefs points every reference to google.rpc.Status at the error object.
func replaceRefs(v any) {
	switch v := v.(type) {
	case obj:
		for k, e := range v {
			if k == "$ref" && e == "#/definitions/googleRpcStatus" {
				v[k] = errorRef
				continue
			}
			replaceRefs(e)
		}
	case []any:
		for _, e := range v {
			replaceRefs(e)
		}
	}
}

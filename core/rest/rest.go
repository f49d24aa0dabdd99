// Package rest is the REST front of plugdb's public API (plugdb.v1.KV): grpc-gateway v2
// in front of a gRPC client connection to the router's own gRPC port, with a JSON codec
// that writes keys and values as UTF-8 text (base64 only for bytes that are not UTF-8).
//
// Routes (kv.gateway.yaml):
//
//	GET    /v1/kv/{key}     Get     → {"key":"…","value":"…","lsn":N}
//	PUT    /v1/kv/{key}     Put     {"value":"…"}              → {"lsn":N,"partition":P}
//	POST   /v1/kv           Create  {"key":"…","value":"…"}    → {"lsn":N,"partition":P}
//	PATCH  /v1/kv/{key}     Update  {"value":"…"}              → {"lsn":N,"partition":P}
//	DELETE /v1/kv/{key}     Delete                             → {"lsn":N,"partition":P}
//	GET    /v1/kv?prefix=…&limit=…  Scan (also start, end)     → NDJSON, one KeyValue per line
//	POST   /v1/batch        Batch   {"ops":[{"op":"put","key":"…","value":"…"},…]} → {"lsns":[N,…]}
//	GET    /v1/status       Status  → {"cluster":…,"engine":{…},…,"partitions":[…]}
//	GET    /v1/openapi.json the OpenAPI (Swagger 2.0) document
//
// Each route but the document's has a twin under /v1/keyspaces/{keyspace}/ that serves
// the named keyspace (see docs/keyspaces.md): /v1/keyspaces/{keyspace}/kv/{key},
// /v1/keyspaces/{keyspace}/kv (Create, and Scan with the same query parameters),
// /v1/keyspaces/{keyspace}/batch and /v1/keyspaces/{keyspace}/status. The /v1/… routes
// serve the default keyspace. An unknown keyspace is a 400 INVALID_ARGUMENT naming the
// served ones. The keyspace is named by the path only: a query parameter "keyspace" is
// refused.
//
// A write (PUT, POST, PATCH, DELETE and the batch) takes ?ack=async|semi-sync|sync, when
// it is acknowledged (default: the partition's configured mode; a weaker mode than the
// configured one is served at the configured one), or "ack" in the body; reads
// (consistency=strong|stale) do not take it.
//
// The key in a path is the key's text, percent-encoded by the client as needed; it may
// contain '/' (as is or as %2F) and ':', and a key that is not UTF-8 is written
// percent-encoded byte by byte. Scan's prefix, start and end are text too (or
// prefix_base64, start_base64, end_base64 in base64). The body is read as JSON whatever
// the Content-Type. An error is {"code":N,"error":"NOT_FOUND","message":"…"}, N being
// the gRPC code, with the HTTP status that grpc-gateway maps from it (400, 404, 409,
// 503, 504…), except 421 Misdirected Request for a key refused by a node of another
// partition (FAILED_PRECONDITION with ErrorInfo reason WRONG_PARTITION). See Marshaler for the JSON rules and NewHandler for the details.
package rest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/plugdb/plugdb/core/api"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// DefaultMaxBodyBytes is the largest request body NewHandler accepts by default
// (413 beyond it): room for the largest values plugdb accepts, base64 or escaped.
const DefaultMaxBodyBytes = 64 << 20

// Option configures NewHandler.
type Option func(*config)

type config struct {
	maxBodyBytes int64
}

// WithMaxBodyBytes sets the largest request body accepted (DefaultMaxBodyBytes by
// default); a larger one is refused with 413 and an INVALID_ARGUMENT error object.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) { c.maxBodyBytes = n }
}

type handler struct {
	cfg config
	mux *runtime.ServeMux
}

// NewHandler returns the REST API's http.Handler, which forwards each request over conn
// (a client connection to a plugdb.v1.KV gRPC server, normally the router's own gRPC
// port over loopback) with grpc-gateway's RegisterKVHandlerClient, the registration
// that supports Scan's server stream (RegisterKVHandlerServer does not). ctx is given to
// the gateway's registration; requests run under their own contexts. The handler owns
// its whole URL space: mount it at "/" of an http.Server rather than under a
// net/http ServeMux, which would clean paths ("a//b", "a/../b") that are valid keys.
//
// What grpc-gateway alone would do differently, and how it is adapted here:
//   - it decodes a bytes path parameter ({key}) and bytes query parameters as base64, so
//     a middleware re-encodes the key's text, and Scan's prefix/start/end text, to the
//     base64 the generated code expects (a global runtime.SetQueryParameterParser would
//     do it too, but for every gateway in the process);
//   - its JSON (protojson) writes bytes as base64 and 64-bit integers as strings: the
//     Marshaler of this package is registered for every MIME type instead;
//   - it wraps each streamed message as {"result": …}: the Marshaler unwraps it, so Scan
//     writes newline-delimited KeyValue objects (Content-Type application/x-ndjson); an
//     error once lines have been sent (HTTP status 200 already out) ends the stream
//     with an error object line; an error before the first line gets the HTTP status of
//     its code and the error object;
//   - its decoder reads one JSON value and ignores what follows, so the body is read
//     here first (limit WithMaxBodyBytes) and data after the JSON value is refused;
//   - it forwards gRPC metadata as Grpc-Metadata-* response headers: not here;
//   - X-HTTP-Method-Override and the POST-for-GET fallback of form bodies are disabled,
//     so the body is always JSON.
func NewHandler(ctx context.Context, conn grpc.ClientConnInterface, opts ...Option) (http.Handler, error) {
	cfg := config{maxBodyBytes: DefaultMaxBodyBytes}
	for _, o := range opts {
		o(&cfg)
	}
	doc, err := OpenAPI()
	if err != nil {
		return nil, err
	}
	h := &handler{cfg: cfg}
	noHeaders := func(string) (string, bool) { return "", false }
	h.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, Marshaler{}),
		runtime.WithUnescapingMode(runtime.UnescapingModeAllCharacters),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithStreamErrorHandler(streamErrorStatus),
		runtime.WithForwardResponseOption(streamContentType),
		runtime.WithMiddlewares(h.middleware),
		runtime.WithOutgoingHeaderMatcher(noHeaders),
		runtime.WithOutgoingTrailerMatcher(noHeaders),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithDisablePathLengthFallback(),
		runtime.WithWriteContentLength(),
	)
	if err := plugdbv1.RegisterKVHandlerClient(ctx, h.mux, plugdbv1.NewKVClient(conn)); err != nil {
		return nil, fmt.Errorf("rest: registering the KV routes: %w", err)
	}
	err = h.mux.HandlePath(http.MethodGet, OpenAPIPath, func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		w.Header().Set("Content-Type", MIMEJSON)
		w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
		_, _ = w.Write(doc)
	})
	if err != nil {
		return nil, fmt.Errorf("rest: registering %s: %w", OpenAPIPath, err)
	}
	return h.mux, nil
}

// OpenAPIPath is where NewHandler serves the OpenAPI document.
const OpenAPIPath = "/v1/openapi.json"

// Scan's query parameters. Each of prefix, start and end is the bound's UTF-8 text, or
// with the _base64 suffix its bytes in base64.
// consistencies maps the consistency query parameter to the proto enum's names.
var consistencies = map[string]string{
	"strong": plugdbv1.Consistency_CONSISTENCY_STRONG.String(),
	"stale":  plugdbv1.Consistency_CONSISTENCY_STALE.String(),
}

// acks maps the ack query parameter of a write to the proto enum's names.
var acks = map[string]string{
	"async":     plugdbv1.Ack_ACK_ASYNC.String(),
	"semi-sync": plugdbv1.Ack_ACK_SEMI_SYNC.String(),
	"sync":      plugdbv1.Ack_ACK_SYNC.String(),
}

// ackValues lists the ack query parameter's values, weakest first.
const ackValues = "async, semi-sync, sync"

// scanRoutes maps the patterns of Scan's routes (runtime.Pattern.String) to their
// names in messages.
var scanRoutes = map[string]string{
	"/v1/kv":                        "/v1/kv",
	"/v1/keyspaces/{keyspace=*}/kv": "/v1/keyspaces/{keyspace}/kv",
}

var scanParams = []string{"prefix", "start", "end", "limit", "consistency", "prefix_base64", "start_base64", "end_base64"}

// middleware adapts a request to what the generated gateway code expects (see
// NewHandler) before it runs.
func (h *handler) middleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		r2, err := h.prepare(r, params)
		if err != nil {
			runtime.HTTPError(r.Context(), h.mux, Marshaler{}, w, r, err)
			return
		}
		next(w, r2, params)
	}
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

func (h *handler) prepare(r *http.Request, params map[string]string) (*http.Request, error) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalid("malformed query string: %v", err)
	}
	for _, v := range query["consistency"] {
		if _, ok := consistencies[strings.ToLower(v)]; !ok {
			return nil, invalid(`query parameter "consistency": %q is not supported (allowed: strong, stale)`, v)
		}
	}
	ack, err := ackParam(r.Method, query)
	if err != nil {
		return nil, err
	}
	// The gateway base64-decodes the {key} path parameter: give it the key's text in
	// base64. The params map is the request's own.
	if key, ok := params["key"]; ok {
		params["key"] = base64.StdEncoding.EncodeToString([]byte(key))
	}
	r2 := *r
	if vs := query["consistency"]; len(vs) > 0 && r.Method == http.MethodGet {
		// The gateway parses the enum by its proto name.
		if len(vs) > 1 {
			return nil, invalid("query parameter \"consistency\" given %d times", len(vs))
		}
		q := url.Values{}
		maps.Copy(q, query)
		q.Set("consistency", consistencies[strings.ToLower(vs[0])])
		u := *r.URL
		u.RawQuery = q.Encode()
		r2.URL = &u
		r2.Form = nil
		query = q
	}
	if _, ok := query["keyspace"]; ok {
		return nil, invalid(`query parameter "keyspace" is not supported: name the keyspace in the path, /v1/keyspaces/{keyspace}/…`)
	}
	if pat, ok := runtime.HTTPPattern(r.Context()); ok && r.Method == http.MethodGet && scanRoutes[pat.String()] != "" {
		q, err := scanQuery(query, scanRoutes[pat.String()])
		if err != nil {
			return nil, err
		}
		u := *r.URL
		u.RawQuery = q
		r2.URL = &u
		r2.Form = nil
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		body, err := h.readBody(r.Body)
		if err != nil {
			return nil, err
		}
		if ack != "" {
			// The gateway reads these requests from the body alone (body: "*").
			if body, err = withAck(body, ack); err != nil {
				return nil, err
			}
		}
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
	case http.MethodDelete:
		if ack != "" {
			// The gateway parses the enum by its proto name.
			q := url.Values{}
			maps.Copy(q, r2.URL.Query())
			q.Set("ack", ack)
			u := *r2.URL
			u.RawQuery = q.Encode()
			r2.URL = &u
			r2.Form = nil
		}
	}
	return &r2, nil
}

// ackParam checks the ack query parameter and returns the proto name of its value
// ("" when it is not given). Only writes take it.
func ackParam(method string, query url.Values) (string, error) {
	vs, ok := query["ack"]
	if !ok {
		return "", nil
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return "", invalid(`query parameter "ack" applies to writes (PUT, POST, PATCH, DELETE), not %s`, method)
	}
	if len(vs) > 1 {
		return "", invalid("query parameter \"ack\" given %d times", len(vs))
	}
	name, ok := acks[strings.ToLower(vs[0])]
	if !ok {
		return "", invalid(`query parameter "ack": %q is not supported (allowed: %s)`, vs[0], ackValues)
	}
	return name, nil
}

// withAck adds "ack": name to a request body that is a JSON object (or empty or null).
// Another body is returned as it is, for the Marshaler to refuse with its own message.
// The field is added at the end, so that the offsets in the Marshaler's messages
// about the rest of the body still hold.
func withAck(body []byte, name string) ([]byte, error) {
	field := `"ack":"` + name + `"`
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return []byte("{" + field + "}"), nil
	}
	var fields map[string]json.RawMessage
	if trimmed[0] != '{' || json.Unmarshal(trimmed, &fields) != nil {
		return body, nil
	}
	if _, both := fields["ack"]; both {
		return nil, invalid(`"ack" given both as a query parameter and in the body: send one`)
	}
	end := bytes.LastIndexByte(body, '}')
	out := make([]byte, 0, len(body)+len(field)+1)
	out = append(out, body[:end]...)
	if len(fields) > 0 {
		out = append(out, ',')
	}
	out = append(out, field...)
	return append(out, body[end:]...), nil
}

// scanQuery checks Scan's query parameters and rewrites them for the gateway's query
// parser, which takes bytes in base64. route names the route in messages.
func scanQuery(query url.Values, route string) (string, error) {
	out := url.Values{}
	for name, vs := range query {
		if len(vs) > 1 {
			return "", invalid("query parameter %q given %d times", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "prefix", "start", "end":
			if _, both := query[name+Base64Suffix]; both {
				return "", invalid("query parameters %q and %q both given: send one", name, name+Base64Suffix)
			}
			out.Set(name, base64.StdEncoding.EncodeToString([]byte(v)))
		case "prefix_base64", "start_base64", "end_base64":
			// A '+' of base64 not percent-encoded in a query string reads as a space.
			b, err := decodeBase64(strings.ReplaceAll(v, " ", "+"))
			if err != nil {
				return "", invalid("query parameter %q: invalid base64: %v", name, err)
			}
			out.Set(strings.TrimSuffix(name, Base64Suffix), base64.StdEncoding.EncodeToString(b))
		case "limit":
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return "", invalid("query parameter \"limit\": expected an integer, got %q", v)
			}
			out.Set(name, v)
		case "consistency":
			out.Set(name, v) // checked and mapped by prepare
		default:
			return "", invalid("unknown query parameter %q for GET %s (allowed: %s)", name, route, strings.Join(scanParams, ", "))
		}
	}
	return out.Encode(), nil
}

// readBody reads a request body and checks that it holds at most one JSON value: the
// gateway's decoder would silently ignore what follows it. Malformed JSON is left to
// the Marshaler, which reports it with its offset.
func (h *handler) readBody(body io.ReadCloser) ([]byte, error) {
	if body == nil || body == http.NoBody {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(body, h.cfg.maxBodyBytes+1))
	if err != nil {
		return nil, invalid("reading the request body: %v", err)
	}
	if int64(len(data)) > h.cfg.maxBodyBytes {
		return nil, &runtime.HTTPStatusError{
			HTTPStatus: http.StatusRequestEntityTooLarge,
			Err:        invalid("request body larger than %d bytes", h.cfg.maxBodyBytes),
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if dec.Decode(&raw) == nil {
		if tok, err := dec.Token(); !errors.Is(err, io.EOF) {
			what := "data"
			if err == nil {
				what = describeToken(tok)
			}
			return nil, invalid("malformed JSON: unexpected %s after the JSON value (offset %d)", what, dec.InputOffset())
		}
	}
	return data, nil
}

// streamContentType sets Scan's Content-Type at the start of the stream, so that an
// empty result has it too (the gateway sets it with the first message only).
func streamContentType(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	if m == nil {
		w.Header().Set("Content-Type", MIMENDJSON)
	}
	return nil
}

// toStatus returns the gRPC status of err, and the HTTP status for it.
func toStatus(err error) (*status.Status, int) {
	httpStatus := 0
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		httpStatus, err = hse.HTTPStatus, hse.Err
	}
	var st *status.Status
	var mse runtime.MalformedSequenceError
	switch {
	case errors.As(err, &mse):
		st = status.Newf(codes.InvalidArgument, "malformed percent-encoding in the path: %q", string(mse))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		st = status.FromContextError(err)
	default:
		var ok bool
		if st, ok = status.FromError(err); !ok {
			st = status.New(codes.Internal, err.Error())
		}
	}
	if httpStatus == 0 {
		httpStatus = httpStatusOf(st)
	}
	return st, httpStatus
}

// httpStatusOf is the HTTP status of st: grpc-gateway's for its code, but 421
// Misdirected Request for a node's refusal of a key another partition owns
// (FAILED_PRECONDITION, which would be a 400, with ErrorInfo WRONG_PARTITION).
func httpStatusOf(st *status.Status) int {
	if st.Code() == codes.FailedPrecondition {
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == api.ReasonWrongPartition {
				return http.StatusMisdirectedRequest
			}
		}
	}
	return runtime.HTTPStatusFromCode(st.Code())
}

func streamErrorStatus(_ context.Context, err error) *status.Status {
	st, _ := toStatus(err)
	return st
}

// errorHandler writes the API's error object, {"code":N,"error":"NAME","message":"…"},
// with the HTTP status of the gRPC code (runtime.HTTPStatusFromCode), and Retry-After
// when the status carries a google.rpc.RetryInfo.
func errorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	st, httpStatus := toStatus(err)
	hdr := w.Header()
	hdr.Del("Trailer")
	hdr.Del("Transfer-Encoding")
	hdr.Set("Content-Type", MIMEJSON)
	if d := retryDelay(st); d > 0 {
		hdr.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	body := appendStatus(nil, st.Proto())
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// routingErrorHandler answers a request that matches no route: 404 NOT_FOUND for an
// unknown path, 405 (code UNIMPLEMENTED) with an Allow header for a known path and
// another method.
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var err error
	switch httpStatus {
	case http.StatusNotFound:
		err = status.Errorf(codes.NotFound, "no route for %s %s (the API is described at %s)", r.Method, r.URL.Path, OpenAPIPath)
	case http.StatusMethodNotAllowed:
		if allow := allowedMethods(r.URL.Path); allow != "" {
			w.Header().Set("Allow", allow)
		}
		err = &runtime.HTTPStatusError{HTTPStatus: httpStatus,
			Err: status.Errorf(codes.Unimplemented, "method %s is not allowed on %s", r.Method, r.URL.Path)}
	case http.StatusBadRequest:
		err = status.Errorf(codes.InvalidArgument, "bad request path %q", r.URL.Path)
	default:
		err = &runtime.HTTPStatusError{HTTPStatus: httpStatus,
			Err: status.Errorf(codes.Internal, "routing error %d for %s %s", httpStatus, r.Method, r.URL.Path)}
	}
	errorHandler(ctx, mux, m, w, r, err)
}

// allowedMethods lists the methods of the routes of path, for a 405's Allow header.
// A path under /v1/keyspaces/{keyspace}/ has the methods of its /v1/… twin.
func allowedMethods(path string) string {
	if twin, ok := defaultTwin(path); ok {
		if twin == OpenAPIPath {
			return "" // the document has no keyspace twin
		}
		path = twin
	}
	var methods []string
	switch {
	case path == "/v1/kv":
		methods = []string{http.MethodGet, http.MethodPost}
	case strings.HasPrefix(path, "/v1/kv/"):
		methods = []string{http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete}
	case path == "/v1/batch":
		methods = []string{http.MethodPost}
	case path == "/v1/status", path == OpenAPIPath:
		methods = []string{http.MethodGet}
	}
	sort.Strings(methods)
	return strings.Join(methods, ", ")
}

// keyspacesPrefix starts the paths of the routes of a named keyspace.
const keyspacesPrefix = "/v1/keyspaces/"

// defaultTwin returns the /v1/… path of the default keyspace's route that a path
// under /v1/keyspaces/{keyspace}/ mirrors, and false for another path.
func defaultTwin(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, keyspacesPrefix)
	if !ok {
		return "", false
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	return "/v1" + rest[i:], true
}

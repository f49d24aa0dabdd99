package rest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/plugdb/plugdb/core/api"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// fakeKV is an in-memory plugdb.v1.KV for testing the HTTP mapping. Keys starting with
// "!unavailable" fail with UNAVAILABLE (and a retry delay), "!slow" with
// DEADLINE_EXCEEDED, "!wrongpartition" with a node's refusal of another partition's
// key, "!precondition" with another FAILED_PRECONDITION.
type fakeKV struct {
	plugdbv1.UnimplementedKVServer
	mu   sync.Mutex
	data map[string][]byte
	lsns map[string]uint64
	lsn  uint64
	last []byte       // the key of the last request
	ack  plugdbv1.Ack // the ack of the last write
	id   string       // the request id of the last write, "client/seq"
	scan *plugdbv1.ScanRequest
}

func newFakeKV() *fakeKV {
	return &fakeKV{data: map[string][]byte{}, lsns: map[string]uint64{}}
}

func (f *fakeKV) check(key []byte) error {
	f.last = append([]byte(nil), key...)
	switch {
	case len(key) == 0:
		return status.Error(codes.InvalidArgument, "empty key")
	case bytes.HasPrefix(key, []byte("!unavailable")):
		st, _ := status.New(codes.Unavailable, "partition 1 is not ready: retry").
			WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
		return st.Err()
	case bytes.HasPrefix(key, []byte("!slow")):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case bytes.HasPrefix(key, []byte("!wrongpartition")):
		st, _ := status.New(codes.FailedPrecondition, `key "!wrongpartition" belongs to partition 1, this node serves partition 0`).
			WithDetails(&errdetails.ErrorInfo{Reason: api.ReasonWrongPartition, Domain: "plugdb", Metadata: map[string]string{"owner": "1"}})
		return st.Err()
	case bytes.HasPrefix(key, []byte("!precondition")):
		return status.Error(codes.FailedPrecondition, "another precondition")
	}
	return nil
}

func (f *fakeKV) Get(_ context.Context, r *plugdbv1.GetRequest) (*plugdbv1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(r.Key); err != nil {
		return nil, err
	}
	v, ok := f.data[string(r.Key)]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "not found: %s", r.Key)
	}
	return &plugdbv1.GetResponse{Key: r.Key, Value: v, Lsn: f.lsns[string(r.Key)]}, nil
}

func (f *fakeKV) write(r *plugdbv1.PutRequest, mustExist, mustNotExist bool) (*plugdbv1.WriteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ack = r.Ack
	f.id = fmt.Sprintf("%s/%d", r.GetRequestId().GetClientId(), r.GetRequestId().GetSeq())
	if err := f.check(r.Key); err != nil {
		return nil, err
	}
	if len(r.Value) == 0 {
		return nil, status.Error(codes.InvalidArgument, "empty value")
	}
	_, exists := f.data[string(r.Key)]
	if mustExist && !exists {
		return nil, status.Errorf(codes.NotFound, "not found: %s", r.Key)
	}
	if mustNotExist && exists {
		return nil, status.Errorf(codes.AlreadyExists, "already exists: %s", r.Key)
	}
	f.lsn++
	f.data[string(r.Key)] = r.Value
	f.lsns[string(r.Key)] = f.lsn
	return &plugdbv1.WriteResponse{Lsn: f.lsn, Partition: 1}, nil
}

func (f *fakeKV) Put(_ context.Context, r *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	return f.write(r, false, false)
}

func (f *fakeKV) Create(_ context.Context, r *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	return f.write(r, false, true)
}

func (f *fakeKV) Update(_ context.Context, r *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	return f.write(r, true, false)
}

func (f *fakeKV) Delete(_ context.Context, r *plugdbv1.DeleteRequest) (*plugdbv1.WriteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ack = r.Ack
	f.id = fmt.Sprintf("%s/%d", r.GetRequestId().GetClientId(), r.GetRequestId().GetSeq())
	if err := f.check(r.Key); err != nil {
		return nil, err
	}
	if _, ok := f.data[string(r.Key)]; !ok {
		return nil, status.Errorf(codes.NotFound, "not found: %s", r.Key)
	}
	delete(f.data, string(r.Key))
	f.lsn++
	return &plugdbv1.WriteResponse{Lsn: f.lsn, Partition: 1}, nil
}

// Scan: prefix "!fail" sends one key and then fails with UNAVAILABLE; "!unavailable"
// fails at once.
func (f *fakeKV) Scan(r *plugdbv1.ScanRequest, s grpc.ServerStreamingServer[plugdbv1.KeyValue]) error {
	f.mu.Lock()
	f.scan = r
	if bytes.HasPrefix(r.Prefix, []byte("!unavailable")) {
		f.mu.Unlock()
		return status.Error(codes.Unavailable, "partition 0 is not ready")
	}
	var out []*plugdbv1.KeyValue
	for k, v := range f.data {
		kb := []byte(k)
		switch {
		case len(r.Prefix) > 0 && !bytes.HasPrefix(kb, r.Prefix):
		case len(r.Start) > 0 && bytes.Compare(kb, r.Start) < 0:
		case len(r.End) > 0 && bytes.Compare(kb, r.End) >= 0:
		default:
			out = append(out, &plugdbv1.KeyValue{Key: kb, Value: v, Lsn: f.lsns[k]})
		}
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	if r.Limit > 0 && int64(len(out)) > r.Limit {
		out = out[:r.Limit]
	}
	if bytes.Equal(r.Prefix, []byte("!fail")) {
		if err := s.Send(&plugdbv1.KeyValue{Key: []byte("!fail1"), Value: []byte("x"), Lsn: 1}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "partition 1 went away")
	}
	for _, kv := range out {
		if err := s.Send(kv); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeKV) Batch(_ context.Context, r *plugdbv1.BatchRequest) (*plugdbv1.BatchResponse, error) {
	resp := &plugdbv1.BatchResponse{}
	for i, op := range r.Ops {
		var err error
		var w *plugdbv1.WriteResponse
		switch op.Op {
		case plugdbv1.BatchOp_OP_PUT:
			w, err = f.Put(context.Background(), &plugdbv1.PutRequest{Key: op.Key, Value: op.Value})
		case plugdbv1.BatchOp_OP_DELETE:
			w, err = f.Delete(context.Background(), &plugdbv1.DeleteRequest{Key: op.Key})
		default:
			err = status.Errorf(codes.InvalidArgument, "ops[%d]: no op", i)
		}
		if err != nil {
			return nil, err
		}
		resp.Lsns = append(resp.Lsns, w.Lsn)
	}
	f.mu.Lock()
	f.ack = r.Ack
	f.mu.Unlock()
	return resp, nil
}

func (f *fakeKV) Status(context.Context, *plugdbv1.StatusRequest) (*plugdbv1.StatusResponse, error) {
	return &plugdbv1.StatusResponse{
		Cluster:     "dev",
		Engine:      &plugdbv1.Plugin{Plugin: "rowfile", Mode: "plugin", Options: map[string]string{"sync": "batch"}},
		Partitioner: &plugdbv1.Plugin{Plugin: "hash", Mode: "inprocess", Options: map[string]string{}},
		Replicator:  &plugdbv1.Plugin{Plugin: "none", Mode: "inprocess", Options: map[string]string{}},
		Partitions: []*plugdbv1.PartitionStatus{{Partition: 0, Epoch: 1, Replicas: []*plugdbv1.Replica{
			{Partition: 0, Addr: "127.0.0.1:7070", Role: "leader", Epoch: 1, AppliedLsn: 42, Keys: 10, Bytes: 4096, PersistedLsn: 42, ScansServed: 3},
			{Partition: 0, Addr: "127.0.0.1:7071", Role: "follower", Epoch: 1, AppliedLsn: 40, Keys: 9, Bytes: 4000,
				Isr: true, PersistedLsn: 41, LagStatements: 1, LagMs: 15, ReplicationError: "stream reset"}},
			Ack: "semi-sync", AckFallback: true}},
	}, nil
}

func (f *fakeKV) lastKey() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakeKV) lastAck() plugdbv1.Ack {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ack
}

type env struct {
	t    *testing.T
	kv   *fakeKV
	base string
}

// start runs the fake on a gRPC server on 127.0.0.1:0 and the REST handler on an
// httptest server on 127.0.0.1.
func start(t *testing.T) *env {
	t.Helper()
	kv := newFakeKV()
	e := startServer(t, kv)
	e.kv = kv
	return e
}

// startServer runs kv on a gRPC server on 127.0.0.1:0 and the REST handler in front of
// it on an httptest server on 127.0.0.1.
func startServer(t *testing.T, kv plugdbv1.KVServer) *env {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	plugdbv1.RegisterKVServer(gs, kv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	h, err := NewHandler(context.Background(), conn, WithMaxBodyBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.Listener.Close()
	if hs.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	hs.Start()
	t.Cleanup(hs.Close)
	return &env{t: t, base: hs.URL}
}

type response struct {
	code   int
	header http.Header
	body   string
}

// do sends a request; path is sent as is (already percent-encoded).
func (e *env) do(method, path, contentType, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func (e *env) expect(r response, code int, body string) {
	e.t.Helper()
	if r.code != code || body != "" && r.body != body {
		e.t.Errorf("got %d %s\nwant %d %s", r.code, r.body, code, body)
	}
}

// expectError checks an error response: HTTP status, the error object's code and name,
// and a substring of its message.
func (e *env) expectError(r response, httpCode int, code codes.Code, msg string) {
	e.t.Helper()
	var got struct {
		Code    *int    `json:"code"`
		Error   *string `json:"error"`
		Message *string `json:"message"`
	}
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil || got.Code == nil || got.Error == nil || got.Message == nil {
		e.t.Errorf("error body %q: %v", r.body, err)
		return
	}
	if r.code != httpCode || *got.Code != int(code) || *got.Error != CodeName(code) || !strings.Contains(*got.Message, msg) {
		e.t.Errorf("got %d %s\nwant %d code %d %s, message containing %q", r.code, r.body, httpCode, code, CodeName(code), msg)
	}
	if ct := r.header.Get("Content-Type"); ct != MIMEJSON {
		e.t.Errorf("error Content-Type %q", ct)
	}
}

// escapeKey percent-encodes a key for a path: everything but unreserved characters,
// ':' and (unless escapeSlash) '/'.
func escapeKey(key string, escapeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == ':', c == '/' && !escapeSlash:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// jsonString is the JSON string of s as the codec writes it.
func jsonString(s string) string { return string(appendString(nil, s)) }

func TestKeysInPaths(t *testing.T) {
	e := start(t)
	keys := []string{
		"user:1", "a/b/c", "/leading", "trailing/", "a//b", "a/../b", "./x", "with space",
		"naïve-日本語", "100%", "%41", "a+b", "a?b#c&d=e", "semi;colon", "emoji😀", "tab\there",
		"quote\"back\\slash", "a%2Fb", "user:1:", ":", "v1:verb",
	}
	for i, key := range keys {
		for _, escapeSlash := range []bool{false, true} {
			path := "/v1/kv/" + escapeKey(key, escapeSlash)
			value := fmt.Sprintf("value %d %t", i, escapeSlash)
			r := e.do(http.MethodPut, path, "application/json", `{"value":`+jsonString(value)+`}`)
			if r.code != http.StatusOK {
				t.Errorf("PUT %s: %d %s", path, r.code, r.body)
				continue
			}
			if got := string(e.kv.lastKey()); got != key {
				t.Errorf("PUT %s: the server got key %q, want %q", path, got, key)
			}
			var w struct {
				Lsn       uint64 `json:"lsn"`
				Partition uint32 `json:"partition"`
			}
			if err := json.Unmarshal([]byte(r.body), &w); err != nil || w.Lsn == 0 || w.Partition != 1 {
				t.Errorf("PUT %s: body %s", path, r.body)
			}
			r = e.do(http.MethodGet, path, "", "")
			want := fmt.Sprintf(`{"key":%s,"value":%s,"lsn":%d}`, jsonString(key), jsonString(value), w.Lsn)
			if r.code != http.StatusOK || r.body != want {
				t.Errorf("GET %s: %d %s\nwant %s", path, r.code, r.body, want)
			}
		}
	}
	// A key that is not UTF-8: percent-encoded byte by byte, and read back in base64.
	r := e.do(http.MethodPut, "/v1/kv/%FF%00bin", "", `{"value":"x"}`)
	var w struct{ Lsn uint64 }
	if err := json.Unmarshal([]byte(r.body), &w); err != nil || r.code != 200 {
		t.Fatalf("PUT of a binary key: %d %s", r.code, r.body)
	}
	if got := e.kv.lastKey(); !bytes.Equal(got, []byte("\xff\x00bin")) {
		t.Errorf("binary key: server got %q", got)
	}
	e.expect(e.do(http.MethodGet, "/v1/kv/%FF%00bin", "", ""), 200, fmt.Sprintf(`{"key_base64":"/wBiaW4=","value":"x","lsn":%d}`, w.Lsn))
	// Empty key: the server's INVALID_ARGUMENT.
	e.expectError(e.do(http.MethodGet, "/v1/kv/", "", ""), 400, codes.InvalidArgument, "empty key")
}

func TestVerbs(t *testing.T) {
	e := start(t)
	// PUT then GET.
	e.expect(e.do(http.MethodPut, "/v1/kv/user:1", "application/json", `{"value":"Ada"}`), 200, `{"lsn":1,"partition":1}`)
	e.expect(e.do(http.MethodGet, "/v1/kv/user:1", "", ""), 200, `{"key":"user:1","value":"Ada","lsn":1}`)
	// The body is JSON whatever the Content-Type, or none.
	e.expect(e.do(http.MethodPut, "/v1/kv/user:2", "text/plain", `{"value":"Bob"}`), 200, `{"lsn":2,"partition":1}`)
	e.expect(e.do(http.MethodPut, "/v1/kv/user:3", "", `{"value":"Cy"}`), 200, `{"lsn":3,"partition":1}`)
	e.expect(e.do(http.MethodPut, "/v1/kv/user:4", "application/x-www-form-urlencoded", `{"value":"Di"}`), 200, `{"lsn":4,"partition":1}`)
	e.expect(e.do(http.MethodGet, "/v1/kv/user:2", "", ""), 200, `{"key":"user:2","value":"Bob","lsn":2}`)
	e.expect(e.do(http.MethodGet, "/v1/kv/user:4", "", ""), 200, `{"key":"user:4","value":"Di","lsn":4}`)
	// A binary value through value_base64, read back the same way.
	e.expect(e.do(http.MethodPut, "/v1/kv/bin", "application/json", `{"value_base64":"/wA="}`), 200, `{"lsn":5,"partition":1}`)
	e.expect(e.do(http.MethodGet, "/v1/kv/bin", "", ""), 200, `{"key":"bin","value_base64":"/wA=","lsn":5}`)
	// POST creates; a second time is 409.
	e.expect(e.do(http.MethodPost, "/v1/kv", "application/json", `{"key":"new/key","value":"1"}`), 200, `{"lsn":6,"partition":1}`)
	e.expectError(e.do(http.MethodPost, "/v1/kv", "application/json", `{"key":"new/key","value":"2"}`), 409, codes.AlreadyExists, "already exists: new/key")
	e.expect(e.do(http.MethodGet, "/v1/kv/new/key", "", ""), 200, `{"key":"new/key","value":"1","lsn":6}`)
	// PATCH updates an existing key; a missing one is 404.
	e.expect(e.do(http.MethodPatch, "/v1/kv/new/key", "application/json", `{"value":"3"}`), 200, `{"lsn":7,"partition":1}`)
	e.expect(e.do(http.MethodGet, "/v1/kv/new%2Fkey", "", ""), 200, `{"key":"new/key","value":"3","lsn":7}`)
	e.expectError(e.do(http.MethodPatch, "/v1/kv/nope", "application/json", `{"value":"3"}`), 404, codes.NotFound, "not found: nope")
	// DELETE; a second time is 404, and so is GET.
	e.expect(e.do(http.MethodDelete, "/v1/kv/new/key", "", ""), 200, `{"lsn":8,"partition":1}`)
	e.expectError(e.do(http.MethodDelete, "/v1/kv/new/key", "", ""), 404, codes.NotFound, "not found: new/key")
	e.expectError(e.do(http.MethodGet, "/v1/kv/new/key", "", ""), 404, codes.NotFound, "not found: new/key")
	// The path's key wins over one in the body.
	e.expect(e.do(http.MethodPut, "/v1/kv/path", "", `{"key":"body","value":"v"}`), 200, "")
	if got := string(e.kv.lastKey()); got != "path" {
		t.Errorf("PUT with a key in the body: server got %q", got)
	}
	// Batch with enum names.
	e.expect(e.do(http.MethodPost, "/v1/batch", "", `{"ops":[{"op":"put","key":"b1","value":"x"},{"op":"OP_PUT","key":"b2","value":"y"},{"op":"DELETE","key":"b1"}]}`),
		200, `{"lsns":[10,11,12]}`)
	// consistency=strong and stale are accepted, anything else is refused.
	e.expect(e.do(http.MethodGet, "/v1/kv/user:1?consistency=strong", "", ""), 200, `{"key":"user:1","value":"Ada","lsn":1}`)
	e.expect(e.do(http.MethodGet, "/v1/kv/user:1?consistency=STALE", "", ""), 200, `{"key":"user:1","value":"Ada","lsn":1}`)
	e.expectError(e.do(http.MethodGet, "/v1/kv/user:1?consistency=eventual", "", ""), 400, codes.InvalidArgument, `"eventual" is not supported (allowed: strong, stale)`)
}

func TestStatus(t *testing.T) {
	e := start(t)
	r := e.do(http.MethodGet, "/v1/status", "", "")
	e.expect(r, 200, `{"cluster":"dev",`+
		`"engine":{"plugin":"rowfile","mode":"plugin","options":{"sync":"batch"}},`+
		`"partitioner":{"plugin":"hash","mode":"inprocess","options":{}},`+
		`"replicator":{"plugin":"none","mode":"inprocess","options":{}},`+
		`"partitions":[{"partition":0,"epoch":1,"replicas":[`+
		`{"partition":0,"addr":"127.0.0.1:7070","role":"leader","epoch":1,"applied_lsn":42,"keys":10,"bytes":4096,`+
		`"isr":false,"persisted_lsn":42,"lag_statements":0,"lag_ms":0,"replication_error":"","scans_served":3},`+
		`{"partition":0,"addr":"127.0.0.1:7071","role":"follower","epoch":1,"applied_lsn":40,"keys":9,"bytes":4000,`+
		`"isr":true,"persisted_lsn":41,"lag_statements":1,"lag_ms":15,"replication_error":"stream reset","scans_served":0}],`+
		`"ack":"semi-sync","ack_fallback":true,"in_sync":0,"ack_needs":0,"replica_set":0}],"keyspaces":[],"layout_version":0,"reshard":null}`)
	if ct := r.header.Get("Content-Type"); ct != MIMEJSON {
		t.Errorf("Content-Type %q", ct)
	}
	for k := range r.header {
		if strings.HasPrefix(k, "Grpc-") {
			t.Errorf("gRPC metadata leaked as header %s", k)
		}
	}
}

// A write's request id travels in the body, or in the query of a delete.
func TestRESTRequestID(t *testing.T) {
	e := start(t)
	lastID := func() string {
		e.kv.mu.Lock()
		defer e.kv.mu.Unlock()
		return e.kv.id
	}
	e.expect(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x","request_id":{"client_id":"app","seq":"7"}}`), 200, "")
	if got := lastID(); got != "app/7" {
		t.Errorf("PUT: server got request id %s, want app/7", got)
	}
	e.expect(e.do(http.MethodPost, "/v1/kv", "", `{"key":"n","value":"x","request_id":{"client_id":"app","seq":8}}`), 200, "")
	if got := lastID(); got != "app/8" {
		t.Errorf("POST: server got request id %s, want app/8", got)
	}
	e.expect(e.do(http.MethodDelete, "/v1/kv/k?request_id.client_id=app&request_id.seq=9", "", ""), 200, "")
	if got := lastID(); got != "app/9" {
		t.Errorf("DELETE: server got request id %s, want app/9", got)
	}
}

func TestRESTAck(t *testing.T) {
	e := start(t)
	wantAck := func(what string, want plugdbv1.Ack) {
		t.Helper()
		if got := e.kv.lastAck(); got != want {
			t.Errorf("%s: server got ack %v, want %v", what, got, want)
		}
	}
	// ?ack= on every write, in any case; none is the default.
	e.expect(e.do(http.MethodPut, "/v1/kv/k?ack=sync", "", `{"value":"x"}`), 200, "")
	wantAck("PUT ?ack=sync", plugdbv1.Ack_ACK_SYNC)
	e.expect(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x"}`), 200, "")
	wantAck("PUT", plugdbv1.Ack_ACK_DEFAULT)
	e.expect(e.do(http.MethodPut, "/v1/kv/k?ack=Semi-Sync", "", " {\n\"value\":\"x\" }\n"), 200, "")
	wantAck("PUT ?ack=Semi-Sync", plugdbv1.Ack_ACK_SEMI_SYNC)
	e.expect(e.do(http.MethodPost, "/v1/kv?ack=async", "", `{"key":"new","value":"1"}`), 200, "")
	wantAck("POST ?ack=async", plugdbv1.Ack_ACK_ASYNC)
	e.expect(e.do(http.MethodPatch, "/v1/kv/new?ack=semi-sync", "", `{"value":"2"}`), 200, "")
	wantAck("PATCH ?ack=semi-sync", plugdbv1.Ack_ACK_SEMI_SYNC)
	e.expect(e.do(http.MethodDelete, "/v1/kv/new?ack=sync", "", ""), 200, "")
	wantAck("DELETE ?ack=sync", plugdbv1.Ack_ACK_SYNC)
	e.expect(e.do(http.MethodPost, "/v1/batch?ack=async", "", `{"ops":[{"op":"put","key":"b1","value":"x"}]}`), 200, "")
	wantAck("POST /v1/batch ?ack=async", plugdbv1.Ack_ACK_ASYNC)
	// Or in the body, by name as the codec takes enums ('-' for '_' too).
	e.expect(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x","ack":"semi-sync"}`), 200, "")
	wantAck(`PUT "ack":"semi-sync"`, plugdbv1.Ack_ACK_SEMI_SYNC)
	e.expect(e.do(http.MethodPost, "/v1/batch", "", `{"ops":[],"ack":"ACK_SYNC"}`), 200, "")
	wantAck(`POST /v1/batch "ack":"ACK_SYNC"`, plugdbv1.Ack_ACK_SYNC)
	// An empty body gets the ack too (the server then refuses the empty value).
	e.expectError(e.do(http.MethodPut, "/v1/kv/k?ack=async", "", ""), 400, codes.InvalidArgument, "empty value")
	wantAck("PUT ?ack=async, no body", plugdbv1.Ack_ACK_ASYNC)

	// Bad values: 400 naming the allowed ones, before reaching the server.
	e.kv.mu.Lock()
	e.kv.ack = plugdbv1.Ack_ACK_DEFAULT
	e.kv.mu.Unlock()
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPut, "/v1/kv/k?ack=quorum", `{"value":"x"}`},
		{http.MethodPost, "/v1/kv?ack=quorum", `{"key":"q","value":"x"}`},
		{http.MethodPatch, "/v1/kv/k?ack=quorum", `{"value":"x"}`},
		{http.MethodDelete, "/v1/kv/k?ack=quorum", ""},
		{http.MethodPost, "/v1/batch?ack=quorum", `{"ops":[]}`},
		{http.MethodPut, "/v1/kv/k?ack=", `{"value":"x"}`},
	} {
		e.expectError(e.do(r.method, r.path, "", r.body), 400, codes.InvalidArgument,
			`query parameter "ack": "`+r.path[strings.Index(r.path, "ack=")+len("ack="):]+`" is not supported (allowed: async, semi-sync, sync)`)
	}
	e.expectError(e.do(http.MethodPut, "/v1/kv/k?ack=sync&ack=async", "", `{"value":"x"}`), 400, codes.InvalidArgument, `query parameter "ack" given 2 times`)
	e.expectError(e.do(http.MethodPut, "/v1/kv/k?ack=sync", "", `{"value":"x","ack":"async"}`), 400, codes.InvalidArgument,
		`"ack" given both as a query parameter and in the body: send one`)
	e.expectError(e.do(http.MethodGet, "/v1/kv/k?ack=sync", "", ""), 400, codes.InvalidArgument, `query parameter "ack" applies to writes`)
	e.expectError(e.do(http.MethodGet, "/v1/kv?ack=sync", "", ""), 400, codes.InvalidArgument, `query parameter "ack" applies to writes`)
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x","ack":"quorum"}`), 400, codes.InvalidArgument,
		`field "ack": invalid Ack string "quorum" (allowed: "default", "async", "semi_sync", "sync"`)
	wantAck("refused requests", plugdbv1.Ack_ACK_DEFAULT)
	// The body's own errors read the same with ?ack (offsets included).
	for _, body := range []string{`{"valeu":"x"}`, `{"value":42}`, `{"value":"x",}`, `[1]`, `not json`} {
		plain, with := e.do(http.MethodPut, "/v1/kv/k", "", body), e.do(http.MethodPut, "/v1/kv/k?ack=sync", "", body)
		if plain.code != 400 || with.code != plain.code || with.body != plain.body {
			t.Errorf("body %s: without ack %d %s; with ?ack=sync %d %s", body, plain.code, plain.body, with.code, with.body)
		}
	}
}

func TestErrors(t *testing.T) {
	e := start(t)
	// Malformed JSON, unknown fields, wrong types, trailing data: 400 naming the problem.
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x",}`), 400, codes.InvalidArgument, "malformed JSON at offset 13: invalid character '}'")
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x"`), 400, codes.InvalidArgument, "malformed JSON: unexpected end of input at offset 12")
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `not json`), 400, codes.InvalidArgument, "malformed JSON at offset 1: invalid character 'o' in literal null")
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"valeu":"x"}`), 400, codes.InvalidArgument, `unknown field "valeu" in plugdb.v1.PutRequest (allowed: key, key_base64, value, value_base64, ack, request_id, keyspace)`)
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":42}`), 400, codes.InvalidArgument, `field "value": expected a string`)
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x"} {"value":"y"}`), 400, codes.InvalidArgument, "malformed JSON: unexpected an object after the JSON value (offset 15)")
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x"}]`), 400, codes.InvalidArgument, "after the JSON value")
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"x","value_base64":"eA=="}`), 400, codes.InvalidArgument, `"value" and "value_base64" both given`)
	e.expectError(e.do(http.MethodPost, "/v1/batch", "", `{"ops":[{"op":"upsert","key":"a"}]}`), 400, codes.InvalidArgument, `field "ops[0].op": invalid Op string "upsert"`)
	// An empty body is an empty message: the server's error.
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", ``), 400, codes.InvalidArgument, "empty value")
	// Too large a body.
	e.expectError(e.do(http.MethodPut, "/v1/kv/k", "", `{"value":"`+strings.Repeat("x", 1<<20)+`"}`), 413, codes.InvalidArgument, "request body larger than 1048576 bytes")
	// Codes from the server: 503 with Retry-After, 504.
	r := e.do(http.MethodGet, "/v1/kv/!unavailable", "", "")
	e.expectError(r, 503, codes.Unavailable, "partition 1 is not ready: retry")
	if ra := r.header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After %q, want 2", ra)
	}
	e.expectError(e.do(http.MethodPut, "/v1/kv/!slow", "", `{"value":"x"}`), 504, codes.DeadlineExceeded, "deadline exceeded")
	// A key of another partition: 421 Misdirected Request naming the partitions;
	// another failed precondition stays 400.
	e.expectError(e.do(http.MethodPut, "/v1/kv/!wrongpartition", "", `{"value":"x"}`), 421, codes.FailedPrecondition,
		`key "!wrongpartition" belongs to partition 1, this node serves partition 0`)
	e.expectError(e.do(http.MethodGet, "/v1/kv/!wrongpartition", "", ""), 421, codes.FailedPrecondition, "belongs to partition 1")
	e.expectError(e.do(http.MethodGet, "/v1/kv/!precondition", "", ""), 400, codes.FailedPrecondition, "another precondition")
	// Routing: unknown path 404, known path and another method 405.
	e.expectError(e.do(http.MethodGet, "/v2/nothing", "", ""), 404, codes.NotFound, "no route for GET /v2/nothing")
	r = e.do(http.MethodPut, "/v1/status", "", "")
	e.expectError(r, 405, codes.Unimplemented, "method PUT is not allowed on /v1/status")
	if allow := r.header.Get("Allow"); allow != "GET" {
		t.Errorf("Allow %q", allow)
	}
	e.expectError(e.do(http.MethodPost, "/v1/kv/k", "", `{"value":"x"}`), 405, codes.Unimplemented, "method POST is not allowed")
}

// scanLines reads a Scan response: its lines, each checked to be one JSON object.
func scanLines(t *testing.T, r response) []string {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(r.body))
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			t.Errorf("scan line %q is not JSON", sc.Text())
		}
		lines = append(lines, sc.Text())
	}
	if r.body != "" && !strings.HasSuffix(r.body, "\n") {
		t.Errorf("scan output does not end with a newline: %q", r.body)
	}
	return lines
}

func TestScan(t *testing.T) {
	e := start(t)
	for i, k := range []string{"user:1", "user:2", "user:3", "usex", "order/1", "日本:1", "a b"} {
		e.expect(e.do(http.MethodPut, "/v1/kv/"+escapeKey(k, false), "", fmt.Sprintf(`{"value":"v%d"}`, i)), 200, "")
	}
	e.expect(e.do(http.MethodPut, "/v1/kv/user:9", "", `{"value_base64":"/w=="}`), 200, "")

	check := func(query string, want ...string) {
		t.Helper()
		r := e.do(http.MethodGet, "/v1/kv"+query, "", "")
		if r.code != 200 {
			t.Errorf("GET /v1/kv%s: %d %s", query, r.code, r.body)
			return
		}
		if ct := r.header.Get("Content-Type"); ct != MIMENDJSON {
			t.Errorf("GET /v1/kv%s: Content-Type %q", query, ct)
		}
		got := scanLines(t, r)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("GET /v1/kv%s:\n got %s\nwant %s", query, strings.Join(got, "\n     "), strings.Join(want, "\n     "))
		}
	}
	check("?prefix=user:&limit=2", `{"key":"user:1","value":"v0","lsn":1}`, `{"key":"user:2","value":"v1","lsn":2}`)
	check("?prefix=user:", `{"key":"user:1","value":"v0","lsn":1}`, `{"key":"user:2","value":"v1","lsn":2}`,
		`{"key":"user:3","value":"v2","lsn":3}`, `{"key":"user:9","value_base64":"/w==","lsn":8}`)
	check("?prefix=%E6%97%A5%E6%9C%AC", `{"key":"日本:1","value":"v5","lsn":6}`)
	check("?prefix=a%20b", `{"key":"a b","value":"v6","lsn":7}`)
	check("?prefix=a+b", `{"key":"a b","value":"v6","lsn":7}`)
	check("?prefix_base64=dXNlcjoz", `{"key":"user:3","value":"v2","lsn":3}`)
	check("?start=order&end=user:2&consistency=strong", `{"key":"order/1","value":"v4","lsn":5}`, `{"key":"user:1","value":"v0","lsn":1}`)
	check("?start_base64=dXNlcjo5&limit=10", `{"key":"user:9","value_base64":"/w==","lsn":8}`, `{"key":"usex","value":"v3","lsn":4}`, `{"key":"日本:1","value":"v5","lsn":6}`)
	check("?prefix=nothing")
	check("?limit=1", `{"key":"a b","value":"v6","lsn":7}`)
	e.kv.mu.Lock()
	if got := string(e.kv.scan.Start); got != "" || e.kv.scan.Limit != 1 {
		t.Errorf("server got %v", e.kv.scan)
	}
	e.kv.mu.Unlock()

	// The lines decode with the package's decoder.
	r := e.do(http.MethodGet, "/v1/kv?prefix=user:", "", "")
	dec := Marshaler{}.NewDecoder(strings.NewReader(r.body))
	var n int
	for {
		var kv plugdbv1.KeyValue
		err := dec.Decode(&kv)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 4 {
		t.Errorf("decoded %d lines, want 4", n)
	}

	// Bad parameters: 400.
	e.expectError(e.do(http.MethodGet, "/v1/kv?prefix=a&limit=x", "", ""), 400, codes.InvalidArgument, `query parameter "limit": expected an integer, got "x"`)
	e.expectError(e.do(http.MethodGet, "/v1/kv?prefx=a", "", ""), 400, codes.InvalidArgument, `unknown query parameter "prefx" for GET /v1/kv (allowed: prefix, start, end, limit, consistency, prefix_base64, start_base64, end_base64)`)
	e.expectError(e.do(http.MethodGet, "/v1/kv?prefix=a&prefix=b", "", ""), 400, codes.InvalidArgument, `query parameter "prefix" given 2 times`)
	e.expectError(e.do(http.MethodGet, "/v1/kv?prefix=a&prefix_base64=YQ==", "", ""), 400, codes.InvalidArgument, `"prefix" and "prefix_base64" both given`)
	e.expectError(e.do(http.MethodGet, "/v1/kv?prefix_base64=***", "", ""), 400, codes.InvalidArgument, `query parameter "prefix_base64": invalid base64`)
	e.expectError(e.do(http.MethodGet, "/v1/kv?consistency=weak", "", ""), 400, codes.InvalidArgument, "allowed: strong")

	// An error before the first line: the HTTP status of its code.
	e.expectError(e.do(http.MethodGet, "/v1/kv?prefix=!unavailable", "", ""), 503, codes.Unavailable, "partition 0 is not ready")
	// An error after lines: status 200, and a last line with the error object.
	r = e.do(http.MethodGet, "/v1/kv?prefix=!fail", "", "")
	lines := scanLines(t, r)
	if r.code != 200 || len(lines) != 2 || lines[0] != `{"key":"!fail1","value":"x","lsn":1}` ||
		lines[1] != `{"code":14,"error":"UNAVAILABLE","message":"partition 1 went away"}` {
		t.Errorf("failing scan: %d %q", r.code, lines)
	}
	dec = Marshaler{}.NewDecoder(strings.NewReader(r.body))
	var kv plugdbv1.KeyValue
	if err := dec.Decode(&kv); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&kv); status.Code(err) != codes.Unavailable {
		t.Errorf("decoding the error line: %v", err)
	}
}

func TestOpenAPI(t *testing.T) {
	e := start(t)
	r := e.do(http.MethodGet, "/v1/openapi.json", "", "")
	if r.code != 200 || r.header.Get("Content-Type") != MIMEJSON {
		t.Fatalf("GET /v1/openapi.json: %d %s", r.code, r.header.Get("Content-Type"))
	}
	var doc struct {
		Swagger     string                    `json:"swagger"`
		Paths       map[string]map[string]any `json:"paths"`
		Definitions map[string]struct {
			Properties map[string]struct {
				Type   string `json:"type"`
				Format string `json:"format"`
			} `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" {
		t.Errorf("swagger %q", doc.Swagger)
	}
	for _, p := range []string{"/v1/kv", "/v1/kv/{key}", "/v1/batch", "/v1/status", "/v1/openapi.json"} {
		if doc.Paths[p] == nil {
			t.Errorf("no path %s", p)
		}
	}
	kv := doc.Definitions["v1KeyValue"].Properties
	if kv["key"].Format != "" || kv["key"].Type != "string" || kv["key_base64"].Format != "byte" || kv["lsn"].Type != "integer" {
		t.Errorf("v1KeyValue: %+v", kv)
	}
	if _, ok := doc.Definitions["googleRpcStatus"]; ok || doc.Definitions["v1Error"].Properties["error"].Type != "string" {
		t.Errorf("error definition: %+v", doc.Definitions)
	}
	if strings.Contains(r.body, "googleRpcStatus") {
		t.Error("a reference to googleRpcStatus is left")
	}
	// Writes document ?ack= with the values the REST API takes, once each.
	var ops struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name string   `json:"name"`
				In   string   `json:"in"`
				Enum []string `json:"enum"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(r.body), &ops); err != nil {
		t.Fatal(err)
	}
	for path, methods := range map[string][]string{"/v1/kv/{key}": {"put", "patch", "delete", "get"}, "/v1/kv": {"post", "get"}, "/v1/batch": {"post"}} {
		for _, m := range methods {
			var acks []string
			for _, p := range ops.Paths[path][m].Parameters {
				if p.Name == "ack" {
					acks = append(acks, p.In+":"+strings.Join(p.Enum, "|"))
				}
			}
			want := []string{"query:async|semi-sync|sync"}
			if m == "get" {
				want = nil
			}
			if !slices.Equal(acks, want) {
				t.Errorf("%s %s: ack parameters %v, want %v", m, path, acks, want)
			}
		}
	}
	doc2, err := OpenAPI()
	if err != nil || string(doc2) != r.body {
		t.Errorf("OpenAPI() differs from what is served: %v", err)
	}
}

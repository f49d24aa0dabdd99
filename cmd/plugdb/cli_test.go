package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Unit tests of the client verbs, run in process against a real gRPC server
// on 127.0.0.1 serving fakeKV. The end-to-end tests against `plugdb dev` are
// elsewhere.

// fakeKV is an in-memory plugdbv1.KVServer with the API's error codes.
type fakeKV struct {
	plugdbv1.UnimplementedKVServer
	mu   sync.Mutex
	data map[string][]byte
	lsn  uint64
	// lastScan is the last ScanRequest received.
	lastScan *plugdbv1.ScanRequest
	// lastAck is the ack of the last write received.
	lastAck plugdbv1.Ack
}

func newFakeKV() *fakeKV { return &fakeKV{data: map[string][]byte{}} }

func (f *fakeKV) write(key string, value []byte) *plugdbv1.WriteResponse {
	f.lsn++
	if value == nil {
		delete(f.data, key)
	} else {
		f.data[key] = value
	}
	return &plugdbv1.WriteResponse{Lsn: f.lsn}
}

func checkKey(key []byte) error {
	if len(key) == 0 {
		return status.Error(codes.InvalidArgument, "empty key")
	}
	return nil
}

func (f *fakeKV) Get(ctx context.Context, r *plugdbv1.GetRequest) (*plugdbv1.GetResponse, error) {
	if string(r.Key) == "slow" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[string(r.Key)]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "not found: %s", r.Key)
	}
	return &plugdbv1.GetResponse{Key: r.Key, Value: v, Lsn: f.lsn}, nil
}

func (f *fakeKV) Put(_ context.Context, r *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	if err := checkKey(r.Key); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastAck = r.Ack
	return f.write(string(r.Key), r.Value), nil
}

func (f *fakeKV) Create(_ context.Context, r *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastAck = r.Ack
	if _, ok := f.data[string(r.Key)]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "already exists: %s", r.Key)
	}
	return f.write(string(r.Key), r.Value), nil
}

func (f *fakeKV) Update(_ context.Context, r *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastAck = r.Ack
	if _, ok := f.data[string(r.Key)]; !ok {
		return nil, status.Errorf(codes.NotFound, "not found: %s", r.Key)
	}
	return f.write(string(r.Key), r.Value), nil
}

func (f *fakeKV) Delete(_ context.Context, r *plugdbv1.DeleteRequest) (*plugdbv1.WriteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastAck = r.Ack
	if _, ok := f.data[string(r.Key)]; !ok {
		return nil, status.Errorf(codes.NotFound, "not found: %s", r.Key)
	}
	return f.write(string(r.Key), nil), nil
}

// Scan serves [start, end) or prefix in key order; the prefix "boom" sends
// what it has and then fails, to check that lines already sent are printed.
func (f *fakeKV) Scan(r *plugdbv1.ScanRequest, stream grpc.ServerStreamingServer[plugdbv1.KeyValue]) error {
	f.mu.Lock()
	f.lastScan = r
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range f.data {
			if !yield(k) {
				return
			}
		}
	})
	var out []*plugdbv1.KeyValue
	for _, k := range keys {
		if len(r.Prefix) > 0 && !strings.HasPrefix(k, string(r.Prefix)) {
			continue
		}
		if k < string(r.Start) || (len(r.End) > 0 && k >= string(r.End)) {
			continue
		}
		if r.Limit > 0 && int64(len(out)) == r.Limit {
			break
		}
		out = append(out, &plugdbv1.KeyValue{Key: []byte(k), Value: f.data[k]})
	}
	f.mu.Unlock()
	for _, kv := range out {
		if err := stream.Send(kv); err != nil {
			return err
		}
	}
	if string(r.Prefix) == "boom" {
		return status.Error(codes.Unavailable, "partition 1 is not ready, retry in a moment")
	}
	return nil
}

func (f *fakeKV) Status(context.Context, *plugdbv1.StatusRequest) (*plugdbv1.StatusResponse, error) {
	return &plugdbv1.StatusResponse{
		Cluster:     "dev",
		Engine:      &plugdbv1.Plugin{Plugin: "rowfile", Mode: "plugin", Options: map[string]string{"sync": "batch"}},
		Partitioner: &plugdbv1.Plugin{Plugin: "hash", Mode: "inprocess", Options: map[string]string{"partitions": "2"}},
		Replicator:  &plugdbv1.Plugin{Plugin: "none", Mode: "inprocess"},
		Partitions: []*plugdbv1.PartitionStatus{
			{Partition: 0, Epoch: 1, Replicas: []*plugdbv1.Replica{
				{Partition: 0, Addr: "127.0.0.1:7070", Role: "leader", Epoch: 1, AppliedLsn: 42, Keys: 10, Bytes: 4096, ScansServed: 5},
			}},
			{Partition: 1, Epoch: 3, Replicas: []*plugdbv1.Replica{
				{Partition: 1, Addr: "127.0.0.1:7070", Role: "leader", Epoch: 3, AppliedLsn: 7, Keys: 2, Bytes: 100, PersistedLsn: 7},
				{Partition: 1, Addr: "127.0.0.1:7071", Role: "follower", Epoch: 3, AppliedLsn: 7, Keys: 2, Bytes: 100, Isr: true, PersistedLsn: 7, ScansServed: 12},
				{Partition: 1, Addr: "127.0.0.1:7072", Role: "follower", Epoch: 3, AppliedLsn: 4, Keys: 1, Bytes: 60,
					PersistedLsn: 5, LagStatements: 2, LagMs: 1500, ReplicationError: "connection reset"},
				{Partition: 1, Addr: "127.0.0.1:7073", Role: "unreachable", Epoch: 3, AppliedLsn: 3},
			}, Ack: "semi-sync", AckFallback: true},
		},
	}, nil
}

// startFakeKV serves a fakeKV on a free 127.0.0.1 port and returns it with
// its address.
func startFakeKV(t *testing.T) (*fakeKV, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := newFakeKV()
	srv := grpc.NewServer()
	plugdbv1.RegisterKVServer(srv, fake)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return fake, lis.Addr().String()
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the plugdb root command in process as main does: the error, if
// any, printed by printError and the exit code from exitCode.
func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	root := rootCommand()
	if cmd, _, err := root.Find([]string{"get"}); err != nil || cmd == root {
		root.AddCommand(cliCommands()...) // not wired into main.go yet
	}
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := 0
	if err := root.ExecuteContext(ctx); err != nil {
		printError(&stderr, err)
		code = exitCode(err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

func expectCLI(t *testing.T, r cliResult, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || r.stdout != stdout || r.stderr != stderr {
		t.Errorf("got %v; want exit %d, stdout %q, stderr %q", r, code, stdout, stderr)
	}
}

func TestCLIVerbs(t *testing.T) {
	fake, addr := startFakeKV(t)
	a := "--addr=" + addr

	expectCLI(t, runCLI(t, "put", "user:1", "alice", a), 0, "", "")
	expectCLI(t, runCLI(t, "get", "user:1", a), 0, "alice\n", "")
	expectCLI(t, runCLI(t, "put", "user:1", "alicia", a), 0, "", "")
	expectCLI(t, runCLI(t, "get", a, "user:1"), 0, "alicia\n", "")

	expectCLI(t, runCLI(t, "create", "user:2", "bob", a), 0, "", "")
	expectCLI(t, runCLI(t, "create", "user:2", "bobby", a), 2, "", "plugdb: already exists: user:2\n")
	expectCLI(t, runCLI(t, "get", "user:2", a), 0, "bob\n", "")

	expectCLI(t, runCLI(t, "update", "user:2", "robert", a), 0, "", "")
	expectCLI(t, runCLI(t, "get", "user:2", a), 0, "robert\n", "")
	expectCLI(t, runCLI(t, "update", "user:3", "carol", a), 1, "", "not found: user:3\n")

	expectCLI(t, runCLI(t, "delete", "user:2", a), 0, "", "")
	expectCLI(t, runCLI(t, "get", "user:2", a), 1, "", "not found: user:2\n")
	expectCLI(t, runCLI(t, "delete", "user:2", a), 1, "", "not found: user:2\n")

	// Other server errors: exit 2 with the server's message.
	expectCLI(t, runCLI(t, "put", "", "x", a), 2, "", "plugdb: empty key\n")

	// Values are raw bytes, printed as they are.
	fake.mu.Lock()
	fake.data["bin"] = []byte{0xff, 0x00, '\t', 'x'}
	fake.mu.Unlock()
	expectCLI(t, runCLI(t, "get", "bin", a), 0, "\xff\x00\tx\n", "")

	// Wrong argument counts are usage errors: exit 2.
	if r := runCLI(t, "get", a); r.code != 2 || !strings.Contains(r.stderr, "accepts 1 arg(s)") {
		t.Errorf("get without KEY: %v", r)
	}
	if r := runCLI(t, "put", "k", a); r.code != 2 {
		t.Errorf("put without VALUE: %v", r)
	}
}

func TestCLIScan(t *testing.T) {
	fake, addr := startFakeKV(t)
	a := "--addr=" + addr
	for _, k := range []string{"b:2", "a:1", "b:1", "c:1", "b:3", "a:2"} {
		expectCLI(t, runCLI(t, "put", k, "v-"+k, a), 0, "", "")
	}
	lines := func(keys ...string) string {
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "\tv-" + k + "\n")
		}
		return b.String()
	}
	expectCLI(t, runCLI(t, "scan", a), 0, lines("a:1", "a:2", "b:1", "b:2", "b:3", "c:1"), "")
	expectCLI(t, runCLI(t, "scan", "--prefix", "b:", a), 0, lines("b:1", "b:2", "b:3"), "")
	if p := string(fake.lastScan.Prefix); p != "b:" || len(fake.lastScan.Start) != 0 || len(fake.lastScan.End) != 0 {
		t.Errorf("scan --prefix sent %v", fake.lastScan)
	}
	expectCLI(t, runCLI(t, "scan", "--prefix", "b:", "--limit", "2", a), 0, lines("b:1", "b:2"), "")
	if fake.lastScan.Limit != 2 {
		t.Errorf("scan --limit 2 sent limit %d", fake.lastScan.Limit)
	}
	expectCLI(t, runCLI(t, "scan", "--start", "a:2", "--end", "b:3", a), 0, lines("a:2", "b:1", "b:2"), "")
	expectCLI(t, runCLI(t, "scan", "--start", "b:3", a), 0, lines("b:3", "c:1"), "")
	expectCLI(t, runCLI(t, "scan", "--prefix", "zzz", a), 0, "", "")

	// Lines received before a failure are printed; the failure exits 2.
	fake.mu.Lock()
	fake.data["boom1"] = []byte("v-boom1")
	fake.mu.Unlock()
	expectCLI(t, runCLI(t, "scan", "--prefix", "boom", a), 2, lines("boom1"),
		"plugdb: partition 1 is not ready, retry in a moment\n")

	// Bad flags: exit 2 without a call.
	if r := runCLI(t, "scan", "--prefix", "b:", "--start", "a", a); r.code != 2 || !strings.Contains(r.stderr, "prefix") {
		t.Errorf("scan --prefix with --start: %v", r)
	}
	expectCLI(t, runCLI(t, "scan", "--limit", "-1", a), 2, "", "plugdb: --limit -1: must be 0 (no limit) or more\n")
}

func TestCLIStatusJSON(t *testing.T) {
	_, addr := startFakeKV(t)
	r := runCLI(t, "status", "-o", "json", "--addr", addr)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("status -o json: %v", r)
	}
	// The exact shape, numbers as numbers.
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, r.stdout)
	}
	want := map[string]any{
		"cluster":     "dev",
		"engine":      map[string]any{"plugin": "rowfile", "mode": "plugin", "options": map[string]any{"sync": "batch"}},
		"partitioner": map[string]any{"plugin": "hash", "mode": "inprocess", "options": map[string]any{"partitions": "2"}},
		"replicator":  map[string]any{"plugin": "none", "mode": "inprocess", "options": map[string]any{}},
		"partitions": []any{
			map[string]any{"partition": 0.0, "epoch": 1.0, "replicas": []any{map[string]any{
				"partition": 0.0, "addr": "127.0.0.1:7070", "role": "leader", "epoch": 1.0,
				"applied_lsn": 42.0, "keys": 10.0, "bytes": 4096.0,
				"isr": false, "persisted_lsn": 0.0, "lag_statements": 0.0, "lag_ms": 0.0, "replication_error": "", "scans_served": 5.0,
			}}, "ack": "", "ack_fallback": false, "in_sync": 0, "ack_needs": 0, "replica_set": 0},
			map[string]any{"partition": 1.0, "epoch": 3.0, "replicas": []any{
				map[string]any{
					"partition": 1.0, "addr": "127.0.0.1:7070", "role": "leader", "epoch": 3.0,
					"applied_lsn": 7.0, "keys": 2.0, "bytes": 100.0,
					"isr": false, "persisted_lsn": 7.0, "lag_statements": 0.0, "lag_ms": 0.0, "replication_error": "", "scans_served": 0.0,
				},
				map[string]any{
					"partition": 1.0, "addr": "127.0.0.1:7071", "role": "follower", "epoch": 3.0,
					"applied_lsn": 7.0, "keys": 2.0, "bytes": 100.0,
					"isr": true, "persisted_lsn": 7.0, "lag_statements": 0.0, "lag_ms": 0.0, "replication_error": "", "scans_served": 12.0,
				},
				map[string]any{
					"partition": 1.0, "addr": "127.0.0.1:7072", "role": "follower", "epoch": 3.0,
					"applied_lsn": 4.0, "keys": 1.0, "bytes": 60.0,
					"isr": false, "persisted_lsn": 5.0, "lag_statements": 2.0, "lag_ms": 1500.0, "replication_error": "connection reset", "scans_served": 0.0,
				},
				map[string]any{
					"partition": 1.0, "addr": "127.0.0.1:7073", "role": "unreachable", "epoch": 3.0,
					"applied_lsn": 3.0, "keys": 0.0, "bytes": 0.0,
					"isr": false, "persisted_lsn": 0.0, "lag_statements": 0.0, "lag_ms": 0.0, "replication_error": "", "scans_served": 0.0,
				},
			}, "ack": "semi-sync", "ack_fallback": true, "in_sync": 0, "ack_needs": 0, "replica_set": 0},
		},
		"keyspaces": []any{}, // a server that lists none
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("status -o json:\n got %s\nwant %s", gotJSON, wantJSON)
	}
	if !strings.Contains(r.stdout, "\n  \"cluster\": \"dev\",\n") {
		t.Errorf("status -o json is not indented:\n%s", r.stdout)
	}
}

func TestCLIStatusText(t *testing.T) {
	_, addr := startFakeKV(t)
	want := "cluster: dev\n" +
		"plugins: engine=rowfile (plugin; sync=batch)  partitioner=hash (inprocess; partitions=2)  replicator=none (inprocess)\n" +
		"\n" +
		"PARTITION  ROLE         ADDR            EPOCH  APPLIED LSN  ISR  LAG       KEYS  BYTES  SCANS  ACK\n" +
		"0          leader       127.0.0.1:7070  1      42           -    -         10    4096   5      -\n" +
		"1          leader       127.0.0.1:7070  3      7            -    -         2     100    0      semi-sync (fallback: async)\n" +
		"1          follower     127.0.0.1:7071  3      7            yes  0 / 0s    2     100    12     -\n" +
		"1          follower     127.0.0.1:7072  3      4            no   2 / 1.5s  1     60     0      -\n" +
		"1          unreachable  127.0.0.1:7073  3      3            -    -         0     0      0      -\n" +
		"\n" +
		"partition 1 replica 127.0.0.1:7072: replication error: connection reset\n"
	expectCLI(t, runCLI(t, "status", "--addr", addr), 0, want, "")
	expectCLI(t, runCLI(t, "status", "-o", "text", "--addr", addr), 0, want, "")
	expectCLI(t, runCLI(t, "status", "-o", "yaml", "--addr", addr), 2, "",
		"plugdb: -o \"yaml\": allowed formats are text and json\n")
}

func TestCLIAck(t *testing.T) {
	fake, addr := startFakeKV(t)
	a := "--addr=" + addr
	wantAck := func(what string, want plugdbv1.Ack) {
		t.Helper()
		fake.mu.Lock()
		got := fake.lastAck
		fake.mu.Unlock()
		if got != want {
			t.Errorf("%s: server got ack %v, want %v", what, got, want)
		}
	}
	expectCLI(t, runCLI(t, "put", "--ack", "sync", "k", "v", a), 0, "", "")
	wantAck("put --ack sync", plugdbv1.Ack_ACK_SYNC)
	expectCLI(t, runCLI(t, "put", "k", "v", a), 0, "", "")
	wantAck("put", plugdbv1.Ack_ACK_DEFAULT)
	expectCLI(t, runCLI(t, "create", "--ack=async", "k2", "v", a), 0, "", "")
	wantAck("create --ack=async", plugdbv1.Ack_ACK_ASYNC)
	expectCLI(t, runCLI(t, "update", "k2", "w", "--ack", "Semi-Sync", a), 0, "", "")
	wantAck("update --ack Semi-Sync", plugdbv1.Ack_ACK_SEMI_SYNC)
	expectCLI(t, runCLI(t, "delete", "--ack", "semi-sync", "k2", a), 0, "", "")
	wantAck("delete --ack semi-sync", plugdbv1.Ack_ACK_SEMI_SYNC)

	// A bad value: one line naming the allowed ones, exit 2, no call.
	for _, args := range [][]string{{"put", "k", "v"}, {"create", "k3", "v"}, {"update", "k", "v"}, {"delete", "k"}} {
		expectCLI(t, runCLI(t, append(args, "--ack", "quorum", a)...), 2, "",
			"plugdb: --ack \"quorum\": allowed values are async, semi-sync, sync\n")
	}
	wantAck("refused --ack", plugdbv1.Ack_ACK_SEMI_SYNC)
	expectCLI(t, runCLI(t, "get", "k", "--ack", "sync", a), 2, "", "plugdb: unknown flag: --ack\n")
}

func TestCLIUnreachable(t *testing.T) {
	// A port that was free a moment ago: nothing listens there.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	for _, args := range [][]string{
		{"get", "k"}, {"put", "k", "v"}, {"delete", "k"}, {"scan"}, {"status"},
	} {
		r := runCLI(t, append(args, "--addr", addr)...)
		expectCLI(t, r, 2, "", "plugdb: cannot reach plugdb at "+addr+": connection refused\n")
	}
}

func TestCLITimeout(t *testing.T) {
	_, addr := startFakeKV(t)
	start := time.Now()
	r := runCLI(t, "get", "slow", "--addr", addr, "--timeout", "200ms")
	expectCLI(t, r, 2, "", "plugdb: no answer from plugdb at "+addr+" within 200ms (raise --timeout)\n")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("get with --timeout 200ms took %s", d)
	}
}

func TestCLIHelp(t *testing.T) {
	r := runCLI(t, "--help")
	for _, verb := range []string{"put", "get", "create", "update", "delete", "scan", "status"} {
		if !strings.Contains(r.stdout, "\n  "+verb+" ") {
			t.Errorf("plugdb --help does not list %s:\n%s", verb, r.stdout)
		}
		h := runCLI(t, verb, "--help")
		for _, s := range []string{"--addr", "127.0.0.1:7070", "--timeout", "--keyspace", "Exit codes", "not found: KEY"} {
			if !strings.Contains(h.stdout, s) {
				t.Errorf("plugdb %s --help does not say %q:\n%s", verb, s, h.stdout)
			}
		}
		if slices.Contains([]string{"put", "create", "update", "delete"}, verb) {
			for _, s := range []string{"--ack", "async", "semi-sync", "in-sync follower", "configured mode"} {
				if !strings.Contains(h.stdout, s) {
					t.Errorf("plugdb %s --help does not say %q:\n%s", verb, s, h.stdout)
				}
			}
		}
	}
}

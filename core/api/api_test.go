package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/core/local"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
)

// serve starts the API over 3 in-process memory partitions on loopback.
func serve(t *testing.T) (plugdbv1.KVClient, *local.Backend) {
	t.Helper()
	l := &loader.Loader{Self: os.Args[0], Engines: map[string]engines.OpenFunc{"memory": memory.Open}}
	b, err := local.Open(context.Background(), l, loader.Block{Plugin: "memory", Mode: loader.ModeInProcess}, t.TempDir(), 3, local.Info{Cluster: "t", Addr: "x"})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	plugdbv1.RegisterKVServer(srv, api.NewServer(b))
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Stop(); b.Close() })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return plugdbv1.NewKVClient(conn), b
}

func wantCode(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), text) {
		t.Fatalf("%s: %v, want %v containing %q", what, err, code, text)
	}
}

func TestVerbsAndCodes(t *testing.T) {
	kv, _ := serve(t)
	ctx := context.Background()
	w, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("1")})
	if err != nil || w.GetLsn() == 0 {
		t.Fatalf("put: %v %v", w, err)
	}
	got, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte("a")})
	if err != nil || string(got.GetValue()) != "1" || got.GetLsn() != w.GetLsn() {
		t.Fatalf("get: %v %v", got, err)
	}
	_, err = kv.Create(ctx, &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("2")})
	wantCode(t, "create existing", err, codes.AlreadyExists, "already exists: a")
	_, err = kv.Update(ctx, &plugdbv1.PutRequest{Key: []byte("b"), Value: []byte("2")})
	wantCode(t, "update missing", err, codes.NotFound, "not found: b")
	_, err = kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte("b")})
	wantCode(t, "delete missing", err, codes.NotFound, "not found: b")
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte("b")})
	wantCode(t, "get missing", err, codes.NotFound, "not found: b")
	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: nil, Value: []byte("x")})
	wantCode(t, "empty key", err, codes.InvalidArgument, "key is empty")
	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: make([]byte, 1025), Value: []byte("x")})
	wantCode(t, "oversized key", err, codes.InvalidArgument, "max_key_size 1024")
	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("big"), Value: make([]byte, 1<<20+1)})
	wantCode(t, "oversized value", err, codes.InvalidArgument, "max_value_size 1048576")
	if _, err := kv.Update(ctx, &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("3")}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte("a")})
	wantCode(t, "get deleted", err, codes.NotFound, "not found: a")
}

func TestScanMergesPartitionsInOrder(t *testing.T) {
	kv, b := serve(t)
	ctx := context.Background()
	var ops []*plugdbv1.BatchOp
	used := map[int]bool{}
	for i := 0; i < 60; i++ {
		k := []byte(fmt.Sprintf("k%03d", i))
		var at [1]int
		if err := b.Locate(ctx, [][]byte{k}, at[:]); err != nil {
			t.Fatal(err)
		}
		used[at[0]] = true
		ops = append(ops, &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_PUT, Key: k, Value: k})
	}
	ops = append(ops, &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte("other"), Value: []byte("x")})
	resp, err := kv.Batch(ctx, &plugdbv1.BatchRequest{Ops: ops})
	if err != nil || len(resp.GetLsns()) != len(ops) {
		t.Fatalf("batch: %v %v", resp, err)
	}
	if len(used) != 3 {
		t.Fatalf("keys landed on %d partitions, want 3", len(used))
	}
	scan := func(req *plugdbv1.ScanRequest) []string {
		stream, err := kv.Scan(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for {
			kvp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return keys
			}
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, string(kvp.GetKey()))
		}
	}
	keys := scan(&plugdbv1.ScanRequest{Prefix: []byte("k")})
	if len(keys) != 60 {
		t.Fatalf("prefix scan: %d keys", len(keys))
	}
	for i, k := range keys {
		if want := fmt.Sprintf("k%03d", i); k != want {
			t.Fatalf("key %d = %s, want %s (merge order)", i, k, want)
		}
	}
	if keys := scan(&plugdbv1.ScanRequest{Start: []byte("k010"), End: []byte("k020"), Limit: 5}); strings.Join(keys, ",") != "k010,k011,k012,k013,k014" {
		t.Fatalf("range scan with limit: %v", keys)
	}
}

func TestUnavailableCarriesRetryHint(t *testing.T) {
	kv, b := serve(t)
	b.Close() // engines closed: partitions are not ready
	_, err := kv.Put(context.Background(), &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("1")})
	wantCode(t, "put on closed partition", err, codes.Unavailable, "retry in 1s")
	var hint *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			hint = r
		}
	}
	if hint == nil || hint.GetRetryDelay().AsDuration() != api.RetryAfter {
		t.Fatalf("no RetryInfo detail in %v", status.Convert(err).Details())
	}
}

// ackBackend records the ack mode of every Write.
type ackBackend struct {
	*local.Backend
	mu   sync.Mutex
	acks []replicators.Ack
}

func (b *ackBackend) Write(ctx context.Context, p int, writes []partition.Write, ack replicators.Ack, id partition.RequestID) ([]uint64, error) {
	b.mu.Lock()
	b.acks = append(b.acks, ack)
	b.mu.Unlock()
	return b.Backend.Write(ctx, p, writes, ack, id)
}

// take returns the acks recorded since the last call.
func (b *ackBackend) take() []replicators.Ack {
	b.mu.Lock()
	defer b.mu.Unlock()
	acks := b.acks
	b.acks = nil
	return acks
}

func TestAckPassesThrough(t *testing.T) {
	_, lb := serve(t)
	b := &ackBackend{Backend: lb}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	plugdbv1.RegisterKVServer(srv, api.NewServer(b))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	kv := plugdbv1.NewKVClient(conn)
	ctx := context.Background()
	want := func(what string, acks ...replicators.Ack) {
		t.Helper()
		if got := b.take(); !slices.Equal(got, acks) {
			t.Errorf("%s: backend got acks %v, want %v", what, got, acks)
		}
	}

	async := plugdbv1.Ack_ACK_ASYNC
	if _, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	want("put", replicators.AckDefault)
	if _, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("1"), Ack: async}); err != nil {
		t.Fatal(err)
	}
	want("put ack async", replicators.AckAsync)
	if _, err := kv.Create(ctx, &plugdbv1.PutRequest{Key: []byte("b"), Value: []byte("1"), Ack: async}); err != nil {
		t.Fatal(err)
	}
	want("create ack async", replicators.AckAsync)
	if _, err := kv.Update(ctx, &plugdbv1.PutRequest{Key: []byte("b"), Value: []byte("2"), Ack: async}); err != nil {
		t.Fatal(err)
	}
	want("update ack async", replicators.AckAsync)
	if _, err := kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte("b"), Ack: async}); err != nil {
		t.Fatal(err)
	}
	want("delete ack async", replicators.AckAsync)
	var ops []*plugdbv1.BatchOp
	for i := range 30 {
		ops = append(ops, &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_PUT, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
	}
	if _, err := kv.Batch(ctx, &plugdbv1.BatchRequest{Ops: ops, Ack: async}); err != nil {
		t.Fatal(err)
	}
	want("batch ack async (3 partitions)", replicators.AckAsync, replicators.AckAsync, replicators.AckAsync)

	// The dev backend keeps one copy: semi-sync and sync are refused, saying why.
	for _, a := range []plugdbv1.Ack{plugdbv1.Ack_ACK_SEMI_SYNC, plugdbv1.Ack_ACK_SYNC} {
		name := map[plugdbv1.Ack]string{plugdbv1.Ack_ACK_SEMI_SYNC: "semi-sync", plugdbv1.Ack_ACK_SYNC: "sync"}[a]
		_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("2"), Ack: a})
		wantCode(t, "put ack "+name, err, codes.InvalidArgument, "plugdb dev keeps one copy: ack "+name+" needs a cluster whose replicator is statement")
		_, err = kv.Batch(ctx, &plugdbv1.BatchRequest{Ops: ops, Ack: a})
		wantCode(t, "batch ack "+name, err, codes.InvalidArgument, "plugdb dev keeps one copy: ack "+name)
		b.take()
	}

	// An ack value out of the enum is refused before reaching the backend.
	for _, call := range []struct {
		what string
		fn   func() error
	}{
		{"put", func() error {
			_, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("1"), Ack: 7})
			return err
		}},
		{"create", func() error {
			_, err := kv.Create(ctx, &plugdbv1.PutRequest{Key: []byte("z"), Value: []byte("1"), Ack: 7})
			return err
		}},
		{"update", func() error {
			_, err := kv.Update(ctx, &plugdbv1.PutRequest{Key: []byte("a"), Value: []byte("1"), Ack: 7})
			return err
		}},
		{"delete", func() error {
			_, err := kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte("a"), Ack: 7})
			return err
		}},
		{"batch", func() error {
			_, err := kv.Batch(ctx, &plugdbv1.BatchRequest{Ops: ops, Ack: 7})
			return err
		}},
	} {
		wantCode(t, call.what+" ack 7", call.fn(), codes.InvalidArgument, "ack 7: allowed values are async, semi-sync, sync")
	}
	want("bad acks")
}

func TestAckProtoRoundTrip(t *testing.T) {
	for _, a := range []replicators.Ack{replicators.AckDefault, replicators.AckAsync, replicators.AckSemiSync, replicators.AckSync} {
		got, err := api.AckFromProto(api.AckToProto(a))
		if err != nil || got != a {
			t.Errorf("%v: round trip gave %v, %v", a, got, err)
		}
		if name := strings.TrimPrefix(api.AckToProto(a).String(), "ACK_"); strings.ReplaceAll(strings.ToLower(name), "_", "-") != a.String() {
			t.Errorf("%v: proto name %s", a, api.AckToProto(a))
		}
	}
}

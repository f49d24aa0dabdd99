package router

import (
	"context"
	"iter"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(zktest.M{M: m}) }

// refusingNode is a node's backend that refuses its first refusals writes
// and reads as keys of partition 1, then serves them.
type refusingNode struct {
	refusals int64
	calls    atomic.Int64
}

func (n *refusingNode) refused() bool { return n.calls.Add(1) <= n.refusals }

func (n *refusingNode) refusal(key []byte) error {
	return &api.WrongPartitionError{Key: key, Owner: 1, Partition: 0, Addr: "fake"}
}

func (*refusingNode) Partitions() int { return 2 }
func (*refusingNode) Locate(_ context.Context, keys [][]byte, out []int) error {
	clear(out[:len(keys)])
	return nil
}
func (*refusingNode) Range(context.Context, []byte, []byte) ([]int, error) { return []int{0}, nil }
func (*refusingNode) Status(context.Context) (*plugdbv1.StatusResponse, error) {
	return &plugdbv1.StatusResponse{}, nil
}

func (n *refusingNode) Get(_ context.Context, _ int, key []byte, _ api.Read) (engines.Row, error) {
	if n.refused() {
		return engines.Row{}, n.refusal(key)
	}
	return engines.Row{Key: key, Value: []byte("v"), LSN: 1}, nil
}

func (n *refusingNode) Write(_ context.Context, _ int, writes []partition.Write, _ replicators.Ack, _ partition.RequestID) ([]uint64, error) {
	if n.refused() {
		return nil, n.refusal(writes[0].Key)
	}
	return make([]uint64, len(writes)), nil
}

func (n *refusingNode) Scan(context.Context, int, engines.ScanRange, api.Read) iter.Seq2[engines.Row, error] {
	return func(func(engines.Row, error) bool) {}
}

// routeTo starts a gRPC server for b on loopback, makes it partition 0's
// leader in a new cluster on the shared ZooKeeper, and returns a router of
// that cluster that knows it.
func routeTo(t *testing.T, b api.Backend) *Router {
	t.Helper()
	return routeToKeyspace(t, b, "")
}

// routeToKeyspace is routeTo in keyspace ks ("": the default one): b's
// server serves that keyspace alone, and the router is the keyspace's.
func routeToKeyspace(t *testing.T, b api.Backend, ks string) *Router {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	name := ks
	if name == "" {
		name = api.DefaultKeyspace
	}
	plugdbv1.RegisterKVServer(srv, api.NewKeyspaceServer(map[string]api.Backend{name: b}))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	zk := zktest.Shared(t)
	cfg := coord.Config{Servers: zk.Servers(), SessionTimeout: 2 * time.Second, Root: "/plugdb-router-test",
		Cluster: strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), Keyspace: ks}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	connect := func() *coord.Client {
		cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
		defer ccancel()
		c, err := coord.Connect(cctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if _, err := coord.EnsureMeta(cctx, c, coord.Meta{Partitions: 2, Partitioner: coord.PluginMeta{Plugin: "hash"}}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	cand := coord.NewCandidate(connect(), coord.CandidateConfig{Partition: 0, Addr: lis.Addr().String(), Applied: func() uint64 { return 0 }})
	done := make(chan struct{})
	go func() { defer close(done); _ = cand.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	r, err := New(ctx, connect(), coord.Meta{Partitions: 2, Partitioner: coord.PluginMeta{Plugin: "hash"}}, openHash, Info{Cluster: cfg.Cluster, Keyspace: ks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for r.Topology().Partition(0).Leader.Addr != lis.Addr().String() {
		if time.Now().After(deadline) {
			t.Fatalf("the router never saw the fake node lead partition 0: %+v", r.Topology().Partition(0))
		}
		select {
		case <-r.Topology().Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return r
}

// openHash opens the hash partitioner for any layout (its plugin name is
// not checked).
func openHash(ctx context.Context, m coord.Meta) (partitioners.Partitioner, error) {
	part, err := hash.Open(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := part.Configure(ctx, m.Partitions, m.Partitioner.Options); err != nil {
		part.Close()
		return nil, err
	}
	return part, nil
}

func TestRouterRetriesAWrongPartitionRefusal(t *testing.T) {
	n := &refusingNode{refusals: 1}
	r := routeTo(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A conditional write: a refused request wrote nothing.
	if _, err := r.Write(ctx, 0, []partition.Write{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), Cond: partition.MustNotExist}}, replicators.AckDefault, partition.RequestID{}); err != nil {
		t.Fatalf("write refused once: %v, want it retried", err)
	}
	if got := n.calls.Load(); got != 2 {
		t.Fatalf("%d calls to the node, want 2 (the refusal and the retry)", got)
	}
}

func TestRouterSurfacesAPersistentWrongPartitionRefusal(t *testing.T) {
	n := &refusingNode{refusals: 1 << 30}
	r := routeTo(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := r.Write(ctx, 0, []partition.Write{{Op: engines.OpPut, Key: []byte("k1"), Value: []byte("v")}}, replicators.AckDefault, partition.RequestID{})
	if owner, ok := api.WrongPartition(err); !ok || owner != 1 || status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(status.Convert(err).Message(), `key "k1" belongs to partition 1`) {
		t.Fatalf("write: %v, want the node's FailedPrecondition naming partition 1", err)
	}
	if got, want := n.calls.Load(), int64(1+MaxWrongPartitionRetries); got != want {
		t.Fatalf("%d calls to the node, want %d (the first and %d retries)", got, want, MaxWrongPartitionRetries)
	}
	n.calls.Store(0)
	_, err = r.Get(ctx, 0, []byte("k1"), api.Read{})
	if _, ok := api.WrongPartition(err); !ok || n.calls.Load() != int64(1+MaxWrongPartitionRetries) {
		t.Fatalf("get: %v after %d calls, want the refusal after %d", err, n.calls.Load(), 1+MaxWrongPartitionRetries)
	}
	if ctx.Err() != nil {
		t.Fatal("the refusals used up the request's deadline")
	}
}

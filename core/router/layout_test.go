package router

import (
	"context"
	"fmt"
	"iter"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
)

// ownerNode is the backend of partition id's leader under the hash
// partitioner: it serves the keys it owns under the layout of n partitions
// it follows, refuses the others (api.WrongPartitionError), and, while
// fenced, refuses the keys a layout of n+1 partitions moves away
// (api.MovingError), as a node does during a move.
type ownerNode struct {
	id     int
	n      atomic.Int64
	fenced atomic.Bool
	// refused counts the refusals (either kind), served the served
	// requests.
	refused, served atomic.Int64
}

func newOwnerNode(id, n int) *ownerNode {
	o := &ownerNode{id: id}
	o.n.Store(int64(n))
	return o
}

func (o *ownerNode) check(keys ...[]byte) error {
	n := int(o.n.Load())
	for _, k := range keys {
		if owner := hash.Locate(k, n); owner != o.id {
			o.refused.Add(1)
			return &api.WrongPartitionError{Key: k, Owner: owner, Partition: o.id, Addr: "fake"}
		}
		if to := hash.Locate(k, n+1); o.fenced.Load() && to != o.id {
			o.refused.Add(1)
			return &api.MovingError{Key: k, Partition: o.id, To: to, Addr: "fake"}
		}
	}
	o.served.Add(1)
	return nil
}

func (o *ownerNode) Partitions() int { return int(o.n.Load()) }
func (o *ownerNode) Locate(_ context.Context, keys [][]byte, out []int) error {
	for i := range keys {
		out[i] = o.id
	}
	return nil
}
func (o *ownerNode) Range(context.Context, []byte, []byte) ([]int, error) { return []int{o.id}, nil }
func (o *ownerNode) Status(context.Context) (*plugdbv1.StatusResponse, error) {
	return &plugdbv1.StatusResponse{}, nil
}

func (o *ownerNode) Get(_ context.Context, _ int, key []byte, _ api.Read) (engines.Row, error) {
	if err := o.check(key); err != nil {
		return engines.Row{}, err
	}
	return engines.Row{Key: key, Value: []byte(fmt.Sprint(o.id)), LSN: 1}, nil
}

func (o *ownerNode) Write(_ context.Context, _ int, writes []partition.Write, _ replicators.Ack, _ partition.RequestID) ([]uint64, error) {
	keys := make([][]byte, len(writes))
	for i, w := range writes {
		keys[i] = w.Key
	}
	if err := o.check(keys...); err != nil {
		return nil, err
	}
	return make([]uint64, len(writes)), nil
}

func (o *ownerNode) Scan(context.Context, int, engines.ScanRange, api.Read) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		if o.fenced.Load() {
			o.refused.Add(1)
			yield(engines.Row{}, &api.MovingError{Partition: o.id, To: -1, Addr: "fake"})
			return
		}
		o.served.Add(1)
	}
}

// fakeCluster is a keyspace of the hash partitioner on the shared ZooKeeper
// whose partitions' leaders are fake nodes.
type fakeCluster struct {
	t     *testing.T
	ctx   context.Context
	cfg   coord.Config
	admin *coord.Client
	addrs map[int]string
	// opened and closed count the partitioners the routers opened and
	// closed.
	opened, closed atomic.Int64
}

// countedPartitioner counts its Close in closed.
type countedPartitioner struct {
	partitioners.Partitioner
	closed *atomic.Int64
}

func (p countedPartitioner) Close() error {
	p.closed.Add(1)
	return p.Partitioner.Close()
}

// open is openHash, counted.
func (f *fakeCluster) open(ctx context.Context, m coord.Meta) (partitioners.Partitioner, error) {
	p, err := openHash(ctx, m)
	if err != nil {
		return nil, err
	}
	f.opened.Add(1)
	return countedPartitioner{p, &f.closed}, nil
}

// newFakeCluster creates a keyspace of partitions partitions (hash).
func newFakeCluster(t *testing.T, partitions int) *fakeCluster {
	t.Helper()
	zk := zktest.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fakeCluster{t: t, ctx: ctx, addrs: map[int]string{}, cfg: coord.Config{Servers: zk.Servers(), SessionTimeout: 2 * time.Second,
		Root: "/plugdb-router-test",
		// Unique across -count runs: a run's ISR and epochs stay in the shared ZooKeeper.
		Cluster: fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())}}
	f.admin = f.connect()
	if _, err := coord.EnsureMeta(ctx, f.admin, coord.Meta{Partitions: partitions, Partitioner: coord.PluginMeta{Plugin: "hash"}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeCluster) connect() *coord.Client {
	f.t.Helper()
	cctx, cancel := context.WithTimeout(f.ctx, 15*time.Second)
	defer cancel()
	c, err := coord.Connect(cctx, f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(c.Close)
	return c
}

// node serves b on loopback as partition p's leader.
func (f *fakeCluster) node(p int, b api.Backend) {
	f.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	srv := grpc.NewServer()
	plugdbv1.RegisterKVServer(srv, api.NewKeyspaceServer(map[string]api.Backend{api.DefaultKeyspace: b}))
	go srv.Serve(lis)
	f.t.Cleanup(srv.Stop)
	f.addrs[p] = lis.Addr().String()
	ctx, cancel := context.WithCancel(f.ctx)
	cand := coord.NewCandidate(f.connect(), coord.CandidateConfig{Partition: p, Addr: lis.Addr().String(), Applied: func() uint64 { return 0 }})
	done := make(chan struct{})
	go func() { defer close(done); _ = cand.Run(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
}

// router returns a router of the keyspace, as it is now.
func (f *fakeCluster) router() *Router {
	f.t.Helper()
	meta, err := coord.ReadMeta(f.ctx, f.admin)
	if err != nil {
		f.t.Fatal(err)
	}
	r, err := New(f.ctx, f.connect(), meta, f.open, Info{Cluster: f.cfg.Cluster})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { r.Close() })
	return r
}

// leads waits until r sees partition p's fake node lead it.
func (f *fakeCluster) leads(r *Router, p int) {
	f.t.Helper()
	testutil.WaitFor(f.t, 20*time.Second, func() bool { return p < r.Partitions() && r.Topology().Partition(p).Leader.Addr == f.addrs[p] },
		fmt.Sprintf("the router to see the fake node lead partition %d", p))
}

// begin records a move to to partitions (hash) and fences it.
func (f *fakeCluster) begin(to int) {
	f.t.Helper()
	if _, err := coord.BeginReshard(f.ctx, f.admin, coord.Meta{Partitions: to, Partitioner: coord.PluginMeta{Plugin: "hash"}}); err != nil {
		f.t.Fatal(err)
	}
	if err := coord.SetReshardState(f.ctx, f.admin, coord.ReshardCopying, coord.ReshardFenced); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeCluster) flip() {
	f.t.Helper()
	if err := coord.FlipReshard(f.ctx, f.admin); err != nil {
		f.t.Fatal(err)
	}
}

// movingKey returns a key hash places in from among 2 partitions and in to
// among 3.
func movingKey(t *testing.T, from, to int) []byte {
	t.Helper()
	for i := range 10000 {
		k := []byte(fmt.Sprintf("key-%d", i))
		if hash.Locate(k, 2) == from && hash.Locate(k, 3) == to {
			return k
		}
	}
	t.Fatalf("no key moves from partition %d to %d", from, to)
	return nil
}

// At a flip the router moves to the new layout: its partition count,
// placement and topology are the new layout's.
func TestRouterFollowsTheLayout(t *testing.T) {
	f := newFakeCluster(t, 2)
	r := f.router()
	if r.Partitions() != 2 || r.Layout().LayoutVersion() != 1 {
		t.Fatalf("router starts with %d partitions, layout %+v", r.Partitions(), r.Layout())
	}
	f.begin(3)
	f.node(2, newOwnerNode(2, 3))
	f.flip()
	testutil.WaitFor(t, 20*time.Second, func() bool { return r.Partitions() == 3 }, "the router to follow the flip to 3 partitions")
	if m := r.Layout(); m.LayoutVersion() != 2 || m.Partitions != 3 {
		t.Fatalf("layout after the flip: %+v", m)
	}
	keys := make([][]byte, 100)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key-%d", i))
	}
	out := make([]int, len(keys))
	if err := r.Locate(t.Context(), keys, out); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if want := hash.Locate(k, 3); out[i] != want {
			t.Fatalf("key %s placed in %d, want %d (3 partitions)", k, out[i], want)
		}
	}
	if ps, err := r.Range(t.Context(), nil, nil); err != nil || len(ps) != 3 {
		t.Fatalf("range of everything: %v, %v; want 3 partitions", ps, err)
	}
	f.leads(r, 2)
	// The old layout's partitioner was closed once no request held it.
	testutil.WaitFor(t, 5*time.Second, func() bool { return f.opened.Load() == 2 && f.closed.Load() == 1 }, "the old layout's partitioner to close")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if f.closed.Load() != 2 {
		t.Fatalf("%d partitioners closed after Close, want 2", f.closed.Load())
	}
	// A closed router answers, it does not hang.
	if r.Partitions() != 3 {
		t.Fatalf("closed router: %d partitions", r.Partitions())
	}
	if err := r.Locate(t.Context(), keys, out); err != nil {
		t.Logf("locate on a closed router: %v", err)
	}
}

// A request placed under the old layout that its old owner refuses after
// the flip goes to the key's new owner.
func TestRouterRetriesAtTheNewOwner(t *testing.T) {
	f := newFakeCluster(t, 2)
	key := movingKey(t, 0, 2)
	old, next := newOwnerNode(0, 2), newOwnerNode(2, 3)
	f.node(0, old)
	r := f.router()
	f.leads(r, 0)
	f.begin(3)
	f.node(2, next)
	f.flip()
	old.n.Store(3) // the old owner has seen the flip
	testutil.WaitFor(t, 20*time.Second, func() bool { return r.Partitions() == 3 }, "the router to follow the flip")
	f.leads(r, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Placed in partition 0, as under the old layout.
	if _, err := r.Write(ctx, 0, []partition.Write{{Op: engines.OpPut, Key: key, Value: []byte("v"), Cond: partition.MustNotExist}}, replicators.AckDefault, partition.RequestID{}); err != nil {
		t.Fatalf("write placed under the old layout: %v, want it retried at the new owner", err)
	}
	row, err := r.Get(ctx, 0, key, api.Read{})
	if err != nil || string(row.Value) != "2" {
		t.Fatalf("get placed under the old layout: %q, %v; want partition 2's answer", row.Value, err)
	}
	if old.refused.Load() != 2 || old.served.Load() != 0 || next.served.Load() != 2 {
		t.Fatalf("old owner refused %d, served %d; new owner served %d; want 2, 0, 2", old.refused.Load(), old.served.Load(), next.served.Load())
	}

	// A batch share whose keys the new layout splits: nothing written, retry.
	stay := movingKey(t, 0, 0)
	_, err = r.Write(ctx, 0, []partition.Write{{Op: engines.OpPut, Key: stay, Value: []byte("v")}, {Op: engines.OpPut, Key: key, Value: []byte("v")}},
		replicators.AckDefault, partition.RequestID{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "layout changed during the batch") {
		t.Fatalf("batch split by the new layout: %v, want a retryable Unavailable", err)
	}
}

// A node that refuses a key of a recorded move as another partition's
// before the router saw the flip: the router waits for the new layout
// (past MaxWrongPartitionRetries) and sends the request to the new owner.
func TestRouterWaitsForTheFlipANodeSaw(t *testing.T) {
	f := newFakeCluster(t, 2)
	key := movingKey(t, 1, 2)
	old, next := newOwnerNode(1, 3), newOwnerNode(2, 3) // both already on the new layout
	f.node(1, old)
	r := f.router()
	f.leads(r, 1)
	f.begin(3)
	f.node(2, next)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := r.Write(ctx, 1, []partition.Write{{Op: engines.OpPut, Key: key, Value: []byte("v")}}, replicators.AckDefault, partition.RequestID{})
		done <- err
	}()
	testutil.WaitFor(t, 10*time.Second, func() bool { return old.refused.Load() > MaxWrongPartitionRetries+1 },
		"the old owner to refuse the write more often than MaxWrongPartitionRetries")
	f.flip()
	if err := <-done; err != nil {
		t.Fatalf("write refused until the flip: %v, want it sent to the new owner", err)
	}
	if next.served.Load() != 1 {
		t.Fatalf("new owner served %d, want 1", next.served.Load())
	}
}

// A key fenced by a move is refused with MOVING: the router retries it
// until the node serves it.
func TestRouterRetriesAMovingKey(t *testing.T) {
	f := newFakeCluster(t, 2)
	key := movingKey(t, 0, 2)
	n := newOwnerNode(0, 2)
	n.fenced.Store(true)
	f.node(0, n)
	r := f.router()
	f.leads(r, 0)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := r.Get(ctx, 0, key, api.Read{})
		done <- err
	}()
	testutil.WaitFor(t, 5*time.Second, func() bool { return n.refused.Load() >= 3 }, "the node to refuse the moving key 3 times")
	n.fenced.Store(false) // the move was aborted: the fence is lifted
	if err := <-done; err != nil {
		t.Fatalf("get of a moving key: %v, want it retried until served", err)
	}
	if n.served.Load() != 1 {
		t.Fatalf("served %d, want 1", n.served.Load())
	}
}

// A scan refused as MOVING that the layout's flip ends fails with a
// retryable Unavailable: its partitions were the old layout's.
func TestRouterScanAcrossAFlip(t *testing.T) {
	f := newFakeCluster(t, 2)
	n := newOwnerNode(0, 2)
	n.fenced.Store(true)
	f.node(0, n)
	r := f.router()
	f.leads(r, 0)
	f.begin(3)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var err error
		for _, e := range r.Scan(ctx, 0, engines.ScanRange{}, api.Read{}) {
			err = e
		}
		done <- err
	}()
	testutil.WaitFor(t, 5*time.Second, func() bool { return n.refused.Load() >= 2 }, "the node to refuse the scan twice")
	f.flip()
	if err := <-done; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "layout changed during the scan") {
		t.Fatalf("scan across the flip: %v, want a retryable Unavailable", err)
	}
	if n.served.Load() != 0 {
		t.Fatal("the fenced node served the scan")
	}
}

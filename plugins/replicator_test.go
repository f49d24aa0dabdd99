package plugins

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/engines"
	replicatorv1 "github.com/plugdb/plugdb/proto/plugdb/replicator/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/none"
	"github.com/plugdb/plugdb/replicators/replicatortest"
)

// startReplicatorShim serves the replicator open returns through the real
// server shim on loopback, one gRPC server per replicator as a plugin process
// serves one, and returns an unopened client shim.
func startReplicatorShim(t testing.TB, open replicators.OpenFunc) *ReplicatorClient {
	t.Helper()
	conn := serveLoopback(t, func(srv *grpc.Server) {
		replicatorv1.RegisterReplicatorServer(srv, newReplicatorServer(open, nil))
	})
	return NewReplicatorClient(conn)
}

// openedShim returns a client shim of a replicator of open, opened with opts.
func openedShim(t testing.TB, open replicators.OpenFunc) *ReplicatorClient {
	t.Helper()
	c := startReplicatorShim(t, open)
	if err := c.Open(context.Background(), replicators.Options{Dir: t.TempDir(), Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReplicatorKitThroughShim(t *testing.T) {
	replicatortest.Run(t, func(t *testing.T) replicatortest.Harness {
		return replicatortest.Harness{Open: func(ctx context.Context, opts replicators.Options) (replicators.Replicator, error) {
			c := startReplicatorShim(t, none.Open)
			if err := c.Open(ctx, opts); err != nil {
				return nil, err
			}
			return c, nil
		}}
	})
}

// fakeReplicator answers each call as its fields say and records what it got.
type fakeReplicator struct {
	err        error // returned by every call but Deliveries, Addr and Close
	deliveries []fakeItem

	mu         sync.Mutex
	peers      []replicators.Peer
	replicated []replicators.Statement
	deadlines  []bool // per Replicate: whether its ctx had a deadline
	calls      []string
}

type fakeItem struct {
	d   replicators.Delivery
	err error
}

func (f *fakeReplicator) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeReplicator) Addr() string { return "127.0.0.1:4242" }
func (f *fakeReplicator) Lead(_ context.Context, epoch, applied uint64) (uint64, error) {
	f.record(fmt.Sprintf("lead %d %d", epoch, applied))
	return applied + 7, f.err
}
func (f *fakeReplicator) SetPeers(_ context.Context, peers []replicators.Peer) error {
	f.mu.Lock()
	f.peers = peers
	f.mu.Unlock()
	return f.err
}

// Replicate fails a statement whose first key is "fenced" with ErrFenced
// naming its LSN, and one whose first key is "wait" once its ctx ends, with
// ErrUnavailable.
func (f *fakeReplicator) Replicate(ctx context.Context, st replicators.Statement, _ replicators.Ack) error {
	_, hasDeadline := ctx.Deadline()
	f.mu.Lock()
	f.replicated = append(f.replicated, st)
	f.deadlines = append(f.deadlines, hasDeadline)
	f.mu.Unlock()
	switch string(st.Mutations[0].Key) {
	case "fenced":
		return fmt.Errorf("lsn %d: follower saw epoch 9: %w", st.First(), replicators.ErrFenced)
	case "wait":
		<-ctx.Done()
		return fmt.Errorf("lsn %d: acks not met: %w", st.First(), replicators.ErrUnavailable)
	}
	return f.err
}
func (f *fakeReplicator) Follow(_ context.Context, epoch uint64, leader string) error {
	f.record(fmt.Sprintf("follow %d %s", epoch, leader))
	return f.err
}
func (f *fakeReplicator) Deliveries(ctx context.Context) iter.Seq2[replicators.Delivery, error] {
	return func(yield func(replicators.Delivery, error) bool) {
		for _, it := range f.deliveries {
			if !yield(it.d, it.err) {
				return
			}
		}
		<-ctx.Done()
	}
}
func (f *fakeReplicator) Applied(_ context.Context, lsn uint64) error {
	f.record(fmt.Sprintf("applied %d", lsn))
	return f.err
}
func (f *fakeReplicator) EpochAt(_ context.Context, lsn uint64) (uint64, error) {
	return lsn * 2, f.err
}
func (f *fakeReplicator) Restored(_ context.Context, lsn, epoch uint64) error {
	f.record(fmt.Sprintf("restored %d %d", lsn, epoch))
	return f.err
}

var fakeStatus = replicators.Status{
	Role: "leader", Epoch: 3, LogStart: 10, LogEnd: 99, Commit: 97, Ack: replicators.AckSemiSync, Fallback: true,
	Followers: []replicators.FollowerStatus{
		{Addr: "127.0.0.1:1", ISR: true, InSync: true, Connected: true, PersistedLSN: 99, AppliedLSN: 98},
		{Addr: "127.0.0.1:2", PersistedLSN: 50, AppliedLSN: 40, LagStatements: 49, LagTime: 1500 * time.Millisecond, Error: "connection refused"},
	},
	LogSync: replicators.Latency{Bounds: []float64{0.001, 0.01}, Counts: []uint64{3, 7}, Count: 8, Sum: 250 * time.Millisecond},
}

func (f *fakeReplicator) Status(context.Context) (replicators.Status, error) {
	return fakeStatus, f.err
}
func (f *fakeReplicator) Close() error { return nil }

func openFake(f *fakeReplicator) replicators.OpenFunc {
	return func(context.Context, replicators.Options) (replicators.Replicator, error) { return f, nil }
}

func put(key string, lsn uint64) engines.Mutation {
	return engines.Mutation{Op: engines.OpPut, Key: []byte(key), Value: []byte("v" + key), LSN: lsn}
}

func TestReplicatorCallsRoundTrip(t *testing.T) {
	ctx := context.Background()
	f := &fakeReplicator{}
	c := openedShim(t, openFake(f))
	if c.Addr() != "127.0.0.1:4242" {
		t.Fatalf("addr %q", c.Addr())
	}
	if end, err := c.Lead(ctx, 3, 5); err != nil || end != 12 {
		t.Fatalf("lead: %d, %v", end, err)
	}
	peers := []replicators.Peer{{Addr: "a:1", ISR: true}, {Addr: "b:2"}}
	if err := c.SetPeers(ctx, peers); err != nil || !reflect.DeepEqual(f.peers, peers) {
		t.Fatalf("set peers: %+v, %v", f.peers, err)
	}
	if err := c.Follow(ctx, 4, "l:1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Applied(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if err := c.Restored(ctx, 9, 2); err != nil {
		t.Fatal(err)
	}
	if e, err := c.EpochAt(ctx, 21); err != nil || e != 42 {
		t.Fatalf("epoch at: %d, %v", e, err)
	}
	st, err := c.Status(ctx)
	if err != nil || !reflect.DeepEqual(st, fakeStatus) {
		t.Fatalf("status: %+v, %v\nwant %+v", st, err, fakeStatus)
	}
	want := []string{"lead 3 5", "follow 4 l:1", "applied 8", "restored 9 2"}
	if !reflect.DeepEqual(f.calls, want) {
		t.Fatalf("calls %q, want %q", f.calls, want)
	}
	stmt := replicators.Statement{Epoch: 3, Mutations: []engines.Mutation{put("k", 13), {Op: engines.OpDelete, Key: []byte("d"), LSN: 14}}}
	if err := c.Replicate(ctx, stmt, replicators.AckSync); err != nil {
		t.Fatal(err)
	}
	got := f.replicated[0]
	if got.Epoch != 3 || len(got.Mutations) != 2 || got.Mutations[1].Op != engines.OpDelete || string(got.Mutations[0].Value) != "vk" || got.Mutations[1].LSN != 14 {
		t.Fatalf("replicated %+v", got)
	}
	// A malformed statement is refused before it travels.
	if err := c.Replicate(ctx, replicators.Statement{Epoch: 1}, replicators.AckAsync); !errors.Is(err, replicators.ErrInvalidArgument) {
		t.Fatalf("replicate an empty statement: %v", err)
	}
}

// Every sentinel of the contract survives the trip, with its message, and
// none of them reads as a transport failure; a plain error matches none.
func TestReplicatorErrorsSurviveRoundTrip(t *testing.T) {
	ctx := context.Background()
	sentinels := []error{replicators.ErrInvalidArgument, replicators.ErrUnavailable, replicators.ErrTooFewInSync, replicators.ErrFenced, replicators.ErrNotLeader, replicators.ErrClosed}
	// ErrTooFewInSync is an ErrUnavailable too.
	matches := func(sentinel, other error) bool {
		return other == sentinel || (sentinel == replicators.ErrTooFewInSync && other == replicators.ErrUnavailable)
	}
	for _, sentinel := range sentinels {
		f := &fakeReplicator{err: fmt.Errorf("partition 3: trouble: %w", sentinel)}
		c := openedShim(t, openFake(f))
		msg := f.err.Error()
		_, errLead := c.Lead(ctx, 1, 0)
		_, errEpoch := c.EpochAt(ctx, 1)
		_, errStatus := c.Status(ctx)
		for call, err := range map[string]error{
			"lead": errLead, "set-peers": c.SetPeers(ctx, nil), "follow": c.Follow(ctx, 1, "x"),
			"replicate": c.Replicate(ctx, replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{put("k", 1)}}, replicators.AckAsync),
			"applied":   c.Applied(ctx, 1), "epoch-at": errEpoch, "restored": c.Restored(ctx, 1, 1), "status": errStatus,
		} {
			if err == nil || err.Error() != msg || IsTransport(err) {
				t.Errorf("%v: %s: %v (transport %v), want %q", sentinel, call, err, IsTransport(err), msg)
			}
			for _, other := range sentinels {
				if errors.Is(err, other) != matches(sentinel, other) {
					t.Errorf("%v: %s: errors.Is(err, %v) = %v", sentinel, call, other, !matches(sentinel, other))
				}
			}
		}
	}

	// A replicator's own gRPC error (from a peer, say) travels by the table
	// only: a peer's Unavailable is not the plugin being unreachable.
	peerErr := status.Error(codes.Unavailable, "peer 127.0.0.1:5: connection refused")
	for _, tc := range []struct {
		err      error
		sentinel error
	}{
		{fmt.Errorf("ship to follower: %w", peerErr), nil},
		{fmt.Errorf("acks not met: %w (last: %w)", replicators.ErrUnavailable, peerErr), replicators.ErrUnavailable},
		{errors.New("replicator on fire"), nil},
	} {
		c := openedShim(t, openFake(&fakeReplicator{err: tc.err}))
		err := c.Follow(ctx, 1, "x")
		if err == nil || err.Error() != tc.err.Error() || IsTransport(err) {
			t.Errorf("%v: got %v (transport %v)", tc.err, err, IsTransport(err))
		}
		for _, s := range sentinels {
			if errors.Is(err, s) != (s == tc.sentinel) {
				t.Errorf("%v: errors.Is(err, %v) = %v", tc.err, s, !(s == tc.sentinel))
			}
		}
	}
}

func TestReplicatorDeliveriesStreamInOrder(t *testing.T) {
	const n = 1000
	f := &fakeReplicator{}
	var want []replicators.Statement
	for i := range uint64(n) {
		st := replicators.Statement{Epoch: 1 + i/500, Mutations: []engines.Mutation{put(fmt.Sprint("k", i), 2*i+1), {Op: engines.OpDelete, Key: []byte("d"), LSN: 2*i + 2}}}
		want = append(want, st)
		f.deliveries = append(f.deliveries, fakeItem{d: replicators.Delivery{Statement: st}})
	}
	f.deliveries = append(f.deliveries,
		fakeItem{err: fmt.Errorf("leader stream broke: %w", replicators.ErrUnavailable)},
		fakeItem{d: replicators.Delivery{Rebuild: true}})
	c := openedShim(t, openFake(f))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	i := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d, err := range c.Deliveries(ctx) {
			switch {
			case i < n:
				if err != nil || !reflect.DeepEqual(d.Statement, want[i]) || d.Rebuild {
					t.Errorf("delivery %d: %+v, %v; want %+v", i, d, err, want[i])
					return
				}
			case i == n:
				if !errors.Is(err, replicators.ErrUnavailable) || !strings.Contains(err.Error(), "leader stream broke") {
					t.Errorf("error item: %v", err)
				}
			case i == n+1:
				if err != nil || !d.Rebuild || len(d.Statement.Mutations) != 0 {
					t.Errorf("rebuild item: %+v, %v", d, err)
				}
				cancel() // the stream ends when ctx ends
			default:
				t.Errorf("item %d after the end: %+v, %v", i, d, err)
			}
			i++
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("deliveries did not end after its context was canceled")
	}
	if i != n+2 {
		t.Fatalf("%d items, want %d", i, n+2)
	}
}

func TestReplicatorReplicateConcurrent(t *testing.T) {
	f := &fakeReplicator{}
	c := openedShim(t, openFake(f))
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				lsn := uint64(g*50 + i + 1)
				key := "ok"
				if i%5 == 0 {
					key = "fenced"
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.Replicate(ctx, replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{put(key, lsn)}}, replicators.AckSemiSync)
				cancel()
				if key == "fenced" {
					if !errors.Is(err, replicators.ErrFenced) || !strings.Contains(err.Error(), fmt.Sprintf("lsn %d:", lsn)) {
						t.Errorf("lsn %d: %v, want its own ErrFenced", lsn, err)
					}
				} else if err != nil {
					t.Errorf("lsn %d: %v", lsn, err)
				}
			}
		})
	}
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.replicated) != 32*50 {
		t.Fatalf("%d statements reached the replicator, want %d", len(f.replicated), 32*50)
	}
	seen := map[uint64]bool{}
	for i, st := range f.replicated {
		seen[st.First()] = true
		if !f.deadlines[i] {
			t.Fatalf("lsn %d: the replicator's ctx had no deadline", st.First())
		}
	}
	if len(seen) != 32*50 {
		t.Fatalf("%d distinct lsns, want %d", len(seen), 32*50)
	}
}

// The caller's deadline reaches the plugin's replicator, and a call that ends
// with it is ErrUnavailable (the write may still commit), not a transport failure.
func TestReplicatorReplicateDeadline(t *testing.T) {
	c := openedShim(t, openFake(&fakeReplicator{}))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Replicate(ctx, replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{put("wait", 1)}}, replicators.AckSemiSync)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("replicate took %v with a 200ms deadline", elapsed)
	}
	if !errors.Is(err, replicators.ErrUnavailable) || IsTransport(err) {
		t.Fatalf("replicate past its deadline: %v (transport %v), want ErrUnavailable", err, IsTransport(err))
	}
	cctx, ccancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, ccancel)
	err = c.Replicate(cctx, replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{put("wait", 2)}}, replicators.AckSemiSync)
	if !errors.Is(err, replicators.ErrUnavailable) || IsTransport(err) {
		t.Fatalf("replicate canceled: %v (transport %v), want ErrUnavailable", err, IsTransport(err))
	}
}

func TestReplicatorServerRefusesUnopenedAndReopen(t *testing.T) {
	ctx := context.Background()
	c := startReplicatorShim(t, none.Open)
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "not open") {
		t.Fatalf("status before open: %v", err)
	}
	err := c.Open(ctx, replicators.Options{Dir: t.TempDir(), Params: map[string]string{"ack": "sync"}})
	if !errors.Is(err, replicators.ErrInvalidArgument) || !strings.Contains(err.Error(), `option ack "sync"`) {
		t.Fatalf("open with ack sync: %v", err)
	}
	if err := c.Open(ctx, replicators.Options{Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := c.Open(ctx, replicators.Options{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "already open") {
		t.Fatalf("second open: %v", err)
	}
	if c.Addr() != "" {
		t.Fatalf("none's addr %q", c.Addr())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, replicators.ErrClosed) {
		t.Fatalf("status after close: %v", err)
	}
}

// countingReplicates counts the Replicates streams a replicator server got,
// or answers UNIMPLEMENTED for them (a plugin built before the method).
type countingReplicates struct {
	replicatorv1.ReplicatorServer
	unimplemented bool
	streams       atomic.Int32
}

func (c *countingReplicates) Replicates(stream replicatorv1.Replicator_ReplicatesServer) error {
	if c.unimplemented {
		return status.Error(codes.Unimplemented, "unknown method Replicates")
	}
	c.streams.Add(1)
	return c.ReplicatorServer.Replicates(stream)
}

func TestReplicateTravelsOverOneStreamOrUnaryToAnOlderPlugin(t *testing.T) {
	for _, older := range []bool{false, true} {
		f := &fakeReplicator{}
		srv := &countingReplicates{ReplicatorServer: newReplicatorServer(openFake(f), nil), unimplemented: older}
		conn := serveLoopback(t, func(gs *grpc.Server) { replicatorv1.RegisterReplicatorServer(gs, srv) })
		c := NewReplicatorClient(conn)
		ctx := context.Background()
		if err := c.Open(ctx, replicators.Options{Dir: t.TempDir(), Listen: "127.0.0.1:0"}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				st := replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{{Op: engines.OpPut, Key: []byte(fmt.Sprint("k", g)), Value: []byte("v"), LSN: uint64(g + 1)}}}
				if err := c.Replicate(ctx, st, replicators.AckDefault); err != nil {
					t.Errorf("replicate %d (older plugin %v): %v", g, older, err)
				}
			})
		}
		wg.Wait()
		// An error maps to its sentinel either way.
		st := replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{{Op: engines.OpPut, Key: []byte("fenced"), Value: []byte("v"), LSN: 99}}}
		if err := c.Replicate(ctx, st, replicators.AckDefault); !errors.Is(err, replicators.ErrFenced) {
			t.Fatalf("replicate of a fenced leader (older plugin %v): %v", older, err)
		}
		f.mu.Lock()
		got := len(f.replicated)
		f.mu.Unlock()
		if got != 17 {
			t.Fatalf("the replicator got %d statements, want 17 (older plugin %v)", got, older)
		}
		switch n := srv.streams.Load(); {
		case older && !c.mux.unary.Load():
			t.Fatal("a plugin without Replicates did not switch the client to unary calls")
		case !older && n != 1:
			t.Fatalf("17 statements took %d Replicates streams, want 1", n)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

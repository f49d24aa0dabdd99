package reshard

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/ring"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(zktest.M{M: m}) }

// memNodes are partitions in memory with the nodes' reshard rules: a key
// is imported only where the new layout places it, a fenced source refuses
// writes of its moving keys, and prune deletes what the current layout
// places elsewhere. Every leader has epoch 1.
type memNodes struct {
	t     *testing.T
	mu    sync.Mutex
	parts []map[string]memRow
	lsn   []uint64
	to    Locator // the new layout, for import and prune
	// refuse is how many imports are refused first, as a target that has
	// not seen the recorded move yet refuses them.
	refuse atomic.Int32
	// broken is how many snapshots break after their first chunk, as when
	// the source's leader dies.
	broken atomic.Int32
}

type memRow struct {
	value []byte
	lsn   uint64
}

func (n *memNodes) put(p int, key, value string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lsn[p]++
	n.parts[p][key] = memRow{[]byte(value), n.lsn[p]}
}

func (n *memNodes) del(p int, key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lsn[p]++
	delete(n.parts[p], key)
}

func (n *memNodes) Snapshot(ctx context.Context, p int, since uint64, each func(lsn, epoch uint64, chunk []Row) error) error {
	n.mu.Lock()
	lsn := n.lsn[p]
	var rows []Row
	for _, k := range slices.Sorted(maps.Keys(n.parts[p])) {
		r := n.parts[p][k]
		row := Row{Key: []byte(k), LSN: r.lsn, HasValue: r.lsn > since}
		if row.HasValue {
			row.Value = r.value
		}
		rows = append(rows, row)
	}
	n.mu.Unlock()
	for len(rows) > 0 { // chunks of 7, to cross chunk edges
		c := rows[:min(7, len(rows))]
		rows = rows[len(c):]
		if err := each(lsn, 1, c); err != nil {
			return err
		}
		if n.broken.Add(-1) >= 0 {
			return status.Errorf(codes.Unavailable, "partition %d: error reading from server: EOF", p)
		}
	}
	return nil
}

func (n *memNodes) Import(ctx context.Context, p int, version uint64, rows []*nodev1.ImportRow) error {
	if n.refuse.Add(-1) >= 0 {
		return fmt.Errorf("node of partition %d: %w", p, status.Errorf(codes.FailedPrecondition, "no move to layout v%d is running here", version))
	}
	for _, r := range rows {
		out := []int{0}
		if err := n.to.Locate(ctx, [][]byte{r.GetKey()}, out); err != nil {
			return err
		}
		if out[0] != p {
			n.t.Errorf("import of %q into partition %d: the new layout places it in %d", r.GetKey(), p, out[0])
		}
		if r.GetDelete() {
			n.del(p, string(r.GetKey()))
		} else {
			n.put(p, string(r.GetKey()), string(r.GetValue()))
		}
	}
	return nil
}

func (n *memNodes) Prune(ctx context.Context, p int, version uint64) (int64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var pruned int64
	for k := range n.parts[p] {
		if partition.Reserved([]byte(k)) {
			continue
		}
		out := []int{0}
		if err := n.to.Locate(ctx, [][]byte{[]byte(k)}, out); err != nil {
			return 0, err
		}
		if out[0] != p {
			delete(n.parts[p], k)
			pruned++
		}
	}
	return pruned, nil
}

func (n *memNodes) LeaderEpoch(int) uint64 { return 1 }

func openLayout(ctx context.Context, m coord.Meta) (Locator, func(), error) {
	open := map[string]partitioners.OpenFunc{"hash": hash.Open, "ring": ring.Open}[m.Partitioner.Plugin]
	if open == nil {
		return nil, nil, fmt.Errorf("no partitioner %q", m.Partitioner.Plugin)
	}
	p, err := open(ctx, hclog.NewNullLogger())
	if err != nil {
		return nil, nil, err
	}
	if err := p.Configure(ctx, m.Partitions, m.Partitioner.Options); err != nil {
		return nil, nil, err
	}
	return p, func() { p.Close() }, nil
}

func locate(t *testing.T, l Locator, key string) int {
	t.Helper()
	out := []int{0}
	if err := l.Locate(context.Background(), [][]byte{[]byte(key)}, out); err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// TestMoveCopiesCatchesUpAndPrunes moves 2 hash partitions to 3 ring
// partitions, and 3 hash partitions to 2 (retiring one), while keys are
// written, overwritten and deleted between the passes and two snapshot
// streams break (read again from the source's leader), and checks that
// every key ends, with its last value, on its new owner only (a retired
// partition holds none), and that the internal rows stay where they were.
func TestMoveCopiesCatchesUpAndPrunes(t *testing.T) {
	hash := coord.PluginMeta{Plugin: "hash"}
	t.Run("grow", func(t *testing.T) {
		testMove(t, coord.Meta{Partitions: 2, Partitioner: hash},
			coord.Meta{Partitions: 3, Partitioner: coord.PluginMeta{Plugin: "ring", Options: map[string]string{"vnodes": "32"}}})
	})
	t.Run("shrink", func(t *testing.T) {
		testMove(t, coord.Meta{Partitions: 3, Partitioner: hash}, coord.Meta{Partitions: 2, Partitioner: hash})
	})
}

func testMove(t *testing.T, from, to coord.Meta) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := connectCluster(t, "reshard-move-", from)
	fromLoc, closeFrom, _ := openLayout(ctx, from)
	defer closeFrom()
	toLoc, closeTo, _ := openLayout(ctx, to)
	defer closeTo()

	n := max(from.Partitions, to.Partitions)
	nodes := &memNodes{t: t, parts: make([]map[string]memRow, n), lsn: make([]uint64, n), to: toLoc}
	for p := range n {
		nodes.parts[p] = map[string]memRow{}
	}
	nodes.refuse.Store(3) // the first imports come before the targets saw the move: tried again
	nodes.broken.Store(2) // two snapshots break (their leader died): read again
	want := map[string]string{}
	write := func(key, value string) {
		nodes.put(locate(t, fromLoc, key), key, value)
		want[key] = value
	}
	for i := range 300 {
		write(fmt.Sprintf("k%03d", i), "v1")
	}
	for p := range from.Partitions {
		nodes.put(p, partition.ReservedPrefix+fmt.Sprint("client-", p), "request table")
	}

	// Between the passes: overwrite some keys, delete some, add some.
	var moved []string
	for i := range 300 {
		k := fmt.Sprintf("k%03d", i)
		if locate(t, fromLoc, k) != locate(t, toLoc, k) {
			moved = append(moved, k)
		}
	}
	if len(moved) < 50 {
		t.Fatalf("only %d of 300 keys move: the test needs a move", len(moved))
	}
	var lagMu sync.Mutex
	var lag uint64 // the catch-up's largest lag reported
	mover := &Mover{Client: client, Nodes: nodes, Open: openLayout, BatchRows: 16, Progress: func(p Progress) {
		lagMu.Lock()
		defer lagMu.Unlock()
		if p.Pass == "catch-up" {
			lag = max(lag, p.Lag)
		}
	}}
	// The writes the first pass misses happen when the state turns fenced,
	// before the sources acknowledge, as writes in flight would.
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for {
			r, ok, err := coord.ReadReshard(ctx, client)
			if err != nil || ctx.Err() != nil {
				return
			}
			if ok && r.State == coord.ReshardFenced {
				break
			}
			time.Sleep(5 * time.Millisecond) // polling ZooKeeper, bounded by ctx
		}
		for i, k := range moved[:30] {
			switch i % 3 {
			case 0:
				write(k, "v2")
			case 1:
				nodes.del(locate(t, fromLoc, k), k)
				delete(want, k)
			case 2:
				write(k+"-new", "v3")
			}
		}
		for p := range from.Partitions {
			if err := coord.AckFence(ctx, client, p, 1); err != nil {
				t.Error(err)
			}
		}
	}()
	rep, err := mover.Run(ctx, to)
	<-acked
	if err != nil {
		t.Fatal(err)
	}
	if rep.Moved != int64(len(moved)) || rep.Deleted != 10 || rep.CaughtUp < 10 {
		t.Fatalf("report %+v: want %d moved, 10 deleted, at least 10 caught up", rep, len(moved))
	}
	if lag < 30 {
		t.Errorf("catch-up lag reported %d statements; the sources took at least 30 since the first pass", lag)
	}
	if m, _ := coord.ReadMeta(ctx, client); !coord.SameLayout(m, to) || m.Version != 2 {
		t.Fatalf("meta after the move: %+v", m)
	}
	if _, ok, _ := coord.ReadReshard(ctx, client); ok {
		t.Fatal("the record is left after the move")
	}
	got := map[string]string{}
	for p, rows := range nodes.parts {
		for k, r := range rows {
			if partition.Reserved([]byte(k)) {
				if k != partition.ReservedPrefix+fmt.Sprint("client-", p) {
					t.Errorf("internal row %q in partition %d", k, p)
				}
				continue
			}
			if q := locate(t, toLoc, k); q != p {
				t.Errorf("%q left in partition %d, owner %d", k, p, q)
			}
			got[k] = string(r.value)
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("after the move %d keys, want %d", len(got), len(want))
	}
}

// TestMoveRefusesWhatIsNotBuilt: no partitions and a move to the same
// layout are refused by name; a second move while one is recorded too.
func TestMoveRefusesWhatIsNotBuilt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := coord.Meta{Partitions: 2, Partitioner: coord.PluginMeta{Plugin: "hash"}}
	client := connectCluster(t, "reshard-refuse-", from)
	m := &Mover{Client: client, Open: openLayout}
	for _, tc := range []struct {
		to   coord.Meta
		want string
	}{
		{coord.Meta{Partitions: 0, Partitioner: from.Partitioner}, "allowed values are 1 or more"},
		{from, "nothing to move"},
	} {
		if _, err := m.Run(ctx, tc.to); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) = %v, want …%s…", tc.to, err, tc.want)
		}
	}
	if _, err := coord.BeginReshard(ctx, client, coord.Meta{Partitions: 3, Partitioner: from.Partitioner}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Run(ctx, coord.Meta{Partitions: 4, Partitioner: from.Partitioner}); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second move: %v", err)
	}
	if err := Abort(ctx, client); err != nil {
		t.Fatal(err)
	}
}

// TestMoveClearsStaleCopiesAndResumesFenced: copies an aborted move left at
// would-be owners do not show after a later move (their keys were deleted
// since), and a move resumed in its fenced state copies every moving row
// again and deletes stale copies.
func TestMoveClearsStaleCopiesAndResumesFenced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	from := coord.Meta{Partitions: 2, Partitioner: coord.PluginMeta{Plugin: "hash"}}
	to := coord.Meta{Partitions: 3, Partitioner: coord.PluginMeta{Plugin: "hash"}}
	client := connectCluster(t, "reshard-stale-", from)
	fromLoc, closeFrom, _ := openLayout(ctx, from)
	defer closeFrom()
	toLoc, closeTo, _ := openLayout(ctx, to)
	defer closeTo()
	for _, resumeFenced := range []bool{false, true} {
		n := max(from.Partitions, to.Partitions)
		nodes := &memNodes{t: t, parts: make([]map[string]memRow, n), lsn: make([]uint64, n), to: toLoc}
		for p := range n {
			nodes.parts[p] = map[string]memRow{}
		}
		want := map[string]string{}
		stale := 0
		for i := range 200 {
			k := fmt.Sprintf("s%03d", i)
			f, q := locate(t, fromLoc, k), locate(t, toLoc, k)
			if i%2 == 0 && f != q {
				nodes.put(q, k, "stale copy") // left by an aborted move; deleted at its source since
				stale++
				continue
			}
			nodes.put(f, k, "v")
			want[k] = "v"
		}
		if _, err := coord.BeginReshard(ctx, client, to); err != nil {
			t.Fatal(err)
		}
		if resumeFenced {
			if err := coord.SetReshardState(ctx, client, coord.ReshardCopying, coord.ReshardFenced); err != nil {
				t.Fatal(err)
			}
		}
		acks := make(chan struct{})
		go func() {
			defer close(acks)
			for ctx.Err() == nil {
				if r, ok, _ := coord.ReadReshard(ctx, client); ok && r.State == coord.ReshardFenced {
					break
				}
				time.Sleep(5 * time.Millisecond) // polling ZooKeeper, bounded by ctx
			}
			for p := range 2 {
				_ = coord.AckFence(ctx, client, p, 1)
			}
		}()
		rep, err := (&Mover{Client: client, Nodes: nodes, Open: openLayout}).Run(ctx, coord.Meta{})
		<-acks
		if err != nil {
			t.Fatal(err)
		}
		if rep.Deleted != int64(stale) {
			t.Errorf("resumed fenced %v: deleted %d stale copies, want %d (%+v)", resumeFenced, rep.Deleted, stale, rep)
		}
		got := map[string]string{}
		for p, rows := range nodes.parts {
			for k, r := range rows {
				if q := locate(t, toLoc, k); q != p {
					t.Errorf("%q left in partition %d, owner %d", k, p, q)
				}
				got[k] = string(r.value)
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("resumed fenced %v: %d keys after the move, want %d", resumeFenced, len(got), len(want))
		}
		// Back to 2 partitions for the next round: a new cluster layout.
		if _, err := client.Conn().Set(coord.PathsOf(client.Config()).Meta(), []byte(`{"partitions":2,"partitioner":{"plugin":"hash"}}`), -1); err != nil {
			t.Fatal(err)
		}
	}
}

// connectCluster returns a client of a new cluster on the shared ZooKeeper
// whose metadata is from.
func connectCluster(t *testing.T, name string, from coord.Meta) *coord.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := coord.Connect(ctx, coord.Config{Servers: zktest.Shared(t).Servers(), SessionTimeout: 2 * time.Second, Root: "/plugdb-test",
		Cluster: name + fmt.Sprint(time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	if _, err := coord.EnsureMeta(ctx, client, from); err != nil {
		t.Fatal(err)
	}
	return client
}

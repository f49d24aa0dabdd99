package statement

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/internal/testutil"
	statementv1 "github.com/plugdb/plugdb/proto/plugdb/statement/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/statement/wal"
)

// host is a test host: a replicator, an engine, and the loop that applies
// deliveries the way core/node does.
type host struct {
	t    testing.TB
	dir  string
	r    *Replicator
	eng  engines.Engine
	stop context.CancelFunc
	done chan struct{}
	mu   sync.Mutex
	next uint64 // leader: last LSN assigned
}

func newHost(t testing.TB, params map[string]string) *host {
	t.Helper()
	h := &host{t: t, dir: t.TempDir()}
	eng, err := memory.Open(context.Background(), engines.Options{Dir: t.TempDir(), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	h.open(params)
	t.Cleanup(h.close)
	return h
}

func (h *host) open(params map[string]string) {
	h.t.Helper()
	r, err := open(context.Background(), replicators.Options{Dir: h.dir, Listen: "127.0.0.1:0", Params: params,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{h.t}})})
	if err != nil {
		h.t.Fatal(err)
	}
	h.r = r
	ctx, stop := context.WithCancel(context.Background())
	h.stop, h.done = stop, make(chan struct{})
	go func() {
		defer close(h.done)
		for d := range r.Deliveries(ctx) {
			if d.Rebuild {
				continue // tests that need a rebuild do it by hand
			}
			h.applyDelivered(d.Statement)
		}
	}()
}

func (h *host) applyDelivered(st replicators.Statement) {
	applied, _ := h.eng.AppliedLSN(context.Background())
	var batch []engines.Mutation
	for _, m := range st.Mutations {
		if m.LSN > applied {
			batch = append(batch, m)
		}
	}
	if len(batch) == 0 {
		return
	}
	if err := h.eng.Apply(context.Background(), batch); err != nil {
		h.t.Error(err)
		return
	}
	_ = h.r.Applied(context.Background(), st.Last())
}

func (h *host) close() {
	if h.r == nil {
		return
	}
	h.stop()
	<-h.done
	h.r.Close()
	h.r = nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// lead makes h the leader of epoch with followers fs, all in sync.
func (h *host) lead(epoch uint64, fs ...*host) {
	h.t.Helper()
	applied, _ := h.eng.AppliedLSN(context.Background())
	end, err := h.r.Lead(context.Background(), epoch, applied)
	if err != nil {
		h.t.Fatal(err)
	}
	testutil.WaitFor(h.t, 10*time.Second, func() bool { a, _ := h.eng.AppliedLSN(context.Background()); return a >= end }, "the leader applies its log")
	h.next = end
	var peers []replicators.Peer
	for _, f := range fs {
		if err := f.r.Follow(context.Background(), epoch, h.r.Addr()); err != nil {
			h.t.Fatal(err)
		}
		peers = append(peers, replicators.Peer{Addr: f.r.Addr(), ISR: true})
	}
	if err := h.r.SetPeers(context.Background(), peers); err != nil {
		h.t.Fatal(err)
	}
}

// write replicates one put with the next LSN and applies it once committed.
func (h *host) write(ctx context.Context, epoch uint64, key, value string, ack replicators.Ack) error {
	h.mu.Lock()
	h.next++
	m := engines.Mutation{Op: engines.OpPut, Key: []byte(key), Value: []byte(value), LSN: h.next}
	err := h.r.Replicate(ctx, replicators.Statement{Epoch: epoch, Mutations: []engines.Mutation{m}}, ack)
	if err == nil {
		err = h.eng.Apply(ctx, []engines.Mutation{m})
		_ = h.r.Applied(ctx, m.LSN)
	}
	h.mu.Unlock()
	return err
}

// digest hashes an engine's rows in key order.
func digest(t *testing.T, eng engines.Engine) string {
	t.Helper()
	h := sha256.New()
	n := 0
	for row, err := range engines.Scan(context.Background(), eng, engines.ScanRange{}) {
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%q=%q@%d\n", row.Key, row.Value, row.LSN)
		n++
	}
	return fmt.Sprintf("%d rows %x", n, h.Sum(nil)[:8])
}

func TestLeaderFollowerSameState(t *testing.T) {
	l, f := newHost(t, nil), newHost(t, nil)
	l.lead(1, f)
	ctx := context.Background()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		st, _ := l.r.Status(ctx)
		return len(st.Followers) == 1 && st.Followers[0].Connected
	}, "the follower is connected")
	for i := range 500 {
		if err := l.write(ctx, 1, fmt.Sprintf("k%03d", i%200), fmt.Sprint(i), replicators.AckSemiSync); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { a, _ := f.eng.AppliedLSN(ctx); return a == 500 }, "the follower applies everything")
	if a, b := digest(t, l.eng), digest(t, f.eng); a != b {
		t.Fatalf("leader %s, follower %s", a, b)
	}
	st, _ := l.r.Status(ctx)
	if fs := st.Followers[0]; fs.PersistedLSN != 500 || fs.LagStatements != 0 || !fs.InSync {
		t.Fatalf("follower status %+v", fs)
	}
	// Both logs fsynced (a group per fsync, so at least one and at most
	// one per write), and Status counts each fsync's latency.
	fst, _ := f.r.Status(ctx)
	for name, s := range map[string]replicators.Status{"leader": st, "follower": fst} {
		l := s.LogSync
		if l.Count == 0 || l.Count > 500 || l.Sum <= 0 || len(l.Counts) != len(replicators.SyncBounds) || l.Counts[len(l.Counts)-1] > l.Count {
			t.Errorf("%s: log fsyncs %+v", name, l)
		}
	}
}

func TestSemiSyncWithoutFollowerIsUnavailable(t *testing.T) {
	l := newHost(t, map[string]string{"ack_timeout": "200ms"})
	l.lead(1)
	ctx := context.Background()
	err := l.write(ctx, 1, "a", "1", replicators.AckDefault)
	if !errors.Is(err, replicators.ErrUnavailable) {
		t.Fatalf("semi-sync write without a follower: %v", err)
	}
	if _, err := l.eng.Get(ctx, []byte("a")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatal("an unacknowledged write was applied")
	}
	if err := l.write(ctx, 1, "b", "1", replicators.AckAsync); err == nil {
		t.Fatal("an async write after an uncommitted one must not succeed out of order")
	}
}

func TestFallbackToAsyncIsShown(t *testing.T) {
	l := newHost(t, map[string]string{"ack_timeout": "100ms", "fallback": "async"})
	l.lead(1)
	ctx := context.Background()
	if err := l.write(ctx, 1, "a", "1", replicators.AckDefault); err != nil {
		t.Fatalf("write with fallback: %v", err)
	}
	st, _ := l.r.Status(ctx)
	if !st.Fallback {
		t.Fatal("status does not show the fallback")
	}
}

func TestOlderEpochIsFenced(t *testing.T) {
	l, f := newHost(t, nil), newHost(t, map[string]string{})
	l.lead(1, f)
	ctx := context.Background()
	if err := l.write(ctx, 1, "a", "1", replicators.AckSemiSync); err != nil {
		t.Fatal(err)
	}
	// The follower learns of epoch 2 (another replica was elected).
	if err := f.r.Follow(ctx, 2, ""); err != nil {
		t.Fatal(err)
	}
	// Reconnect: the old leader's next write is refused.
	f.r.mu.Lock()
	f.r.inbound++
	f.r.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := l.write(cctx, 1, "b", "2", replicators.AckSemiSync)
	if !errors.Is(err, replicators.ErrFenced) {
		t.Fatalf("write by a deposed leader: %v", err)
	}
	if _, err := f.eng.Get(ctx, []byte("b")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatal("the deposed leader's write reached the follower's engine")
	}
}

func TestNewLeaderTruncatesUnacknowledgedSuffix(t *testing.T) {
	// The writes b acknowledges get the default ack_timeout: on a loaded
	// machine, under -race, a round trip with b's fsync can take longer than
	// the short deadline the unacknowledged writes are given below.
	a, b := newHost(t, nil), newHost(t, nil)
	ctx := context.Background()
	a.lead(1, b)
	testutil.WaitFor(t, 10*time.Second, func() bool {
		st, _ := a.r.Status(ctx)
		return len(st.Followers) == 1 && st.Followers[0].Connected
	}, "b is connected")
	for i := range 10 {
		if err := a.write(ctx, 1, fmt.Sprint("k", i), "a", replicators.AckSemiSync); err != nil {
			t.Fatal(err)
		}
	}
	// a loses its follower, then logs writes no follower acknowledges.
	if err := a.r.SetPeers(ctx, nil); err != nil {
		t.Fatal(err)
	}
	b.r.Follow(ctx, 2, "")
	for i := range 3 {
		// Logged, never acknowledged: a has no follower. Unavailable, not
		// fenced: b, who knows epoch 2, is no longer a's follower.
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := a.write(wctx, 1, fmt.Sprint("lost", i), "x", replicators.AckSemiSync)
		cancel()
		if !errors.Is(err, replicators.ErrUnavailable) {
			t.Fatalf("write lost%d without a follower: %v, want unavailable", i, err)
		}
	}
	if a.r.log.Last() != 13 {
		t.Fatalf("a's log ends at %d, want 13", a.r.log.Last())
	}
	// b leads epoch 2 and writes; a follows it.
	a.r.Follow(ctx, 2, b.r.Addr())
	b.lead(2, a)
	if err := b.write(ctx, 2, "new", "b", replicators.AckSemiSync); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { x, _ := a.eng.AppliedLSN(ctx); return x == 11 }, "a applies b's write")
	if a.r.log.Last() != 11 {
		t.Fatalf("a's log ends at %d, want 11: the unacknowledged suffix was not truncated", a.r.log.Last())
	}
	for i := range 3 {
		if _, err := a.eng.Get(ctx, []byte(fmt.Sprint("lost", i))); !errors.Is(err, engines.ErrNotFound) {
			t.Fatalf("unacknowledged write lost%d reappeared: %v", i, err)
		}
	}
	if x, y := digest(t, a.eng), digest(t, b.eng); x != y {
		t.Fatalf("a %s, b %s", x, y)
	}
}

func TestFollowerRestartResumes(t *testing.T) {
	l, f := newHost(t, map[string]string{"ack": "async"}), newHost(t, nil)
	l.lead(1, f)
	ctx := context.Background()
	for i := range 100 {
		if err := l.write(ctx, 1, fmt.Sprint("k", i), "v", replicators.AckSemiSync); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { a, _ := f.eng.AppliedLSN(ctx); return a == 100 }, "the follower applies")
	f.close()
	for i := range 100 { // async: the follower is down
		if err := l.write(ctx, 1, fmt.Sprint("m", i), "v", replicators.AckAsync); err != nil {
			t.Fatal(err)
		}
	}
	f.open(nil)
	if err := f.r.Follow(ctx, 1, l.r.Addr()); err != nil {
		t.Fatal(err)
	}
	// It listens on a new port, which the leader learns (from ZooKeeper, in a cluster).
	if err := l.r.SetPeers(ctx, []replicators.Peer{{Addr: f.r.Addr()}}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { a, _ := f.eng.AppliedLSN(ctx); return a == 200 }, "the restarted follower catches up")
	if a, b := digest(t, l.eng), digest(t, f.eng); a != b {
		t.Fatalf("leader %s, follower %s", a, b)
	}
}

// TestDuplicatedAndReorderedDeliveries feeds a follower a long mixed run
// whose messages are duplicated and reordered, and compares its contents
// with the leader's.
func TestDuplicatedAndReorderedDeliveries(t *testing.T) {
	l, f := newHost(t, map[string]string{"ack": "async"}), newHost(t, nil)
	ctx := context.Background()
	l.lead(1) // no followers: the test ships by hand
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		key := fmt.Sprintf("k%03d", rng.IntN(300))
		l.mu.Lock()
		l.next++
		m := engines.Mutation{Op: engines.OpPut, Key: []byte(key), Value: fmt.Appendf(nil, "v%d", i), LSN: l.next}
		if rng.IntN(4) == 0 {
			m.Op, m.Value = engines.OpDelete, nil
		}
		if err := l.r.Replicate(ctx, replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{m}}, replicators.AckAsync); err != nil {
			t.Fatal(err)
		}
		if err := l.eng.Apply(ctx, []engines.Mutation{m}); err != nil {
			t.Fatal(err)
		}
		l.mu.Unlock()
	}
	recs, err := l.r.log.Read(1, 1<<30)
	if err != nil || len(recs) != 3000 {
		t.Fatalf("read %d records: %v", len(recs), err)
	}
	// Messages of 1..8 entries, each sent once or twice, shuffled within
	// windows of 16 messages (as a retrying, reordering network would).
	var msgs []*statementv1.Append
	for i := 0; i < len(recs); {
		n := min(1+rng.IntN(8), len(recs)-i)
		var es []*statementv1.Entry
		for _, r := range recs[i : i+n] {
			es = append(es, toEntry(r))
		}
		i += n
		m := &statementv1.Append{Entries: es, Commit: 3000}
		msgs = append(msgs, m)
		if rng.IntN(3) == 0 {
			msgs = append(msgs, m)
		}
	}
	for w := 0; w < len(msgs); w += 16 {
		win := msgs[w:min(w+16, len(msgs))]
		rng.Shuffle(len(win), func(i, j int) { win[i], win[j] = win[j], win[i] })
	}
	f.r.Follow(ctx, 1, l.r.Addr())
	ps := &peerServer{r: f.r}
	held := map[uint64]wal.Record{}
	f.r.mu.Lock()
	in := inStream{id: f.r.inbound, epoch: 1}
	f.r.mu.Unlock()
	for _, m := range msgs {
		if _, err := ps.append(in, []*statementv1.Append{m}, held); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { a, _ := f.eng.AppliedLSN(ctx); return a == 3000 }, "the follower applies all")
	if a, b := digest(t, l.eng), digest(t, f.eng); a != b {
		t.Fatalf("leader %s, follower %s", a, b)
	}
}

// shipperOf returns the shipper the leader h runs for follower f.
func shipperOf(t *testing.T, h, f *host) *shipper {
	t.Helper()
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	p := h.r.peers[f.r.Addr()]
	if p == nil || p.ship == nil {
		t.Fatalf("no shipper for %s", f.r.Addr())
	}
	return p.ship
}

// ackStream is a replication stream whose follower acknowledges everything
// once, then closes the stream.
type ackStream struct {
	statementv1.Peer_ShipClient
	acked bool
}

func (s *ackStream) Recv() (*statementv1.ShipResponse, error) {
	if s.acked {
		return nil, io.EOF
	}
	s.acked = true
	return &statementv1.ShipResponse{Msg: &statementv1.ShipResponse_Ack{Ack: &statementv1.Ack{Persisted: 1 << 40, Applied: 1 << 40}}}, nil
}

// TestRemovedFollowerCannotFenceOrAck: once SetPeers removes a follower, its
// shipper has ended, and what its stream still brings (a reply that fences,
// an ack) changes nothing: the leader keeps leading and counts no ack.
func TestRemovedFollowerCannotFenceOrAck(t *testing.T) {
	l, f := newHost(t, map[string]string{"ack": "async"}), newHost(t, nil)
	ctx := context.Background()
	l.lead(1, f)
	testutil.WaitFor(t, 10*time.Second, func() bool {
		st, _ := l.r.Status(ctx)
		return len(st.Followers) == 1 && st.Followers[0].Connected
	}, "the follower is connected")
	sh := shipperOf(t, l, f)
	l.r.mu.Lock()
	removed := l.r.peers[f.r.Addr()]
	l.r.mu.Unlock()
	if err := l.r.SetPeers(ctx, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sh.done:
	default:
		t.Fatal("SetPeers returned before the removed follower's shipper ended")
	}

	// A late reply of the removed follower, which knows a newer epoch.
	_ = l.r.streamErr(status.Error(codes.Aborted, "replica knows epoch 2"), sh)
	// A late ack of the removed follower.
	if err := l.r.readAcks(&ackStream{}, removed, sh); !errors.Is(err, errShipperStopped) {
		t.Fatalf("readAcks of a stopped shipper: %v, want %v", err, errShipperStopped)
	}
	l.r.mu.Lock()
	fenced, persisted := l.r.fencedBy, removed.persisted
	l.r.mu.Unlock()
	if fenced != "" {
		t.Fatalf("the leader was fenced through a removed follower: %s", fenced)
	}
	if persisted >= 1<<40 {
		t.Fatal("a stopped shipper recorded an ack")
	}
	if err := l.write(ctx, 1, "a", "1", replicators.AckAsync); err != nil {
		t.Fatalf("write after the removed follower's late reply: %v", err)
	}
}

// TestNewTermStopsOldShippers: a shipper of an earlier term is stopped when
// the replica leads again, and its late replies do not fence the new term.
func TestNewTermStopsOldShippers(t *testing.T) {
	l, f := newHost(t, map[string]string{"ack": "async"}), newHost(t, nil)
	ctx := context.Background()
	l.lead(1, f)
	old := shipperOf(t, l, f)
	l.lead(2, f)
	if cur := shipperOf(t, l, f); cur == old {
		t.Fatal("leading epoch 2 kept the shipper of epoch 1")
	}
	_ = l.r.streamErr(status.Error(codes.Aborted, "replica knows epoch 3"), old)
	if err := l.write(ctx, 2, "a", "1", replicators.AckAsync); err != nil {
		t.Fatalf("write in epoch 2 after a late reply to epoch 1: %v", err)
	}
	select {
	case <-old.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the shipper of epoch 1 did not end")
	}
}

// TestCloseWaitsForShippers: Close returns after the shippers, which read
// the log it closes, have ended.
func TestCloseWaitsForShippers(t *testing.T) {
	l, f := newHost(t, nil), newHost(t, nil)
	l.lead(1, f)
	sh := shipperOf(t, l, f)
	l.close()
	select {
	case <-sh.done:
	default:
		t.Fatal("Close returned while a shipper still ran")
	}
}

func TestConsecutiveStatementsOfOneEpochAreDeliveredTogether(t *testing.T) {
	var recs []wal.Record
	lsn := uint64(0)
	for _, epoch := range []uint64{1, 1, 1, 2, 2} {
		st := replicators.Statement{Epoch: epoch}
		for range 2 {
			lsn++
			st.Mutations = append(st.Mutations, engines.Mutation{Op: engines.OpPut, Key: []byte(fmt.Sprint("k", lsn)), Value: []byte("v"), LSN: lsn})
		}
		rec, err := encode(st, 1)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	for _, tc := range []struct {
		recs        []wal.Record
		to          uint64
		first, last uint64
		epoch       uint64
		took        int
	}{
		{recs, 10, 1, 6, 1, 3},      // the first epoch's three statements
		{recs[3:], 10, 7, 10, 2, 2}, // the second epoch's two
		{recs, 4, 1, 4, 1, 2},       // only what is committed
		{recs, 1, 1, 2, 1, 1},       // at least one, as before
	} {
		st, n, err := mergeDelivery(tc.recs, tc.to)
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.took || st.First() != tc.first || st.Last() != tc.last || st.Epoch != tc.epoch {
			t.Errorf("to %d: took %d records, lsns %d..%d epoch %d; want %d, %d..%d epoch %d", tc.to, n, st.First(), st.Last(), st.Epoch, tc.took, tc.first, tc.last, tc.epoch)
		}
		if err := st.Check(); err != nil {
			t.Errorf("to %d: %v", tc.to, err)
		}
	}
}

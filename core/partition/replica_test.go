package partition

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/engines/rowfile"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/replicators"
)

// fakeRepl commits what its decide function says; a unit test of the write
// path's ordering, not of replication.
type fakeRepl struct {
	mu      sync.Mutex
	decide  func(st replicators.Statement) error
	seen    []replicators.Statement
	applied uint64
}

func (f *fakeRepl) Replicate(_ context.Context, st replicators.Statement, _ replicators.Ack) error {
	f.mu.Lock()
	f.seen = append(f.seen, st)
	d := f.decide
	f.mu.Unlock()
	if d == nil {
		return nil
	}
	return d(st)
}

func (f *fakeRepl) Applied(_ context.Context, lsn uint64) error {
	f.mu.Lock()
	f.applied = max(f.applied, lsn)
	f.mu.Unlock()
	return nil
}

func (f *fakeRepl) appliedLSN() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func openReplica(t *testing.T, f *fakeRepl) *Partition {
	t.Helper()
	eng, err := memory.Open(context.Background(), engines.Options{Dir: t.TempDir(), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenReplica(context.Background(), 0, eng, f, ReplicaOptions{AnswerAtCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestReplicaRefusesWritesUntilLead(t *testing.T) {
	p := openReplica(t, &fakeRepl{})
	ctx := context.Background()
	if _, err := p.Write(ctx, []Write{put("a", "1", Always)}); !errors.Is(err, ErrNotLeading) {
		t.Fatalf("write before Lead: %v", err)
	}
	if err := p.Lead(3, 0); err != nil {
		t.Fatal(err)
	}
	lsns, err := p.Write(ctx, []Write{put("a", "1", Always)})
	if err != nil || lsns[0] != 1 {
		t.Fatalf("write after Lead: %v %v", lsns, err)
	}
	if err := p.Lead(4, 7); err == nil {
		t.Fatal("Lead after lsn 7 accepted though the engine applied only 1")
	}
}

func TestReplicaAppliesOnlyCommittedAndInOrder(t *testing.T) {
	f := &fakeRepl{}
	p := openReplica(t, f)
	ctx := context.Background()
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	// The first statement times out (not fatal): it is held, invisible.
	f.decide = func(st replicators.Statement) error {
		if st.First() == 1 {
			return fmt.Errorf("no acks: %w", replicators.ErrUnavailable)
		}
		return nil
	}
	if _, err := p.Write(ctx, []Write{put("k", "v1", MustNotExist)}); !errors.Is(err, replicators.ErrUnavailable) {
		t.Fatalf("unacked write: %v", err)
	}
	if _, err := p.Get(ctx, []byte("k")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("a write without its acks is visible: %v", err)
	}
	// Conditions see it anyway (it may still commit), but a failure it
	// decided is not answered as such while it is not committed: nothing
	// is written, the outcome is unavailable.
	if _, err := p.Write(ctx, []Write{put("k", "v2", MustNotExist)}); !errors.Is(err, replicators.ErrUnavailable) || errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("create over a pending create: %v", err)
	}
	// A later commit proves the first one committed: both are applied, in order.
	if _, err := p.Write(ctx, []Write{put("k", "v3", MustExist)}); err != nil {
		t.Fatal(err)
	}
	row, err := p.Get(ctx, []byte("k"))
	if err != nil || string(row.Value) != "v3" || row.LSN != 2 {
		t.Fatalf("k = %q lsn %d, %v; want v3 at lsn 2", row.Value, row.LSN, err)
	}
	// The replicator hears the applied LSN from a checkpoint.
	if _, err := p.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.appliedLSN(); got != 2 {
		t.Fatalf("replicator told applied %d, want 2", got)
	}
}

// A condition that fails on a write still in flight is answered only once
// that write is applied: a client told "already exists" or "not found" then
// reads what that answer implies.
func TestReplicaConditionOnInFlightWriteAnsweredAfterIt(t *testing.T) {
	release := make(chan struct{})
	f := &fakeRepl{decide: func(st replicators.Statement) error {
		if st.First() == 1 {
			<-release
		}
		return nil
	}}
	p := openReplica(t, f)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before p.Close
	ctx := context.Background()
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	putDone := make(chan error, 1)
	go func() { _, err := p.Write(ctx, []Write{put("k", "v1", Always)}); putDone <- err }()
	testutil.WaitFor(t, 5*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.seen) > 0
	}, "the put to reach the replicator")
	createDone := make(chan error, 1)
	go func() { _, err := p.Write(ctx, []Write{put("k", "v2", MustNotExist)}); createDone <- err }()
	deleteDone := make(chan error, 1)
	go func() {
		_, err := p.Write(ctx, []Write{{Op: engines.OpDelete, Key: []byte("absent"), Cond: MustExist}})
		deleteDone <- err
	}()
	select {
	case err := <-createDone:
		t.Fatalf("create answered (%v) before the put it conflicts with committed", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := p.Get(ctx, []byte("k")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("uncommitted put visible: %v", err)
	}
	unblock()
	if err := <-putDone; err != nil {
		t.Fatal(err)
	}
	// A condition decided by the engine alone is answered as such (once the
	// statement in flight has replicated: the writer loop takes the writes
	// queued behind it only then, maxInFlight).
	if err := <-deleteDone; !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("delete of an absent key: %v", err)
	}
	if err := <-createDone; !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("create over the committed put: %v", err)
	}
	if row, err := p.Get(ctx, []byte("k")); err != nil || string(row.Value) != "v1" {
		t.Fatalf("k = %q, %v", row.Value, err)
	}
}

func TestReplicaFencedStopsLeading(t *testing.T) {
	f := &fakeRepl{decide: func(replicators.Statement) error { return fmt.Errorf("epoch 9 exists: %w", replicators.ErrFenced) }}
	p := openReplica(t, f)
	ctx := context.Background()
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(ctx, []Write{put("a", "1", Always)}); !errors.Is(err, replicators.ErrFenced) {
		t.Fatalf("fenced write: %v", err)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { _, ok := p.Leading(); return !ok }, "the replica to stop leading after a fenced statement")
	if _, err := p.Get(ctx, []byte("a")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("fenced write applied: %v", err)
	}
}

func TestReplicaGivesUpAtDeadline(t *testing.T) {
	release := make(chan struct{})
	f := &fakeRepl{decide: func(replicators.Statement) error { <-release; return nil }}
	p := openReplica(t, f)
	defer close(release)
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Write(ctx, []Write{put("a", "1", Always)}); !errors.Is(err, replicators.ErrUnavailable) {
		t.Fatalf("write past its deadline: %v", err)
	}
}

func TestReplicaConcurrentWritesPipelined(t *testing.T) {
	// Not a synchronisation: each statement takes a replication's time, so
	// that concurrent writes overlap and pipeline.
	f := &fakeRepl{decide: func(replicators.Statement) error { time.Sleep(time.Millisecond); return nil }}
	p := openReplica(t, f)
	ctx := context.Background()
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Go(func() {
			for i := 0; i < 50; i++ {
				if _, err := p.Write(ctx, []Write{put(fmt.Sprintf("w%d-%d", w, i), "v", MustNotExist)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, _ := p.AppliedLSN(ctx); got != 800 {
		t.Fatalf("applied %d, want 800", got)
	}
	// Statements reached the replicator with consecutive LSNs.
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[uint64]bool{}
	for _, st := range f.seen {
		for _, m := range st.Mutations {
			seen[m.LSN] = true
		}
	}
	for l := uint64(1); l <= 800; l++ {
		if !seen[l] {
			t.Fatalf("lsn %d never replicated", l)
		}
	}
}

func TestApplyReplicatedSkipsApplied(t *testing.T) {
	f := &fakeRepl{}
	p := openReplica(t, f)
	ctx := context.Background()
	st := []engines.Mutation{{Op: engines.OpPut, Key: []byte("a"), Value: []byte("1"), LSN: 1}, {Op: engines.OpPut, Key: []byte("b"), Value: []byte("2"), LSN: 2}}
	for range 3 { // repeated deliveries change nothing
		if err := p.ApplyReplicated(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.ApplyReplicated(ctx, []engines.Mutation{{Op: engines.OpDelete, Key: []byte("a"), LSN: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, []byte("a")); err != nil {
		t.Fatalf("an already-applied lsn was applied again: %v", err)
	}
	if _, err := p.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.appliedLSN(); got != 2 {
		t.Fatalf("applied %d", got)
	}
}

// flushRecorder is a real engine (rowfile opened LogBacked) whose Flush
// results are recorded; unsupported makes its Flush fail as an engine
// without one does.
type flushRecorder struct {
	engines.Engine
	unsupported bool

	mu      sync.Mutex
	flushed []uint64 // what each Flush returned
}

func (f *flushRecorder) Flush(ctx context.Context) (uint64, error) {
	if f.unsupported {
		return 0, fmt.Errorf("no flush here: %w", errors.ErrUnsupported)
	}
	lsn, err := f.Engine.(engines.Flusher).Flush(ctx)
	if err == nil {
		f.mu.Lock()
		f.flushed = append(f.flushed, lsn)
		f.mu.Unlock()
	}
	return lsn, err
}

// reportRecorder is a fakeRepl that records every LSN Applied hears.
type reportRecorder struct {
	fakeRepl
	reported []uint64
}

func (r *reportRecorder) Applied(ctx context.Context, lsn uint64) error {
	r.mu.Lock()
	r.reported = append(r.reported, lsn)
	r.mu.Unlock()
	return r.fakeRepl.Applied(ctx, lsn)
}

// TestReplicaReportsOnlyFlushedLSN checks that the replicator hears of
// applied writes only through checkpoints (an LSN some Flush returned), not
// after each apply; that Checkpoint reports the engine's applied LSN once
// flushed; and that Close checkpoints the last writes.
func TestReplicaReportsOnlyFlushedLSN(t *testing.T) {
	ctx := context.Background()
	eng, err := rowfile.Open(ctx, engines.Options{Dir: t.TempDir(), LogBacked: true, Params: map[string]string{"compact_interval": "0"}})
	if err != nil {
		t.Fatal(err)
	}
	e := &flushRecorder{Engine: eng}
	r := &reportRecorder{}
	p, err := OpenReplica(ctx, 0, e, r, ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := p.Write(ctx, []Write{put(fmt.Sprint("k", i), "v", Always)}); err != nil {
			t.Fatal(err)
		}
	}
	// A write is answered once committed; a read of it waits for its apply.
	if _, err := p.Get(ctx, []byte("k19")); err != nil {
		t.Fatal(err)
	}
	lsn, err := p.Checkpoint(ctx)
	if err != nil || lsn != 20 {
		t.Fatalf("checkpoint: got %d, %v; want 20", lsn, err)
	}
	for i := range 5 {
		if _, err := p.Write(ctx, []Write{put(fmt.Sprint("late", i), "v", Always)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	flushed := slices.Clone(e.flushed)
	e.mu.Unlock()
	r.mu.Lock()
	reported := slices.Clone(r.reported)
	r.mu.Unlock()
	if len(reported) == 0 || reported[len(reported)-1] != 25 {
		t.Fatalf("the replicator heard %v; want the last report to be 25, from the checkpoint at Close", reported)
	}
	for _, l := range reported {
		if !slices.Contains(flushed, l) {
			t.Errorf("the replicator heard lsn %d, which no Flush returned (flushes returned %v)", l, flushed)
		}
	}
	if len(reported) > len(flushed) {
		t.Errorf("the replicator heard %d reports for %d flushes: it must hear only checkpoints", len(reported), len(flushed))
	}
}

// TestReplicaCheckpointWithoutFlush checks that an engine without Flush is
// checkpointed by its AppliedLSN (its own sync mode made it durable).
func TestReplicaCheckpointWithoutFlush(t *testing.T) {
	ctx := context.Background()
	eng, err := rowfile.Open(ctx, engines.Options{Dir: t.TempDir(), Params: map[string]string{"compact_interval": "0", "sync": "always"}})
	if err != nil {
		t.Fatal(err)
	}
	e := &flushRecorder{Engine: eng, unsupported: true}
	r := &reportRecorder{}
	p, err := OpenReplica(ctx, 0, e, r, ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(ctx, []Write{put("a", "1", Always), put("b", "2", Always)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, []byte("b")); err != nil { // waits for the apply
		t.Fatal(err)
	}
	if lsn, err := p.Checkpoint(ctx); err != nil || lsn != 2 {
		t.Fatalf("checkpoint: got %d, %v; want the applied lsn 2", lsn, err)
	}
	if got := r.appliedLSN(); got != 2 {
		t.Fatalf("the replicator heard %d, want 2", got)
	}
}

// While maxInFlight statements wait for their acks, the writes that arrive
// gather into one group: one statement, not one each.
func TestWritesArrivingWhileTheWindowIsFullShareOneStatement(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 64)
	f := &fakeRepl{decide: func(replicators.Statement) error {
		started <- struct{}{}
		<-release
		return nil
	}}
	p := openReplica(t, f)
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	write := func(key string) {
		defer wg.Done()
		if _, err := p.Write(ctx, []Write{put(key, "v", Always)}); err != nil {
			t.Error(err)
		}
	}
	// Fill the window: one statement each, every one waiting for its acks.
	for i := range maxInFlight {
		wg.Add(1)
		go write(fmt.Sprintf("first-%d", i))
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("a statement of the first writes never reached the replicator")
		}
	}
	// Then many writes at once, while no slot is free.
	const later = 40
	for i := range later {
		wg.Add(1)
		go write(fmt.Sprintf("later-%d", i))
	}
	// Wait until every later write is queued or taken by the writer loop.
	testutil.WaitFor(t, 10*time.Second, func() bool { return len(p.reqs) >= later-1 }, "every later write queued or taken by the writer loop")
	close(release)
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	// The writer loop took one later write, then waited for a slot; the
	// rest arrived meanwhile and joined it.
	if got := len(f.seen) - maxInFlight; got != 1 {
		t.Fatalf("%d later writes took %d statements, want 1", later, got)
	}
	if n := len(f.seen[maxInFlight].Mutations); n != later {
		t.Fatalf("the later statement carries %d writes, want %d", n, later)
	}
}

// gatedEngine holds every Apply until its gate is opened (or fails them
// with failWith).
type gatedEngine struct {
	engines.Engine
	gate     chan struct{}
	once     sync.Once
	failWith error
}

// Scan is the memory engine's: the gated engine is a Scanner too.
func (e *gatedEngine) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	return engines.Scan(ctx, e.Engine, r)
}

func (e *gatedEngine) open() { e.once.Do(func() { close(e.gate) }) }

func (e *gatedEngine) Apply(ctx context.Context, batch []engines.Mutation) error {
	<-e.gate
	if e.failWith != nil {
		return e.failWith
	}
	return e.Engine.Apply(ctx, batch)
}

func openGatedReplica(t *testing.T, failWith error, opts ReplicaOptions) (*Partition, *gatedEngine) {
	t.Helper()
	mem, err := memory.Open(context.Background(), engines.Options{Dir: t.TempDir(), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	eng := &gatedEngine{Engine: mem, gate: make(chan struct{}), failWith: failWith}
	p, err := OpenReplica(context.Background(), 0, eng, &fakeRepl{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.open(); p.Close() })
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	return p, eng
}

func TestAWriteIsAnsweredOnceCommittedAndReadsWaitForItsApply(t *testing.T) {
	p, eng := openGatedReplica(t, nil, ReplicaOptions{AnswerAtCommit: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Answered while the engine has not applied it (its Apply is held).
	lsns, err := p.Write(ctx, []Write{put("k", "v", Always)})
	if err != nil || len(lsns) != 1 {
		t.Fatalf("write: %v %v", lsns, err)
	}
	// A read of k must not miss the answered write: it waits for the apply.
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = p.Get(short, []byte("k"))
	stop()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a read of k while its answered write is not applied: %v, want it to wait (and here time out)", err)
	}
	short, stop = context.WithTimeout(ctx, 50*time.Millisecond)
	for _, err := range p.Scan(short, engines.ScanRange{}) {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a scan while an answered write is not applied: %v, want it to wait", err)
		}
	}
	stop()
	// A key without a write in flight is read at once.
	if _, err := p.Get(ctx, []byte("other")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("a read of another key: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		row, err := p.Get(ctx, []byte("k"))
		if err == nil && (string(row.Value) != "v" || row.LSN != lsns[0]) {
			err = fmt.Errorf("k = %q at lsn %d, want v at %d", row.Value, row.LSN, lsns[0])
		}
		got <- err
	}()
	eng.open()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	n := 0
	for row, err := range p.Scan(ctx, engines.ScanRange{}) {
		if err != nil || string(row.Key) != "k" {
			t.Fatalf("scan: %q %v", row.Key, err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("scan saw %d rows, want 1", n)
	}
}

func TestAReadOfAWriteTheEngineFailedToApplyFails(t *testing.T) {
	p, eng := openGatedReplica(t, errors.New("disk full"), ReplicaOptions{AnswerAtCommit: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.Write(ctx, []Write{put("k", "v", Always)}); err != nil {
		t.Fatalf("write: %v", err) // committed: answered before the apply fails
	}
	got := make(chan error, 1)
	go func() { _, err := p.Get(ctx, []byte("k")); got <- err }()
	eng.open()
	if err := <-got; !errors.Is(err, replicators.ErrUnavailable) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("a read of a write the engine failed to apply: %v, want Unavailable naming the cause", err)
	}
	if _, leading := p.Leading(); leading {
		t.Fatal("the partition still leads after its engine failed a committed write")
	}
}

// Without a log as the commit point (replicator none), a write is answered
// only once the engine applied it: its sync mode is what makes it durable.
func TestWithoutALogAWriteIsAnsweredOnceApplied(t *testing.T) {
	p, eng := openGatedReplica(t, nil, ReplicaOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := p.Write(short, []Write{put("k", "v", Always)})
	stop()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a write whose apply is held: %v, want it to wait (and here time out)", err)
	}
	eng.open()
	// The timed-out write still applies (its outcome was unknown); a later
	// one is answered after it.
	if _, err := p.Write(ctx, []Write{put("k2", "v", Always)}); err != nil {
		t.Fatal(err)
	}
	if row, err := p.Get(ctx, []byte("k")); err != nil || string(row.Value) != "v" {
		t.Fatalf("k = %q, %v", row.Value, err)
	}
}

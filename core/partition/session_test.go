package partition

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/replicators"
)

func once(t *testing.T, p *Partition, id RequestID, w ...Write) []uint64 {
	t.Helper()
	lsns, err := p.WriteOnce(context.Background(), w, replicators.AckDefault, id)
	if err != nil {
		t.Fatalf("write %s: %v", id, err)
	}
	return lsns
}

func appliedLSN(t *testing.T, p *Partition) uint64 {
	t.Helper()
	lsn, err := p.AppliedLSN(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func TestRetriedPutAppliedOnce(t *testing.T) {
	p := openPartition(t)
	id := RequestID{Client: "c", Seq: 1}
	first := once(t, p, id, put("k", "v1", Always))
	// The write and its client's row: two LSNs.
	if first[0] != 1 || appliedLSN(t, p) != 2 {
		t.Fatalf("first attempt: lsns %v, applied %d; want [1], 2", first, appliedLSN(t, p))
	}
	again := once(t, p, id, put("k", "v1", Always))
	if !slices.Equal(again, first) || appliedLSN(t, p) != 2 {
		t.Fatalf("retry: lsns %v, applied %d; want %v and nothing written", again, appliedLSN(t, p), first)
	}
	next := once(t, p, RequestID{Client: "c", Seq: 2}, put("k", "v2", Always))
	if next[0] != 3 || appliedLSN(t, p) != 4 {
		t.Fatalf("next request: lsns %v, applied %d; want [3], 4", next, appliedLSN(t, p))
	}
	// Other clients have their own rows; no id records nothing.
	if got := once(t, p, RequestID{Client: "d", Seq: 1}, put("k", "v3", Always)); got[0] != 5 {
		t.Fatalf("other client: %v", got)
	}
	if got := once(t, p, RequestID{}, put("k", "v4", Always)); got[0] != 7 || appliedLSN(t, p) != 7 {
		t.Fatalf("write without id: %v, applied %d", got, appliedLSN(t, p))
	}
}

func TestRetriedCreateAnsweredWithItsLSN(t *testing.T) {
	p := openPartition(t)
	ctx := context.Background()
	id := RequestID{Client: "c", Seq: 7}
	first := once(t, p, id, put("k", "v", MustNotExist))
	// The ack was lost; the retry finds the key, written by itself.
	again, err := p.WriteOnce(ctx, []Write{put("k", "v", MustNotExist)}, replicators.AckDefault, id)
	if err != nil || !slices.Equal(again, first) {
		t.Fatalf("retried create: %v %v; want %v, success", again, err, first)
	}
	// A new request of the same client is a new create: the key exists.
	if _, err := p.WriteOnce(ctx, []Write{put("k", "v", MustNotExist)}, replicators.AckDefault, RequestID{Client: "c", Seq: 8}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("new create of an existing key: %v", err)
	}
	// A failed condition is not recorded: seq 8 may be sent again.
	if _, err := p.WriteOnce(ctx, []Write{put("k", "v", MustNotExist)}, replicators.AckDefault, RequestID{Client: "c", Seq: 8}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("repeated failed create: %v", err)
	}
}

func TestOlderSeqRefused(t *testing.T) {
	p := openPartition(t)
	once(t, p, RequestID{Client: "c", Seq: 5}, put("k", "v", Always))
	_, err := p.WriteOnce(context.Background(), []Write{put("k", "old", Always)}, replicators.AckDefault, RequestID{Client: "c", Seq: 4})
	if !errors.Is(err, ErrStaleRequest) || err.Error() != `partition 0: request seq 4 of client "c" is older than its last, 5: stale request` {
		t.Fatalf("older seq: %v", err)
	}
	if row, _ := p.Get(context.Background(), []byte("k")); string(row.Value) != "v" {
		t.Fatalf("k = %q after a refused write", row.Value)
	}
}

func TestBadRequestIDsAndReservedKeysRefused(t *testing.T) {
	p := openPartition(t)
	ctx := context.Background()
	for _, id := range []RequestID{{Client: "c"}, {Seq: 1}, {Client: string(make([]byte, MaxClientIDSize+1)), Seq: 1}} {
		if _, err := p.WriteOnce(ctx, []Write{put("k", "v", Always)}, replicators.AckDefault, id); !errors.Is(err, engines.ErrInvalidArgument) {
			t.Errorf("id %s: %v", id, err)
		}
	}
	key := ReservedPrefix + "c"
	if _, err := p.Write(ctx, []Write{put("a", "v", Always), put(key, "v", Always)}); !errors.Is(err, engines.ErrInvalidArgument) {
		t.Fatalf("reserved key written: %v", err)
	}
	if _, err := p.Get(ctx, []byte(key)); !errors.Is(err, engines.ErrInvalidArgument) {
		t.Fatalf("reserved key read: %v", err)
	}
	if row, err := p.Get(ctx, []byte("a")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("a refused batch wrote %q: %v", row.Value, err)
	}
}

func TestInternalRowsInvisible(t *testing.T) {
	p := openPartition(t)
	ctx := context.Background()
	// Keys around the reserved prefix in key order.
	users := []string{"\x00", "\x00plugdb", "\x00plugdb\x00req\x01x", "a", "b"}
	for i, k := range users {
		once(t, p, RequestID{Client: fmt.Sprintf("c%d", i), Seq: 1}, put(k, "v", Always))
	}
	if got := appliedLSN(t, p); got != 10 {
		t.Fatalf("applied %d, want 10", got)
	}
	scan := func(r engines.ScanRange) []string {
		var keys []string
		for row, err := range p.Scan(ctx, r) {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, string(row.Key))
		}
		return keys
	}
	if got := scan(engines.ScanRange{}); !slices.Equal(got, users) {
		t.Fatalf("scan all: %q, want %q", got, users)
	}
	if got := scan(engines.ScanRange{Limit: 3}); !slices.Equal(got, users[:3]) {
		t.Fatalf("scan limit 3: %q, want %q", got, users[:3])
	}
	if got := scan(engines.ScanRange{Start: []byte(ReservedPrefix), End: []byte("a")}); !slices.Equal(got, users[2:3]) {
		t.Fatalf("scan of the reserved range: %q", got)
	}
	st, err := p.Stats(ctx)
	if err != nil || st.Keys != int64(len(users)) {
		t.Fatalf("stats: %d keys, %v; want %d", st.Keys, err, len(users))
	}
}

func TestRequestTableExpires(t *testing.T) {
	p := openPartition(t)
	p.sess.max = 2
	for i := range 3 {
		once(t, p, RequestID{Client: fmt.Sprintf("c%d", i), Seq: 1}, put("k", "v", Always))
	}
	// c0's row was deleted with c2's write: a write, c2's row, the delete.
	if got := appliedLSN(t, p); got != 7 {
		t.Fatalf("applied %d, want 7", got)
	}
	if n, _ := countReserved(context.Background(), p.eng.(engines.Scanner)); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
	// c0 is forgotten: its retry is applied again.
	if got := once(t, p, RequestID{Client: "c0", Seq: 1}, put("k", "v", Always)); got[0] != 8 {
		t.Fatalf("retry after expiry: %v", got)
	}
	// Age: every row older than the TTL goes with the next write.
	p.sess.ttl = -time.Hour
	once(t, p, RequestID{}, put("k", "v", Always))
	if n, _ := countReserved(context.Background(), p.eng.(engines.Scanner)); n != 0 {
		t.Fatalf("%d rows after the TTL, want 0", n)
	}
}

// The table is rows of the engine: a new leader over a replica that applied
// the old leader's statements answers the retry from them.
func TestRequestTableSurvivesFailover(t *testing.T) {
	f := &fakeRepl{}
	old := openReplica(t, f)
	if err := old.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	id := RequestID{Client: "c", Seq: 1}
	first := once(t, old, id, put("k", "v", MustNotExist))

	eng, err := memory.Open(context.Background(), engines.Options{Dir: t.TempDir(), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	follower, err := OpenReplica(context.Background(), 0, eng, &fakeRepl{}, ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follower.Close() })
	for _, st := range f.seen {
		if err := follower.ApplyReplicated(context.Background(), st.Mutations); err != nil {
			t.Fatal(err)
		}
	}
	if err := follower.Lead(2, 2); err != nil {
		t.Fatal(err)
	}
	if got := once(t, follower, id, put("k", "v", MustNotExist)); !slices.Equal(got, first) {
		t.Fatalf("retry at the new leader: %v, want %v", got, first)
	}
	if got := appliedLSN(t, follower); got != 2 {
		t.Fatalf("new leader applied %d, want 2: the retry was written again", got)
	}
}

// A retry that arrives while its first attempt waits for its acks is
// answered with that attempt's outcome, once it is applied.
func TestRetryOfWriteInFlight(t *testing.T) {
	release := make(chan struct{})
	f := &fakeRepl{decide: func(replicators.Statement) error { <-release; return nil }}
	p := openReplica(t, f)
	if err := p.Lead(1, 0); err != nil {
		t.Fatal(err)
	}
	id := RequestID{Client: "c", Seq: 1}
	type result struct {
		lsns []uint64
		err  error
	}
	results := make(chan result, 2)
	for attempt := range 2 {
		gid := make(chan uint64, 1)
		go func() {
			gid <- testutil.GoroutineID()
			lsns, err := p.WriteOnce(context.Background(), []Write{put("k", "v", MustNotExist)}, replicators.AckDefault, id)
			results <- result{lsns, err}
		}()
		g := <-gid
		if attempt == 0 {
			testutil.WaitFor(t, 5*time.Second, func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return len(f.seen) == 1
			}, "the first attempt to reach the replicator")
		} else {
			testutil.WaitFor(t, 5*time.Second, func() bool { return testutil.GoroutineBlocked(g) }, "the retry to wait")
		}
	}
	f.mu.Lock()
	if len(f.seen) != 1 {
		t.Errorf("the retry of a write in flight replicated again: %d statements", len(f.seen))
	}
	f.mu.Unlock()
	select {
	case r := <-results:
		t.Fatalf("answered before the write committed: %v %v", r.lsns, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	for range 2 {
		r := <-results
		if r.err != nil || !slices.Equal(r.lsns, []uint64{1}) {
			t.Fatalf("attempt: %v %v; want [1]", r.lsns, r.err)
		}
	}
	if got := appliedLSN(t, p); got != 2 {
		t.Fatalf("applied %d, want 2", got)
	}
}

// A client's row that the engine could not take is refused before the write
// is committed.
func TestRequestRowMustFitTheEngine(t *testing.T) {
	eng, err := memory.Open(context.Background(), engines.Options{Dir: t.TempDir(), Logger: hclog.NewNullLogger(),
		Params: map[string]string{"max_key_size": "32"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Open(context.Background(), 0, eng)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	long := RequestID{Client: "a-client-id-of-more-than-17-bytes", Seq: 1}
	if _, err := p.WriteOnce(context.Background(), []Write{put("k", "v", Always)}, replicators.AckDefault, long); !errors.Is(err, engines.ErrInvalidArgument) {
		t.Fatalf("write whose client row exceeds max_key_size: %v", err)
	}
	once(t, p, RequestID{Client: "short", Seq: 1}, put("k", "v", Always))
}

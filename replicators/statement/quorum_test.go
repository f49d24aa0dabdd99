package statement

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/replicators"
)

// setReplicas tells h's replicator the replica set size, as the host's
// Options.Replicas does.
func (h *host) setReplicas(n int) {
	h.r.mu.Lock()
	h.r.replicas = n
	h.r.mu.Unlock()
}

func connected(t *testing.T, l *host, n int) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		st, _ := l.r.Status(context.Background())
		c := 0
		for _, f := range st.Followers {
			if f.Connected {
				c++
			}
		}
		return c == n
	}, fmt.Sprintf("%d followers connected", n))
}

func TestSemiSyncNeedsAMajorityOfThree(t *testing.T) {
	l, a, b := newHost(t, map[string]string{"ack_timeout": "1h"}), newHost(t, nil), newHost(t, nil)
	for _, h := range []*host{l, a, b} {
		h.setReplicas(3)
	}
	ctx := context.Background()
	l.lead(1, a, b)
	connected(t, l, 2)
	if err := l.write(ctx, 1, "k0", "v", replicators.AckSemiSync); err != nil {
		t.Fatal(err)
	}
	// One follower dies, still in the in-sync set: the leader and the other
	// follower are a majority, so writes go on without waiting for it.
	b.close()
	for i := 1; i <= 20; i++ {
		if err := l.write(ctx, 1, fmt.Sprint("k", i), "v", replicators.AckSemiSync); err != nil {
			t.Fatalf("write %d with one of three replicas down: %v", i, err)
		}
	}
	st, _ := l.r.Status(ctx)
	if st.InSync != 3 || st.AckNeeds != 2 {
		t.Fatalf("status in_sync %d ack_needs %d, want 3 and 2", st.InSync, st.AckNeeds)
	}
	// sync waits for every in-sync replica: the dead one must leave the set.
	if err := l.r.SetPeers(ctx, []replicators.Peer{{Addr: a.r.Addr(), ISR: true}, {Addr: "127.0.0.1:1", ISR: false}}); err != nil {
		t.Fatal(err)
	}
	if err := l.write(ctx, 1, "s", "v", replicators.AckSync); err != nil {
		t.Fatalf("sync write with two in sync: %v", err)
	}
}

func TestTooFewInSyncReplicasFailAtOnce(t *testing.T) {
	// ack_timeout 1h and no deadline: a write returns only if it fails at once.
	l, f := newHost(t, map[string]string{"ack_timeout": "1h"}), newHost(t, nil)
	l.setReplicas(2)
	ctx := context.Background()
	l.lead(1, f)
	connected(t, l, 1)
	if err := l.write(ctx, 1, "a", "1", replicators.AckSemiSync); err != nil {
		t.Fatal(err)
	}
	fAddr := f.r.Addr()
	f.close()
	// The host took the dead follower out of the in-sync set.
	if err := l.r.SetPeers(ctx, []replicators.Peer{{Addr: fAddr, ISR: false}}); err != nil {
		t.Fatal(err)
	}
	for _, ack := range []replicators.Ack{replicators.AckSemiSync, replicators.AckSync} {
		err := l.write(ctx, 1, "b", "2", ack)
		if !errors.Is(err, replicators.ErrUnavailable) {
			t.Fatalf("%s write with 1 of 2 replicas in sync: %v, want ErrUnavailable", ack, err)
		}
		for _, want := range []string{"partition 0", "needs 2 of 2 replicas in sync", "1 are", "min_insync: 1"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
		}
	}
	if _, err := l.eng.Get(ctx, []byte("b")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatal("a write that failed was applied")
	}
	st, _ := l.r.Status(ctx)
	if st.InSync != 1 || st.AckNeeds != 2 {
		t.Fatalf("status in_sync %d ack_needs %d, want 1 and 2", st.InSync, st.AckNeeds)
	}
}

func TestMinInsyncOneLetsTheLeaderAcknowledgeAlone(t *testing.T) {
	l := newHost(t, map[string]string{"ack_timeout": "1h", "min_insync": "1"})
	l.setReplicas(2)
	ctx := context.Background()
	l.lead(1)
	if err := l.write(ctx, 1, "a", "1", replicators.AckSemiSync); err != nil {
		t.Fatalf("semi-sync write with min_insync 1 and no follower: %v", err)
	}
	if st, _ := l.r.Status(ctx); st.AckNeeds != 1 || st.InSync != 1 {
		t.Fatalf("status in_sync %d ack_needs %d, want 1 and 1", st.InSync, st.AckNeeds)
	}
	if _, err := parseConfig(map[string]string{"min_insync": "0"}); err == nil || !strings.Contains(err.Error(), "majority or a replica count 1..9") {
		t.Fatalf("min_insync 0: %v", err)
	}
}

func TestAckWaitEndsBeforeTheRequestDeadline(t *testing.T) {
	l, f := newHost(t, map[string]string{"ack_timeout": "1h"}), newHost(t, nil)
	ctx := context.Background()
	l.lead(1, f)
	connected(t, l, 1)
	f.close() // still in the in-sync set: the write waits for it
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := l.write(dctx, 1, "a", "1", replicators.AckSemiSync)
	if !errors.Is(err, replicators.ErrUnavailable) || !strings.Contains(err.Error(), "deadline is near") {
		t.Fatalf("write whose acks cannot come: %v", err)
	}
	if dctx.Err() != nil {
		t.Fatal("the replicator answered only after the request's deadline, which hides its reason")
	}
}

// The case a new leader must not lose: the old leader's stream to a is held,
// b acknowledges, the old leader dies, and a is first in line.
func TestNewLeaderCopiesWhatAnotherInSyncReplicaHas(t *testing.T) {
	l, a, b := newHost(t, nil), newHost(t, nil), newHost(t, nil)
	for _, h := range []*host{l, a, b} {
		h.setReplicas(3)
	}
	ctx := context.Background()
	l.lead(1, a, b)
	connected(t, l, 2)
	acked := map[string]bool{}
	for i := range 5 {
		k := fmt.Sprint("before", i)
		if err := l.write(ctx, 1, k, "v", replicators.AckSemiSync); err != nil {
			t.Fatal(err)
		}
		acked[k] = true
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { a.r.mu.Lock(); defer a.r.mu.Unlock(); return a.r.persisted == 5 }, "a persists the first writes")
	// Hold the stream to a: the leader ships to b only.
	if err := l.r.SetPeers(ctx, []replicators.Peer{{Addr: b.r.Addr(), ISR: true}}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		k := fmt.Sprint("held", i)
		if err := l.write(ctx, 1, k, "v", replicators.AckSemiSync); err != nil {
			t.Fatal(err)
		}
		acked[k] = true
	}
	l.close() // killed
	// A shipment already in flight when the stream was cut may have reached
	// a; the rest did not.
	if got := a.r.log.Last(); got >= 15 {
		t.Fatalf("a's log ends at %d before the election: the stream to it was not held", got)
	}
	// a is elected; b is in the in-sync set it takes over.
	if err := a.r.SetPeers(ctx, []replicators.Peer{{Addr: b.r.Addr(), ISR: true}}); err != nil {
		t.Fatal(err)
	}
	a.lead(2, b)
	if a.next != 15 {
		t.Fatalf("a leads after lsn %d, want 15", a.next)
	}
	for k := range acked {
		if _, err := a.eng.Get(ctx, []byte(k)); err != nil {
			t.Fatalf("acknowledged write %s is missing on the new leader: %v", k, err)
		}
	}
	if err := a.write(ctx, 2, "after", "v", replicators.AckSemiSync); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { x, _ := b.eng.AppliedLSN(ctx); return x == 16 }, "b applies the new leader's write")
	if x, y := digest(t, a.eng), digest(t, b.eng); x != y {
		t.Fatalf("a %s, b %s", x, y)
	}
}

func TestNewLeaderWaitsForEnoughInSyncReplicas(t *testing.T) {
	a, b, c := newHost(t, nil), newHost(t, nil), newHost(t, nil)
	for _, h := range []*host{a, b, c} {
		h.setReplicas(3)
	}
	ctx := context.Background()
	bAddr, cAddr := b.r.Addr(), c.r.Addr()
	b.close()
	c.close()
	if err := a.r.SetPeers(ctx, []replicators.Peer{{Addr: bAddr, ISR: true}, {Addr: cAddr, ISR: true}}); err != nil {
		t.Fatal(err)
	}
	_, err := a.r.Lead(ctx, 2, 0)
	if !errors.Is(err, replicators.ErrUnavailable) || !strings.Contains(err.Error(), "1 of 3 in-sync replicas answered and 2 must") {
		t.Fatalf("lead with no in-sync peer answering: %v", err)
	}
	// Another in-sync replica answers: a leads.
	d := newHost(t, nil)
	if err := a.r.SetPeers(ctx, []replicators.Peer{{Addr: d.r.Addr(), ISR: true}, {Addr: cAddr, ISR: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.r.Lead(ctx, 2, 0); err != nil {
		t.Fatalf("lead with one of two in-sync peers answering: %v", err)
	}
	// In-sync replicas that are not running count, and cannot answer.
	if err := a.r.SetPeers(ctx, []replicators.Peer{{ISR: true}, {ISR: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.r.Lead(ctx, 3, 0); !errors.Is(err, replicators.ErrUnavailable) || !strings.Contains(err.Error(), "2 in-sync replica(s) not running") {
		t.Fatalf("lead with the other two in-sync replicas not running: %v", err)
	}
	if err := a.r.SetPeers(ctx, []replicators.Peer{{Addr: d.r.Addr(), ISR: true}, {ISR: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.r.Lead(ctx, 3, 0); err != nil {
		t.Fatalf("lead with one in-sync peer answering and the old leader gone: %v", err)
	}
	// d adopted the epoch it was asked in: a leader of an older one is refused.
	if st, _ := d.r.Status(ctx); st.Epoch != 3 {
		t.Fatalf("the peer asked knows epoch %d, want 3", st.Epoch)
	}
}

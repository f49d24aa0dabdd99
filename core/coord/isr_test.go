package coord_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
)

const (
	addr1, addr2, addr3, addr4 = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"
)

// inElection waits until partition 0's election has n candidates, so that
// the next replica started queues behind them.
func inElection(t *testing.T, c *coord.Client, n int) {
	t.Helper()
	dir := coord.PathsOf(c.Config()).Election(0)
	testutil.WaitFor(t, 20*time.Second, func() bool {
		children, _, err := c.Conn().Children(dir)
		return err == nil && len(children) == n
	}, strconv.Itoa(n)+" candidates in the election")
}

func readISR(t *testing.T, c *coord.Client) coord.ISRInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, ok, err := coord.ReadISR(ctx, c, 0)
	if err != nil || !ok {
		t.Fatalf("ReadISR = %+v, %v, %v", info, ok, err)
	}
	return info
}

func stop(r *replica) {
	r.stop()
	<-r.done
}

func TestISRSetByLeaderAndRefusedOnceItsEpochIsOver(t *testing.T) {
	zkSrv := zktest.Shared(t)
	cfg := newCluster(t, zkSrv.Servers())
	a := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr1, Repl: "127.0.0.1:11"})
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := a.k.Leader(); return ok }, "a leads")
	e1, _ := a.k.Leader()
	b := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr2, Repl: "127.0.0.1:12"})
	inElection(t, a.c, 2)

	// A new partition's first leader creates the set as itself alone.
	if got := readISR(t, a.c); got.Epoch != e1 || !slices.Equal(got.Members, []string{addr1}) {
		t.Fatalf("first ISR = %+v, want epoch %d, [%s]", got, e1, addr1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The leader is added when the caller leaves it out.
	if err := a.k.SetISR(ctx, []string{addr2}); err != nil {
		t.Fatal(err)
	}
	want := []string{addr1, addr2}
	if got := a.k.ISR(); !slices.Equal(got, want) {
		t.Fatalf("ISR() = %v, want %v", got, want)
	}
	if got := readISR(t, b.c); got.Epoch != e1 || !slices.Equal(got.Members, want) {
		t.Fatalf("ReadISR = %+v, want epoch %d, %v", got, e1, want)
	}
	// Followers may not write it.
	if err := b.k.SetISR(ctx, []string{addr2}); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("follower's SetISR: %v, want ErrNotLeader", err)
	}
	if b.k.ISR() != nil {
		t.Fatalf("follower's ISR() = %v, want nil", b.k.ISR())
	}

	// The router sees the set and the replicator addresses.
	top := coord.WatchTopology(t.Context(), connect(t, cfg), 1)
	testutil.WaitFor(t, 20*time.Second, func() bool {
		v := top.Partition(0)
		if v.Leader.Addr != addr1 || v.Leader.Repl != "127.0.0.1:11" || !slices.Equal(v.ISR, want) || v.ISREpoch != e1 || len(v.Members) != 2 {
			return false
		}
		return v.Members[0].Repl == "127.0.0.1:11" && v.Members[1].Repl == "127.0.0.1:12"
	}, "topology shows ISR and replicator addresses")

	// Another writer bumps the epoch (as a new leader would): a's writes are
	// refused, a steps down, and b — in the set — takes over.
	epochPath := coord.PathsOf(cfg).Epoch(0)
	data, st, err := a.c.Conn().Get(epochPath)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := strconv.ParseUint(string(data), 10, 64)
	if _, err := a.c.Conn().Set(epochPath, []byte(strconv.FormatUint(cur+5, 10)), st.Version); err != nil {
		t.Fatal(err)
	}
	if err := a.k.SetISR(ctx, []string{addr1}); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("SetISR after the epoch changed: %v, want ErrNotLeader", err)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool { e, ok := b.k.Leader(); return ok && e > cur+5 }, "b leads in a later epoch")
	e2, _ := b.k.Leader()
	if _, ok := a.k.Leader(); ok {
		t.Fatal("a still leads")
	}
	if err := a.k.SetISR(ctx, []string{addr1}); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("deposed leader's SetISR: %v, want ErrNotLeader", err)
	}
	// b kept the set, rewritten in its epoch.
	if got := readISR(t, a.c); got.Epoch != e2 || !slices.Equal(got.Members, want) {
		t.Fatalf("ISR after failover = %+v, want epoch %d, %v", got, e2, want)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool {
		v := top.Partition(0)
		return v.Leader.Addr == addr2 && v.Leader.Repl == "127.0.0.1:12" && v.ISREpoch == e2
	}, "topology shows b leading with its replicator")
	if err := b.k.SetISR(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := readISR(t, a.c); got.Epoch != e2 || !slices.Equal(got.Members, []string{addr2}) {
		t.Fatalf("ISR shrunk by b = %+v, want epoch %d, [%s]", got, e2, addr2)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool { return slices.Equal(top.Partition(0).ISR, []string{addr2}) }, "topology shows the shrunk set")
}

func TestOnlyInSyncReplicasWin(t *testing.T) {
	zkSrv := zktest.Shared(t)
	cfg := newCluster(t, zkSrv.Servers())
	a := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr1})
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := a.k.Leader(); return ok }, "a leads")
	// In line behind a: b (not in the set), u (not in the set, unclean
	// election allowed), then c (in the set).
	b := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr2})
	inElection(t, a.c, 2)
	u := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr4, Unclean: true})
	inElection(t, a.c, 3)
	c := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr3})
	inElection(t, a.c, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.k.SetISR(ctx, []string{addr3}); err != nil {
		t.Fatal(err)
	}

	stopped := time.Now()
	stop(a)
	// b and u are first in turn; they step aside (u because c, in sync, is
	// running) and c wins.
	testutil.WaitFor(t, 20*time.Second, func() bool {
		if n, _, _ := leaders([]*replica{b, u}); n > 0 {
			t.Fatal("b or u leads although not in the in-sync set")
		}
		_, ok := c.k.Leader()
		return ok
	}, "c leads")
	took := time.Since(stopped)
	t.Logf("c led %v after a withdrew", took)
	if took > 5*time.Second {
		t.Errorf("c took %v to lead, want about a second", took)
	}
	e, _ := c.k.Leader()
	if got := readISR(t, c.c); got.Epoch != e || !slices.Equal(got.Members, []string{addr1, addr3}) {
		t.Fatalf("ISR = %+v, want epoch %d, [%s %s]", got, e, addr1, addr3)
	}
	// They stay behind c. Not a synchronisation: time passes (three ZooKeeper
	// session ticks) to show that no other candidate takes over.
	time.Sleep(1500 * time.Millisecond)
	if n, _, _ := leaders([]*replica{b, u, c}); n != 1 {
		t.Fatalf("%d leaders, want c alone", n)
	}
	if _, ok := c.k.Leader(); !ok {
		t.Fatal("c lost leadership")
	}
}

// countWriter counts the log lines that contain want.
type countWriter struct {
	t    *testing.T
	want string
	mu   sync.Mutex
	n    int
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.n += strings.Count(string(p), w.want)
	w.mu.Unlock()
	return testWriter{w.t}.Write(p)
}

func (w *countWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func TestNoLeaderOutsideTheISRUnlessUnclean(t *testing.T) {
	zkSrv := zktest.Shared(t)
	cfg := newCluster(t, zkSrv.Servers())
	a := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr1})
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := a.k.Leader(); return ok }, "a leads")
	cfgB := cfg
	logB := &countWriter{t: t, want: "not in the in-sync replica set: stepping aside"}
	cfgB.Logger = hclog.New(&hclog.LoggerOptions{Name: "b", Level: hclog.Info, Output: logB})
	b := startCandidate(t, cfgB, coord.CandidateConfig{Addr: addr2})
	c := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr3})
	inElection(t, a.c, 3)
	stop(a)

	// b and c, alone and out of sync, keep stepping aside: nobody leads.
	top := coord.WatchTopology(t.Context(), connect(t, cfg), 1)
	until := time.Now().Add(3 * time.Second)
	for time.Now().Before(until) {
		if n, _, _ := leaders([]*replica{b, c}); n > 0 {
			t.Fatal("b or c leads although not in the in-sync set")
		}
		if role, _ := b.k.Role(); role != coord.RoleFollower {
			t.Fatalf("b's role is %s while waiting", role)
		}
		time.Sleep(20 * time.Millisecond) // not a synchronisation: samples the 3 s window in which nobody may lead
	}
	if v := top.Partition(0); v.Leader.Addr != "" || !slices.Equal(v.ISR, []string{addr1}) {
		t.Fatalf("topology shows leader %q, ISR %v; want none, [%s]", v.Leader.Addr, v.ISR, addr1)
	}
	if n := logB.count(); n != 1 {
		t.Errorf("b logged that it steps aside %d times, want once (once per change of the set)", n)
	}

	// A replica allowed an unclean election takes over; the set restarts as it alone.
	d := startCandidate(t, cfg, coord.CandidateConfig{Addr: addr4, Unclean: true, Repl: "127.0.0.1:14"})
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := d.k.Leader(); return ok }, "d leads")
	e, _ := d.k.Leader()
	if got := readISR(t, d.c); got.Epoch != e || !slices.Equal(got.Members, []string{addr4}) {
		t.Fatalf("ISR after unclean election = %+v, want epoch %d, [%s]", got, e, addr4)
	}
	if n, _, _ := leaders([]*replica{b, c, d}); n != 1 {
		t.Fatalf("%d leaders, want d alone", n)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool {
		v := top.Partition(0)
		return v.Leader.Addr == addr4 && v.Leader.Repl == "127.0.0.1:14" && slices.Equal(v.ISR, []string{addr4})
	}, "topology shows d")
}

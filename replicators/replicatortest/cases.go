package replicatortest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/replicators"
)

func testParseAck(t T, _ Harness) {
	for i, name := range replicators.AckNames() {
		want := replicators.Ack(i + 1)
		for _, s := range []string{name, strings.ToUpper(name)} {
			got, err := replicators.ParseAck(s)
			if err != nil || got != want {
				t.Errorf("ParseAck(%q) = %v, %v; want %v", s, got, err, want)
			}
		}
		if want.String() != name {
			t.Errorf("Ack(%d).String() = %q, want %q", want, want.String(), name)
		}
	}
	for _, s := range []string{"", "default"} {
		if got, err := replicators.ParseAck(s); err != nil || got != replicators.AckDefault {
			t.Errorf("ParseAck(%q) = %v, %v; want default", s, got, err)
		}
	}
	for _, s := range []string{"fastest", "semisync", " async"} {
		_, err := replicators.ParseAck(s)
		enginetest.WantError(t, fmt.Sprintf("ParseAck(%q)", s), err, replicators.ErrInvalidArgument)
		if err != nil && !strings.Contains(err.Error(), "semi-sync") {
			t.Errorf("ParseAck(%q): %v, want ErrInvalidArgument naming the allowed values", s, err)
		}
	}
	for _, c := range []struct{ a, b, want replicators.Ack }{
		{replicators.AckDefault, replicators.AckAsync, replicators.AckAsync},
		{replicators.AckSync, replicators.AckSemiSync, replicators.AckSync},
		{replicators.AckSemiSync, replicators.AckDefault, replicators.AckSemiSync},
	} {
		if got := replicators.Stronger(c.a, c.b); got != c.want {
			t.Errorf("Stronger(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func testBadOptions(t T, h Harness) {
	const bad = "plugdb_kit_no_such_option"
	for _, c := range []struct {
		params map[string]string
		name   string // what the error must name
	}{
		{map[string]string{"ack": "async", bad: "1"}, bad},
		{map[string]string{"ack": "fastest"}, "ack"},
	} {
		ctx, cancel := ctxFor(t, callTimeout)
		r, err := h.Open(ctx, options(h, t.TempDir(), c.params))
		cancel()
		if err == nil {
			r.Close()
			t.Errorf("open with options %v succeeded, want ErrInvalidArgument", c.params)
			continue
		}
		enginetest.WantError(t, fmt.Sprintf("open with options %v", c.params), err, replicators.ErrInvalidArgument)
		if !strings.Contains(err.Error(), c.name) {
			t.Errorf("open with options %v: error %q does not name %q", c.params, err, c.name)
		}
	}
}

func testReplicateNeedsLead(t T, h Harness) {
	r := open(t, h, t.TempDir())
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	enginetest.WantError(t, "Replicate before Lead", r.Replicate(ctx, statement(1, 1, 1), replicators.AckAsync), replicators.ErrNotLeader)
	if err := r.Follow(ctx, 2, "127.0.0.1:9"); err != nil {
		t.Fatalf("Follow(2, 127.0.0.1:9): %v", err)
	}
	enginetest.WantError(t, "Replicate on a follower", r.Replicate(ctx, statement(2, 1, 1), replicators.AckAsync), replicators.ErrNotLeader)
}

func testLead(t T, h Harness) {
	r := open(t, h, t.TempDir())
	lead(t, r, 1, 0, 0)
	st := status(t, r)
	if st.Role != "leader" || st.Epoch != 1 {
		t.Errorf("Status after Lead(1, 0): role %q, epoch %d; want leader, 1", st.Role, st.Epoch)
	}
	replicate(t, r, statement(1, 1, 2), replicators.AckAsync)

	// An engine that applied writes the empty log never had: the log starts
	// after them.
	r2 := open(t, h, t.TempDir())
	lead(t, r2, 1, 10, 10)
	replicate(t, r2, statement(1, 11, 3), replicators.AckAsync)
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	enginetest.WantError(t, "Replicate lsn 5 after Lead(1, applied 10)", r2.Replicate(ctx, statement(1, 5, 1), replicators.AckAsync), replicators.ErrInvalidArgument)
}

func testReplicateAsync(t T, h Harness) {
	r := open(t, h, t.TempDir())
	lead(t, r, 1, 0, 0)
	sts := statements(1, 1, 100)
	for i, st := range sts {
		ack := replicators.AckAsync
		if i%2 == 1 {
			ack = replicators.AckDefault // the configured mode: async
		}
		replicate(t, r, st, ack)
	}
	last := sts[len(sts)-1].Last()
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	for _, lsn := range []uint64{1, last} {
		if e, err := r.EpochAt(ctx, lsn); err != nil || e != 1 {
			t.Errorf("EpochAt(%d) = %d, %v; want 1", lsn, e, err)
		}
	}
	if e, err := r.EpochAt(ctx, 0); err != nil || e != 0 {
		t.Errorf("EpochAt(0) = %d, %v; want 0", e, err)
	}
	if st := status(t, r); st.Commit < last {
		t.Errorf("Status.Commit = %d after lsn %d was acknowledged with ack async, want at least %d", st.Commit, last, last)
	}
}

func testReplicateConcurrent(t T, h Harness) {
	r := open(t, h, t.TempDir())
	lead(t, r, 1, 0, 0)
	// Every call at once: they may reach the replicator in any order, and the
	// replicator orders them by LSN.
	sts := statements(1, 1, 200)
	errs := make([]error, len(sts))
	var wg sync.WaitGroup
	for i, st := range sts {
		wg.Go(func() {
			ctx, cancel := ctxFor(t, callTimeout)
			defer cancel()
			errs[i] = r.Replicate(ctx, st, replicators.AckAsync)
		})
	}
	wg.Wait()
	if msg := firstError(errs, sts); msg != "" {
		t.Fatalf("concurrent Replicate with ack async: %s", msg)
	}
	last := sts[len(sts)-1].Last()
	if st := status(t, r); st.Commit < last {
		t.Errorf("Status.Commit = %d after every lsn through %d was acknowledged, want at least %d", st.Commit, last, last)
	}
	replicate(t, r, statement(1, last+1, 1), replicators.AckAsync)
}

func testMalformed(t T, h Harness) {
	r := open(t, h, t.TempDir())
	lead(t, r, 1, 0, 0)
	replicate(t, r, statement(1, 1, 3), replicators.AckAsync)
	gapped := statement(1, 4, 2)
	gapped.Mutations[1].LSN = 6
	zero := statement(1, 4, 1)
	zero.Mutations[0].LSN = 0
	for _, c := range []struct {
		what string
		st   replicators.Statement
	}{
		{"an empty statement", replicators.Statement{Epoch: 1}},
		{"a statement without an epoch", statement(0, 4, 1)},
		{"lsns 4, 6", gapped},
		{"lsn 0", zero},
		{"lsns 1..3 again", statement(1, 1, 3)},
		{"lsns 3..4, overlapping the last", statement(1, 3, 2)},
		{"lsn 2, below the last", statement(1, 2, 1)},
	} {
		ctx, cancel := ctxFor(t, callTimeout)
		err := r.Replicate(ctx, c.st, replicators.AckAsync)
		cancel()
		enginetest.WantError(t, "Replicate "+c.what, err, replicators.ErrInvalidArgument)
	}
	ctx, cancel := ctxFor(t, callTimeout)
	if err := r.Replicate(ctx, statement(2, 4, 1), replicators.AckAsync); err == nil {
		t.Errorf("Replicate a statement of epoch 2 on the leader of epoch 1 succeeded")
	}
	cancel()
	// The refused statements left the log alone: lsn 4 follows.
	replicate(t, r, statement(1, 4, 2), replicators.AckAsync)
	// After a gap a statement cannot be acknowledged: "a nil return for one
	// means every earlier one is committed too".
	ctx, cancel = ctxFor(t, shortTimeout)
	defer cancel()
	err := r.Replicate(ctx, statement(1, 8, 1), replicators.AckAsync)
	switch {
	case err == nil:
		t.Errorf("Replicate lsn 8 with lsn 6 and 7 never replicated succeeded")
	default: // ErrUnavailable (waited) or ErrInvalidArgument (refused)
		enginetest.WantError(t, "Replicate lsn 8 with lsn 6 and 7 never replicated", err, replicators.ErrUnavailable, replicators.ErrInvalidArgument)
	}
}

func testStatus(t T, h Harness) {
	leader := open(t, h, t.TempDir())
	if st := status(t, leader); st.Role != "" {
		t.Errorf("Status of a new replicator: role %q, want \"\"", st.Role)
	}
	lead(t, leader, 3, 0, 0)
	st := status(t, leader)
	if st.Role != "leader" || st.Epoch != 3 {
		t.Errorf("Status after Lead(3, 0): role %q, epoch %d; want leader, 3", st.Role, st.Epoch)
	}
	if st.Ack != replicators.AckAsync {
		t.Errorf("Status.Ack = %v, want async (the kit configures ack: async)", st.Ack)
	}
	replicate(t, leader, statement(3, 1, 2), replicators.AckAsync)
	if st := status(t, leader); st.Commit < 2 {
		t.Errorf("Status.Commit = %d after lsn 2 was acknowledged, want at least 2", st.Commit)
	}

	follower := open(t, h, t.TempDir())
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	if err := follower.Follow(ctx, 4, leader.Addr()); err != nil {
		t.Fatalf("Follow(4, %q): %v", leader.Addr(), err)
	}
	if st := status(t, follower); st.Role != "follower" || st.Epoch != 4 {
		t.Errorf("Status after Follow(4): role %q, epoch %d; want follower, 4", st.Role, st.Epoch)
	}
}

// drain ranges over seq in a goroutine and returns a channel that yields what
// it yielded and is closed when the sequence ends.
func drain(seq func(yield func(replicators.Delivery, error) bool)) <-chan error {
	out := make(chan error, 100)
	go func() {
		defer close(out)
		for d, err := range seq {
			if err == nil {
				err = errDelivery{d}
			}
			select {
			case out <- err:
			default: // the case reports the first ones
			}
		}
	}()
	return out
}

// errDelivery stands for a delivery in drain's channel.
type errDelivery struct{ d replicators.Delivery }

func (e errDelivery) Error() string {
	if e.d.Rebuild {
		return "a rebuild delivery"
	}
	return "a delivery of statement " + lsnRange(e.d.Statement)
}

func lsnRange(st replicators.Statement) string {
	return fmt.Sprintf("%d..%d", st.First(), st.Last())
}

// waitEnd waits until items closes and reports what it yielded but wanted.
func waitEnd(t T, items <-chan error, what string, wanted func(error) bool) {
	t.Helper()
	timer := time.NewTimer(endTimeout)
	defer timer.Stop()
	for {
		select {
		case err, ok := <-items:
			if !ok {
				return
			}
			if !wanted(err) {
				t.Errorf("%s: Deliveries yielded %v", what, err)
			}
		case <-timer.C:
			t.Errorf("%s: Deliveries did not end within %v", what, endTimeout)
			return
		}
	}
}

func testDeliveriesEnd(t T, h Harness) {
	r := open(t, h, t.TempDir())
	lead(t, r, 1, 0, 0)
	ctx, cancel := context.WithCancel(t.Context())
	items := drain(r.Deliveries(ctx))
	select {
	case err, ok := <-items:
		if ok {
			t.Errorf("Deliveries of a leader with an empty log yielded %v", err)
		} else {
			t.Errorf("Deliveries ended before its context did")
		}
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	waitEnd(t, items, "after its context ended", func(err error) bool { return errors.Is(err, context.Canceled) })
}

func testClosed(t T, h Harness) {
	r := open(t, h, t.TempDir())
	lead(t, r, 1, 0, 0)
	replicate(t, r, statement(1, 1, 1), replicators.AckAsync)
	running, gid := drainTracked(r.Deliveries(t.Context()))
	// Close only once the sequence runs: its goroutine is blocked inside it,
	// waiting for something to deliver. Closing before would test a Deliveries
	// called after Close (checked below), not a running one.
	waitBlocked(t, gid, "a Deliveries sequence to start and wait")
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	isClosed := func(err error) bool { return errors.Is(err, replicators.ErrClosed) }
	waitEnd(t, running, "a running Deliveries when the replicator closed", isClosed)

	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	check := func(call string, err error) {
		t.Helper()
		enginetest.WantError(t, call+" after Close", err, replicators.ErrClosed)
	}
	_, err := r.Lead(ctx, 2, 1)
	check("Lead", err)
	check("SetPeers", r.SetPeers(ctx, nil))
	check("Replicate", r.Replicate(ctx, statement(1, 2, 1), replicators.AckAsync))
	check("Follow", r.Follow(ctx, 2, "127.0.0.1:9"))
	check("Applied", r.Applied(ctx, 1))
	_, err = r.EpochAt(ctx, 1)
	check("EpochAt", err)
	check("Restored", r.Restored(ctx, 1, 1))
	_, err = r.Status(ctx)
	check("Status", err)
	waitEnd(t, drain(r.Deliveries(t.Context())), "Deliveries after Close", isClosed)
	if err := r.Close(); err != nil && !errors.Is(err, replicators.ErrClosed) {
		t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}
}

package replicatortest

import (
	"errors"
	"fmt"
	"time"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/replicators"
)

// pair opens a leader and a follower, each on a folder of its own, makes the
// follower follow the leader in epoch 1 and the leader lead it as an in-sync
// peer. It skips the case for a replicator that makes no copies. It returns
// the follower's folder, to reopen it.
func pair(t T, h Harness) (leader, follower replicators.Replicator, followerDir string) {
	t.Helper()
	leader = open(t, h, t.TempDir())
	if leader.Addr() == "" {
		t.Skipf("the replicator makes no copies (its Addr is \"\"): this case needs a leader and a follower that reach each other")
	}
	followerDir = t.TempDir()
	follower = open(t, h, followerDir)
	if follower.Addr() == "" || follower.Addr() == leader.Addr() {
		t.Fatalf("two replicators listening on 127.0.0.1:0 have addresses %q and %q, want two addresses", leader.Addr(), follower.Addr())
	}
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	if err := follower.Follow(ctx, 1, leader.Addr()); err != nil {
		t.Fatalf("follower: Follow(1, %s): %v", leader.Addr(), err)
	}
	lead(t, leader, 1, 0, 0)
	setPeers(t, leader, replicators.Peer{Addr: follower.Addr(), ISR: true})
	return leader, follower, followerDir
}

func setPeers(t T, leader replicators.Replicator, peers ...replicators.Peer) {
	t.Helper()
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	if err := leader.SetPeers(ctx, peers); err != nil {
		t.Fatalf("leader: SetPeers(%+v): %v", peers, err)
	}
}

func testCopiesInOrder(t T, h Harness) {
	leader, follower, _ := pair(t, h)
	fh := startHost(t, follower, 0, 0)
	sts := statements(1, 1, 1000)
	if msg := firstError(replicateOverlapping(t, leader, sts, replicators.AckSemiSync, 64), sts); msg != "" {
		t.Fatalf("Replicate with ack semi-sync and an in-sync follower: %s", msg)
	}
	last := sts[len(sts)-1].Last()
	checkDelivered(t, fh, sts, "follower")
	waitPersisted(t, leader, follower.Addr(), last)
	st := status(t, leader)
	if st.Role != "leader" || st.Epoch != 1 || st.Commit < last {
		t.Errorf("leader Status: role %q, epoch %d, commit %d; want leader, 1, at least %d", st.Role, st.Epoch, st.Commit, last)
	}
	if fst := status(t, follower); fst.Role != "follower" || fst.Epoch != 1 {
		t.Errorf("follower Status: role %q, epoch %d; want follower, 1", fst.Role, fst.Epoch)
	}
}

func testSemiSyncNeedsISR(t T, h Harness) {
	leader, follower, _ := pair(t, h)
	startHost(t, follower, 0, 0)
	next := uint64(1)
	replicate(t, leader, statement(1, next, 2), replicators.AckSemiSync)
	next += 2

	// semiSyncFails replicates the next statement with ack semi-sync and a
	// short context, and wants ErrUnavailable soon after the context ends.
	semiSyncFails := func(why string) {
		t.Helper()
		ctx, cancel := ctxFor(t, shortTimeout)
		defer cancel()
		start := time.Now()
		err := leader.Replicate(ctx, statement(1, next, 1), replicators.AckSemiSync)
		if elapsed := time.Since(start); elapsed > shortTimeout+5*time.Second {
			t.Errorf("%s: Replicate took %v with a context of %v", why, elapsed.Round(time.Millisecond), shortTimeout)
		}
		if !errors.Is(err, replicators.ErrUnavailable) {
			t.Fatalf("%s: Replicate with ack semi-sync: %v, want ErrUnavailable", why, err)
		}
		enginetest.WantError(t, why+": Replicate with ack semi-sync", err, replicators.ErrTooFewInSync, replicators.ErrUnavailable)
		next++ // the statement stays in the log
	}
	setPeers(t, leader, replicators.Peer{Addr: follower.Addr(), ISR: false})
	semiSyncFails("the only follower is not in sync")
	setPeers(t, leader)
	semiSyncFails("no followers")

	// The statements that failed stay in the log: the next follows them.
	replicate(t, leader, statement(1, next, 1), replicators.AckAsync)
}

func testFencing(t T, h Harness) {
	leader, follower, _ := pair(t, h)
	startHost(t, follower, 0, 0)
	sts := statements(1, 1, 10)
	for _, st := range sts {
		replicate(t, leader, st, replicators.AckSemiSync)
	}
	next := sts[len(sts)-1].Last() + 1

	// The follower learns of epoch 5 (another replica was elected): the
	// leader of epoch 1 must learn it is deposed.
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	if err := follower.Follow(ctx, 5, leader.Addr()); err != nil {
		t.Fatalf("follower: Follow(5, %s): %v", leader.Addr(), err)
	}
	rctx, rcancel := ctxFor(t, endTimeout)
	defer rcancel()
	if err := leader.Replicate(rctx, statement(1, next, 1), replicators.AckSemiSync); !errors.Is(err, replicators.ErrFenced) {
		t.Fatalf("leader of epoch 1, with its follower at epoch 5: Replicate with ack semi-sync: %v, want ErrFenced", err)
	} else {
		enginetest.WantError(t, "leader of epoch 1, with its follower at epoch 5: Replicate with ack semi-sync", err, replicators.ErrFenced)
	}
	// A deposed leader acknowledges nothing more, not even with ack async.
	for _, ack := range []replicators.Ack{replicators.AckAsync, replicators.AckSemiSync} {
		actx, acancel := ctxFor(t, shortTimeout)
		err := leader.Replicate(actx, statement(1, next+1, 1), ack)
		acancel()
		enginetest.WantError(t, fmt.Sprintf("fenced leader: Replicate with ack %s", ack), err, replicators.ErrFenced, replicators.ErrNotLeader)
	}
}

func testFollowerRestart(t T, h Harness) {
	leader, follower, dir := pair(t, h)
	first := statements(1, 1, 50)
	stopAt := first[29].Last() // the host goes down after applying 30 statements
	fh := startHost(t, follower, 0, stopAt)
	for _, st := range first {
		replicate(t, leader, st, replicators.AckSemiSync)
	}
	end := first[len(first)-1].Last()
	waitPersisted(t, leader, follower.Addr(), end)
	applied, got, faults := fh.waitApplied(stopAt, endTimeout+callTimeout)
	for _, f := range faults {
		t.Errorf("follower before the restart: %s", f)
	}
	if applied < stopAt {
		t.Fatalf("follower before the restart: applied through lsn %d, want %d", applied, stopAt)
	}
	if diff := sameMutations(got, through(first, applied)); diff != "" {
		t.Fatalf("follower before the restart: %s", diff)
	}
	fh.stop(t)
	if err := follower.Close(); err != nil {
		t.Fatalf("follower: Close: %v", err)
	}

	// The follower comes back on its folder (at a new address), its host
	// reports what its engine applied, and the leader is told where it is.
	again := open(t, h, dir)
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	if err := again.Follow(ctx, 1, leader.Addr()); err != nil {
		t.Fatalf("restarted follower: Follow(1, %s): %v", leader.Addr(), err)
	}
	if err := again.Applied(ctx, applied); err != nil {
		t.Fatalf("restarted follower: Applied(%d): %v", applied, err)
	}
	fh2 := startHost(t, again, applied, 0)
	setPeers(t, leader, replicators.Peer{Addr: again.Addr(), ISR: true})
	more := statements(1, end+1, 50)
	if msg := firstError(replicateOverlapping(t, leader, more, replicators.AckSemiSync, 8), more); msg != "" {
		t.Fatalf("Replicate with ack semi-sync after the follower restarted: %s", msg)
	}
	// Delivered again: exactly what was persisted but not applied, then the new ones.
	want := append(after(first, applied), more...)
	checkDelivered(t, fh2, want, "restarted follower")
	waitPersisted(t, leader, again.Addr(), more[len(more)-1].Last())
}

// through returns the part of sts at or below lsn.
func through(sts []replicators.Statement, lsn uint64) []replicators.Statement {
	var out []replicators.Statement
	for _, st := range sts {
		var ms []engines.Mutation
		for _, m := range st.Mutations {
			if m.LSN <= lsn {
				ms = append(ms, m)
			}
		}
		if len(ms) > 0 {
			out = append(out, replicators.Statement{Epoch: st.Epoch, Mutations: ms})
		}
	}
	return out
}

// after returns the part of sts above lsn.
func after(sts []replicators.Statement, lsn uint64) []replicators.Statement {
	var out []replicators.Statement
	for _, st := range sts {
		var ms []engines.Mutation
		for _, m := range st.Mutations {
			if m.LSN > lsn {
				ms = append(ms, m)
			}
		}
		if len(ms) > 0 {
			out = append(out, replicators.Statement{Epoch: st.Epoch, Mutations: ms})
		}
	}
	return out
}

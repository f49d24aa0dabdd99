package statement

import (
	"context"
	"errors"
	"testing"

	"github.com/plugdb/plugdb/replicators"
)

// stallLeaderSync makes h's next fsync wait: stalled is closed when it
// starts, and it returns what release sends (running the real fsync for
// nil), or runs the fsync once the test ends.
func stallLeaderSync(t *testing.T, h *host) (stalled <-chan struct{}, release chan<- error) {
	st, rel, end := make(chan struct{}), make(chan error), make(chan struct{})
	t.Cleanup(func() { close(end) }) // before h closes: a failed test does not hang
	h.r.mu.Lock()
	h.r.test.sync = func(sync func() error) error {
		close(st)
		h.r.mu.Lock()
		h.r.test.sync = nil // later fsyncs run as usual
		h.r.mu.Unlock()
		select {
		case err := <-rel:
			if err != nil {
				return err
			}
		case <-end:
		}
		return sync()
	}
	h.r.mu.Unlock()
	return st, rel
}

// followerHas waits until f has persisted lsn and the leader l has its ack.
func followerHas(t *testing.T, l, f *host, lsn uint64) {
	t.Helper()
	waitFor(t, "the follower persists the statement and acknowledges it", func() bool {
		f.r.mu.Lock()
		persisted := f.r.persisted
		f.r.mu.Unlock()
		st, _ := l.r.Status(context.Background())
		return persisted >= lsn && len(st.Followers) == 1 && st.Followers[0].PersistedLSN >= lsn
	})
}

// notCommitted fails the test if l counts lsn as acknowledged in mode.
func notCommitted(t *testing.T, l *host, lsn uint64, mode replicators.Ack, done <-chan error) {
	t.Helper()
	l.r.mu.Lock()
	met, commit := l.r.metLocked(lsn, mode), l.r.commit
	l.r.mu.Unlock()
	if met || commit >= lsn {
		t.Fatalf("lsn %d counts as %s (commit %d) before the leader's own fsync returned", lsn, mode, commit)
	}
	select {
	case err := <-done:
		t.Fatalf("the write returned (%v) before the leader's own fsync did", err)
	default:
	}
}

// TestFollowerPersistsDuringLeaderFsync: the leader ships a statement as
// soon as it is in its log, so a follower persists and acknowledges it
// while the leader's fsync has not returned; the write is acknowledged only
// after that fsync, in every mode (all count the leader).
func TestFollowerPersistsDuringLeaderFsync(t *testing.T) {
	for _, mode := range []replicators.Ack{replicators.AckAsync, replicators.AckSemiSync, replicators.AckSync} {
		t.Run(mode.String(), func(t *testing.T) {
			l, f := newHost(t, map[string]string{"ack_timeout": "1h", "heartbeat": "1h"}), newHost(t, nil)
			ctx := context.Background()
			l.lead(1, f)
			connected(t, l, 1)
			stalled, release := stallLeaderSync(t, l)
			done := make(chan error, 1)
			go func() { done <- l.write(ctx, 1, "k", "v", mode) }()
			<-stalled
			followerHas(t, l, f, 1)
			notCommitted(t, l, 1, mode, done)
			release <- nil
			if err := <-done; err != nil {
				t.Fatalf("write after the leader's fsync returned: %v", err)
			}
		})
	}
}

// TestLeaderFsyncFailureAfterFollowerPersisted: when the leader's fsync
// fails, the leader steps down and the write fails, although a follower
// persisted it; nothing counts it as committed.
func TestLeaderFsyncFailureAfterFollowerPersisted(t *testing.T) {
	l, f := newHost(t, map[string]string{"ack_timeout": "1h", "heartbeat": "1h"}), newHost(t, nil)
	ctx := context.Background()
	l.lead(1, f)
	connected(t, l, 1)
	stalled, release := stallLeaderSync(t, l)
	done := make(chan error, 1)
	go func() { done <- l.write(ctx, 1, "k", "v", replicators.AckSemiSync) }()
	<-stalled
	followerHas(t, l, f, 1)
	release <- errors.New("injected fsync failure")
	if err := <-done; !errors.Is(err, replicators.ErrFenced) {
		t.Fatalf("write whose leader fsync failed: %v, want %v", err, replicators.ErrFenced)
	}
	l.r.mu.Lock()
	lc, lp := l.r.commit, l.r.persisted
	l.r.mu.Unlock()
	f.r.mu.Lock()
	fc := f.r.commit
	f.r.mu.Unlock()
	if lc >= 1 || lp >= 1 || fc >= 1 {
		t.Fatalf("after the failed fsync: leader commit %d persisted %d, follower commit %d; want all 0", lc, lp, fc)
	}
}

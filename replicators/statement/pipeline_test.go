package statement

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/plugdb/plugdb/internal/testutil"
	statementv1 "github.com/plugdb/plugdb/proto/plugdb/statement/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/statement/wal"
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
	testutil.WaitFor(t, 10*time.Second, func() bool {
		f.r.mu.Lock()
		persisted := f.r.persisted
		f.r.mu.Unlock()
		st, _ := l.r.Status(context.Background())
		return persisted >= lsn && len(st.Followers) == 1 && st.Followers[0].PersistedLSN >= lsn
	}, "the follower persists the statement and acknowledges it")
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

// TestFollowerGroupCommit: a follower given many appends in flight logs
// those queued behind the one it is fsyncing with one more fsync and
// acknowledges them all; every entry is durable.
func TestFollowerGroupCommit(t *testing.T) {
	const n = 12 // messages, at most shipQueue: all can be queued at once
	f := newHost(t, nil)
	var syncs atomic.Int32
	queued, end := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(end) }) // before f closes: a failed test does not hang
	var received atomic.Int32
	f.r.mu.Lock()
	f.r.test.queued = func() {
		if received.Add(1) == n {
			close(queued)
		}
	}
	f.r.test.sync = func(sync func() error) error {
		if syncs.Add(1) == 1 {
			select { // the first fsync waits until every message is queued
			case <-queued:
			case <-end:
			}
		}
		return sync()
	}
	f.r.mu.Unlock()

	conn, err := grpc.NewClient(f.r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A bound, not a timing assertion: a regression fails, not hangs.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := statementv1.NewPeerClient(conn).Ship(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &statementv1.Hello{Epoch: 1, Leader: "test", Partition: uint32(f.r.part)}
	if err := stream.Send(&statementv1.ShipRequest{Msg: &statementv1.ShipRequest_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetState() == nil {
		t.Fatalf("hello answered %v, %v", resp, err)
	}
	for i := uint64(1); i <= n; i++ {
		e := &statementv1.Entry{Epoch: 1, First: i, Last: i, Payload: fmt.Appendf(nil, "p%d", i)}
		m := &statementv1.Append{Entries: []*statementv1.Entry{e}}
		if err := stream.Send(&statementv1.ShipRequest{Msg: &statementv1.ShipRequest_Append{Append: m}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks, persisted := 0, uint64(0)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		acks++
		persisted = max(persisted, resp.GetAck().GetPersisted())
	}
	if persisted != n {
		t.Fatalf("acknowledged through lsn %d, want %d", persisted, n)
	}
	// The first group is one message or more; all the others were queued
	// when its fsync returned, so they make one more group at most.
	if s := syncs.Load(); s > 2 || acks > 2 {
		t.Fatalf("%d messages took %d fsyncs and %d acks, want at most 2 of each", n, s, acks)
	}
	t.Logf("%d messages: %d fsyncs, %d acks", n, syncs.Load(), acks)

	f.close()
	lg, err := wal.Open(f.dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	recs, err := lg.Read(1, 1<<20)
	if err != nil || len(recs) != n {
		t.Fatalf("read back %d records: %v", len(recs), err)
	}
	for i, rec := range recs {
		if want := fmt.Sprintf("p%d", i+1); rec.First != uint64(i+1) || string(rec.Payload) != want {
			t.Fatalf("record %d: lsn %d payload %q, want %d %q", i, rec.First, rec.Payload, i+1, want)
		}
	}
}

func TestFollowerDoesNotAckACommitPointThatChangedNothing(t *testing.T) {
	f := newHost(t, nil)
	conn, err := grpc.NewClient(f.r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := statementv1.NewPeerClient(conn).Ship(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(m *statementv1.Append) {
		t.Helper()
		if err := stream.Send(&statementv1.ShipRequest{Msg: &statementv1.ShipRequest_Append{Append: m}}); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(lsn uint64) []*statementv1.Entry {
		return []*statementv1.Entry{{Epoch: 1, First: lsn, Last: lsn, Payload: fmt.Appendf(nil, "p%d", lsn)}}
	}
	ack := func() uint64 {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil || resp.GetAck() == nil {
			t.Fatalf("want an ack, got %v, %v", resp, err)
		}
		return resp.GetAck().GetPersisted()
	}
	hello := &statementv1.Hello{Epoch: 1, Leader: "test", Partition: uint32(f.r.part)}
	if err := stream.Send(&statementv1.ShipRequest{Msg: &statementv1.ShipRequest_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetState() == nil {
		t.Fatalf("hello answered %v, %v", resp, err)
	}
	send(&statementv1.Append{Entries: entry(1)})
	if p := ack(); p != 1 {
		t.Fatalf("ack of lsn 1 says persisted %d", p)
	}
	send(&statementv1.Append{Commit: 1}) // a commit point: nothing new persisted
	send(&statementv1.Append{Commit: 1}) // a heartbeat
	send(&statementv1.Append{Entries: entry(2), Commit: 1})
	if p := ack(); p != 2 {
		t.Fatalf("the ack after two commit points says persisted %d, want 2: the commit points were acknowledged", p)
	}
	f.r.mu.Lock()
	commit := f.r.commit
	f.r.mu.Unlock()
	if commit != 1 {
		t.Fatalf("the follower's commit point is %d, want 1", commit)
	}
}

package statement

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statementv1 "github.com/plugdb/plugdb/proto/plugdb/statement/v1"
	"github.com/plugdb/plugdb/replicators/statement/wal"
)

// follower is the leader's view of one follower.
type follower struct {
	addr      string
	isr       bool // in the in-sync set the host recorded
	inSync    bool // caught up within isr_lag, by this replicator's judgement
	connected bool
	persisted uint64
	applied   uint64
	caughtUp  time.Time // the last time it had everything the leader had
	since     time.Time
	err       string
	ship      *shipper // the current shipper; nil while not leading
}

// shipper is one run of replication to one follower in one term: the ship
// goroutine and, while a stream is open, its readAcks goroutine.
//
// A shipper is live until it is stopped (its follower removed by SetPeers,
// a new term, stepping down, Close). Every stop happens under r.mu, so a
// shipper that checks liveLocked under r.mu before it changes the
// replicator's state knows that its results still count: a stopped
// shipper's late results (an ack, a reply that fences, a lost connection)
// are dropped, never applied to a removed follower or a later term.
type shipper struct {
	epoch  uint64
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when ship and its readAcks have returned
}

// liveLocked reports whether sh has not been stopped; r.mu is held.
func (sh *shipper) liveLocked() bool { return sh.ctx.Err() == nil }

// stopShipperLocked stops f's shipper, if any, and returns a channel closed
// once its goroutines have returned (nil if it had none); r.mu is held, so
// the caller waits only after unlocking.
func (f *follower) stopShipperLocked() <-chan struct{} {
	sh := f.ship
	if sh == nil {
		return nil
	}
	sh.cancel()
	f.ship = nil
	return sh.done
}

// judgeLocked updates f.inSync: a follower joins when it has everything the
// leader has, and leaves when it has not been caught up for isr_lag.
func (r *Replicator) judgeLocked(f *follower, now time.Time) {
	if f.connected && f.persisted >= r.persisted {
		f.caughtUp = now
		f.inSync = true
		return
	}
	ref := f.caughtUp
	if ref.IsZero() {
		ref = f.since
	}
	if now.Sub(ref) > r.cfg.isrLag {
		f.inSync = false
	}
}

// startShipperLocked starts shipping to f for the current term, stopping
// its previous shipper; r.shippers tracks the goroutine until it returns.
func (r *Replicator) startShipperLocked(f *follower) {
	f.stopShipperLocked()
	ctx, cancel := context.WithCancel(r.leadCtx)
	sh := &shipper{epoch: r.epoch, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	f.ship = sh
	r.shippers.Add(1)
	go func() {
		defer r.shippers.Done()
		defer close(sh.done)
		r.ship(sh, f)
	}()
}

// ship keeps a replication stream open to f until sh is stopped,
// reconnecting with backoff; errors are logged with the follower's address.
func (r *Replicator) ship(sh *shipper, f *follower) {
	ctx, epoch := sh.ctx, sh.epoch
	conn, err := grpc.NewClient(f.addr, r.creds.DialOption(),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second}))
	if err != nil {
		r.logger.Error("bad follower address", "follower", f.addr, "error", err)
		return
	}
	defer conn.Close()
	client := statementv1.NewPeerClient(conn)
	backoff := 50 * time.Millisecond
	lastErr := ""
	for ctx.Err() == nil {
		err := r.shipOnce(sh, client, f)
		r.mu.Lock()
		if !sh.liveLocked() {
			r.mu.Unlock()
			return
		}
		f.connected = false
		if err != nil && ctx.Err() == nil {
			f.err = err.Error()
		}
		r.notifyLocked()
		r.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if err != nil && err.Error() != lastErr {
			r.logger.Warn("replication to follower failed; retrying", "follower", f.addr, "epoch", epoch, "error", err, "retry_in", backoff)
			lastErr = err.Error()
		}
		if errors.Is(err, errRebuildAsked) {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

var errRebuildAsked = errors.New("follower asked to rebuild from a snapshot")

// shipOnce runs one stream: handshake, truncation or rebuild, then appends.
// It returns only after the stream's readAcks goroutine has returned.
func (r *Replicator) shipOnce(sh *shipper, client statementv1.PeerClient, f *follower) error {
	epoch := sh.epoch
	ctx, cancel := context.WithCancel(sh.ctx)
	defer cancel()
	stream, err := client.Ship(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	hello := &statementv1.Hello{Epoch: epoch, Leader: r.Addr(), Partition: uint32(r.part)}
	if err := stream.Send(&statementv1.ShipRequest{Msg: &statementv1.ShipRequest_Hello{Hello: hello}}); err != nil {
		return r.streamErr(err, sh)
	}
	resp, err := stream.Recv()
	if err != nil {
		return r.streamErr(err, sh)
	}
	state := resp.GetState()
	if state == nil {
		return fmt.Errorf("follower answered hello without its state")
	}
	// Where do the two logs agree?
	last := r.log.Last()
	d := wal.Divergence(r.log.Epochs(), last, fromEpochs(state.GetEpochs()), state.GetLast())
	switch {
	case state.GetApplied() > d:
		return r.askRebuild(stream, fmt.Sprintf("it applied up to lsn %d but agrees with the leader only up to %d", state.GetApplied(), d))
	case d < last && d+1 < r.log.First():
		return r.askRebuild(stream, fmt.Sprintf("it needs lsn %d and the leader's log starts at %d", d+1, r.log.First()))
	}
	if state.GetLast() > d {
		r.logger.Info("truncating a follower's unacknowledged suffix", "follower", f.addr, "after", d, "its_last", state.GetLast())
		if err := stream.Send(&statementv1.ShipRequest{Msg: &statementv1.ShipRequest_Truncate{Truncate: &statementv1.Truncate{After: d}}}); err != nil {
			return r.streamErr(err, sh)
		}
	}
	r.mu.Lock()
	if !sh.liveLocked() {
		r.mu.Unlock()
		return nil
	}
	f.connected, f.err = true, ""
	f.persisted, f.applied = d, state.GetApplied()
	r.judgeLocked(f, time.Now())
	r.advanceCommitLocked()
	r.notifyLocked()
	r.mu.Unlock()

	acks := make(chan error, 1)
	acksDone := make(chan struct{})
	go func() {
		defer close(acksDone)
		acks <- r.readAcks(stream, f, sh)
	}()
	defer func() {
		cancel() // ends the stream, so readAcks's Recv returns
		<-acksDone
	}()
	next := d + 1
	sentCommit := uint64(0)
	beat := time.NewTicker(r.cfg.heartbeat)
	defer beat.Stop()
	for {
		if ctx.Err() != nil {
			return nil // stopped: send nothing more
		}
		r.mu.Lock()
		ch := r.changed
		commit := r.commit
		r.mu.Unlock()
		var entries []*statementv1.Entry
		if next <= r.log.Last() {
			recs, err := r.log.Read(next, r.cfg.batchBytes)
			if errors.Is(err, wal.ErrCompacted) {
				return r.askRebuild(stream, fmt.Sprintf("it needs lsn %d and the leader's log now starts at %d", next, r.log.First()))
			}
			if err != nil {
				return fmt.Errorf("read the log from lsn %d: %w", next, err)
			}
			for _, rec := range recs {
				entries = append(entries, toEntry(rec))
				next = rec.Last + 1
			}
		}
		if len(entries) > 0 || commit != sentCommit {
			msg := &statementv1.Append{Entries: entries, Commit: commit}
			if err := stream.Send(&statementv1.ShipRequest{Msg: &statementv1.ShipRequest_Append{Append: msg}}); err != nil {
				return r.streamErr(err, sh)
			}
			sentCommit = commit
			if len(entries) > 0 {
				continue
			}
		}
		select {
		case <-ch:
		case <-beat.C:
			sentCommit = 0 // resend the commit point: a heartbeat
		case err := <-acks:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// errShipperStopped ends a stream whose shipper was stopped.
var errShipperStopped = errors.New("shipper stopped")

// readAcks records f's acknowledgements until the stream ends or sh is
// stopped.
func (r *Replicator) readAcks(stream statementv1.Peer_ShipClient, f *follower, sh *shipper) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return r.streamErr(err, sh)
		}
		ack := resp.GetAck()
		if ack == nil {
			continue
		}
		r.mu.Lock()
		if !sh.liveLocked() {
			r.mu.Unlock()
			return errShipperStopped
		}
		f.persisted = max(f.persisted, ack.GetPersisted())
		f.applied = max(f.applied, ack.GetApplied())
		r.judgeLocked(f, time.Now())
		r.advanceCommitLocked()
		r.notifyLocked()
		r.mu.Unlock()
	}
}

// askRebuild tells the follower to rebuild from a snapshot and ends the stream.
func (r *Replicator) askRebuild(stream statementv1.Peer_ShipClient, reason string) error {
	_ = stream.Send(&statementv1.ShipRequest{Msg: &statementv1.ShipRequest_Rebuild{Rebuild: &statementv1.Rebuild{Reason: reason}}})
	_ = stream.CloseSend()
	return fmt.Errorf("%w: %s", errRebuildAsked, reason)
}

// streamErr interprets a stream error of sh: ABORTED means a newer epoch
// fenced this leader, which then stops acknowledging writes — unless sh was
// stopped meanwhile: the reply of a removed follower, or one that answers an
// earlier term, does not fence the leader.
func (r *Replicator) streamErr(err error, sh *shipper) error {
	epoch := sh.epoch
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("follower closed the stream")
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Aborted {
		r.mu.Lock()
		if sh.liveLocked() && r.role == roleLeader && r.epoch == epoch && r.fencedBy == "" {
			r.logger.Warn("a follower knows a newer epoch; no longer acknowledging writes", "epoch", epoch, "reason", s.Message())
			r.stopLeadingLocked("fenced: " + s.Message())
		}
		r.mu.Unlock()
		return fmt.Errorf("fenced: %s", s.Message())
	}
	return err
}

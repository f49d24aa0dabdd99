// Package none is the replicator that makes no copies: a partition of one
// replica (plugdb dev). Its leader acknowledges every write as soon as the
// host hands it over (ack async); it has no peers, no log and no address.
//
// Its only option is ack, whose only allowed value is async: semi-sync and
// sync need copies, which the statement replicator makes. A Replicate that
// asks for semi-sync or sync fails with replicators.ErrUnavailable.
package none

import (
	"context"
	"fmt"
	"iter"
	"sort"
	"strings"
	"sync"

	"github.com/plugdb/plugdb/replicators"
)

const (
	roleLeader   = "leader"
	roleFollower = "follower"
)

// Replicator is the none replicator of one replica.
type Replicator struct {
	part int

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
	closed  bool
	role    string
	epoch   uint64 // the epoch it leads or follows, the newest it knows
	end     uint64 // leader: statements through this LSN are acknowledged
	// pending are the leader's statements above a gap (concurrent calls may
	// arrive out of LSN order): first LSN → last LSN. They are acknowledged
	// once the gap before them fills.
	pending map[uint64]uint64
	applied uint64
}

var _ replicators.Replicator = (*Replicator)(nil)

// Open opens a none replicator. opts.Params may hold only ack: async.
func Open(_ context.Context, opts replicators.Options) (replicators.Replicator, error) {
	for name, value := range opts.Params {
		if name != "ack" {
			return nil, fmt.Errorf("replicator none: unknown option %q (allowed: ack): %w", name, replicators.ErrInvalidArgument)
		}
		if ack, err := replicators.ParseAck(value); err != nil || ack != replicators.AckAsync {
			return nil, fmt.Errorf("replicator none: option ack %q: the allowed value is async (none keeps no copies; semi-sync and sync need the statement replicator): %w", value, replicators.ErrInvalidArgument)
		}
	}
	return &Replicator{part: opts.Partition, changed: make(chan struct{}), pending: map[uint64]uint64{}}, nil
}

// notifyLocked wakes every waiting Replicate; r.mu is held.
func (r *Replicator) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Replicator) closedErrLocked() error {
	if r.closed {
		return fmt.Errorf("replicator none of partition %d: %w", r.part, replicators.ErrClosed)
	}
	return nil
}

// Addr is "": the none replicator has no peers.
func (r *Replicator) Addr() string { return "" }

// Lead makes this replica the leader of epoch; with no log, it returns applied.
func (r *Replicator) Lead(_ context.Context, epoch, applied uint64) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.closedErrLocked(); err != nil {
		return 0, err
	}
	if epoch == 0 {
		return 0, fmt.Errorf("replicator none: lead epoch 0: epochs start at 1: %w", replicators.ErrInvalidArgument)
	}
	if epoch < r.epoch {
		return 0, fmt.Errorf("replicator none: lead epoch %d: epoch %d is known: %w", epoch, r.epoch, replicators.ErrFenced)
	}
	r.role, r.epoch, r.end, r.applied = roleLeader, epoch, applied, applied
	clear(r.pending)
	r.notifyLocked()
	return applied, nil
}

// SetPeers accepts any peers: the none replicator copies to none of them.
func (r *Replicator) SetPeers(context.Context, []replicators.Peer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closedErrLocked()
}

// Replicate acknowledges st once every statement before it was handed over:
// at once, unless calls arrived out of LSN order. It fails with ErrUnavailable
// for ack semi-sync or sync.
func (r *Replicator) Replicate(ctx context.Context, st replicators.Statement, ack replicators.Ack) error {
	r.mu.Lock()
	if err := r.leaderErrLocked(); err != nil {
		r.mu.Unlock()
		return err
	}
	r.mu.Unlock()
	if err := st.Check(); err != nil {
		return fmt.Errorf("replicator none: %w", err)
	}
	switch ack {
	case replicators.AckDefault, replicators.AckAsync:
	case replicators.AckSemiSync, replicators.AckSync:
		return fmt.Errorf("replicator none keeps no copies: ack %s needs the statement replicator (ack allowed with none: default, async): %w", ack, replicators.ErrUnavailable)
	default:
		return fmt.Errorf("replicator none: %s: allowed values are default, %s: %w", ack, strings.Join(replicators.AckNames(), ", "), replicators.ErrInvalidArgument)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.leaderErrLocked(); err != nil {
		return err
	}
	if st.Epoch != r.epoch {
		return fmt.Errorf("replicator none: statement of epoch %d, but this replica leads epoch %d: %w", st.Epoch, r.epoch, replicators.ErrInvalidArgument)
	}
	if err := r.overlapLocked(st); err != nil {
		return err
	}
	epoch := r.epoch
	if st.First() == r.end+1 {
		r.end = st.Last()
		for {
			last, ok := r.pending[r.end+1]
			if !ok {
				break
			}
			delete(r.pending, r.end+1)
			r.end = last
		}
		r.notifyLocked()
		return nil
	}
	// A gap: an earlier statement is still on its way. Wait for it.
	r.pending[st.First()] = st.Last()
	for r.end < st.Last() {
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			r.mu.Lock()
			return fmt.Errorf("replicator none: lsn %d..%d: lsns from %d have not been replicated before the context ended (%v); the write may still commit: %w",
				st.First(), st.Last(), r.end+1, ctx.Err(), replicators.ErrUnavailable)
		}
		r.mu.Lock()
		if err := r.leaderErrLocked(); err != nil {
			return err
		}
		if r.epoch != epoch {
			return fmt.Errorf("replicator none: lsn %d..%d: epoch %d ended: %w", st.First(), st.Last(), epoch, replicators.ErrNotLeader)
		}
	}
	return nil
}

// leaderErrLocked says why this replica may not replicate; r.mu is held.
func (r *Replicator) leaderErrLocked() error {
	if err := r.closedErrLocked(); err != nil {
		return err
	}
	if r.role != roleLeader {
		return fmt.Errorf("replicator none of partition %d: this replica does not lead: %w", r.part, replicators.ErrNotLeader)
	}
	return nil
}

// overlapLocked fails for a statement whose LSNs were replicated already or
// are taken by a statement waiting for a gap; r.mu is held.
func (r *Replicator) overlapLocked(st replicators.Statement) error {
	if st.First() <= r.end {
		return fmt.Errorf("replicator none: statement %d..%d does not follow the last one: lsn %d was replicated: %w", st.First(), st.Last(), r.end, replicators.ErrInvalidArgument)
	}
	firsts := make([]uint64, 0, len(r.pending))
	for first := range r.pending {
		firsts = append(firsts, first)
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	for _, first := range firsts {
		if last := r.pending[first]; first <= st.Last() && st.First() <= last {
			return fmt.Errorf("replicator none: statement %d..%d overlaps statement %d..%d, already replicated: %w", st.First(), st.Last(), first, last, replicators.ErrInvalidArgument)
		}
	}
	return nil
}

// Follow makes this replica a follower in epoch; there is nothing to follow.
func (r *Replicator) Follow(_ context.Context, epoch uint64, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.closedErrLocked(); err != nil {
		return err
	}
	if epoch == 0 {
		return fmt.Errorf("replicator none: follow epoch 0: epochs start at 1: %w", replicators.ErrInvalidArgument)
	}
	r.role, r.epoch = roleFollower, max(r.epoch, epoch)
	clear(r.pending)
	r.notifyLocked()
	return nil
}

// Deliveries yields nothing: it ends when ctx ends, or yields ErrClosed once
// the replicator closes.
func (r *Replicator) Deliveries(ctx context.Context) iter.Seq2[replicators.Delivery, error] {
	return func(yield func(replicators.Delivery, error) bool) {
		for {
			r.mu.Lock()
			err := r.closedErrLocked()
			ch := r.changed
			r.mu.Unlock()
			if err != nil {
				yield(replicators.Delivery{}, err)
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
	}
}

// Applied records the host's applied LSN.
func (r *Replicator) Applied(_ context.Context, lsn uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.closedErrLocked(); err != nil {
		return err
	}
	r.applied = max(r.applied, lsn)
	return nil
}

// EpochAt returns the epoch this replica leads or follows (0 for lsn 0): with
// no log, the none replicator knows no other.
func (r *Replicator) EpochAt(_ context.Context, lsn uint64) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.closedErrLocked(); err != nil {
		return 0, err
	}
	if lsn == 0 {
		return 0, nil
	}
	return r.epoch, nil
}

// Restored records the snapshot's LSN as applied.
func (r *Replicator) Restored(_ context.Context, lsn, _ uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.closedErrLocked(); err != nil {
		return err
	}
	r.applied = lsn
	return nil
}

// Status reports the role, the epoch and ack async; the log is always empty.
func (r *Replicator) Status(context.Context) (replicators.Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.closedErrLocked(); err != nil {
		return replicators.Status{}, err
	}
	commit := r.applied
	if r.role == roleLeader {
		commit = r.end
	}
	return replicators.Status{Role: r.role, Epoch: r.epoch, LogStart: commit + 1, LogEnd: commit, Commit: commit, Ack: replicators.AckAsync}, nil
}

// Close closes the replicator: later calls fail with ErrClosed. Closing twice
// does nothing.
func (r *Replicator) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.notifyLocked()
	}
	return nil
}

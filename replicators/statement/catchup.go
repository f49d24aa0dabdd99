package statement

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statementv1 "github.com/plugdb/plugdb/proto/plugdb/statement/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/statement/wal"
)

// fetchTimeout bounds one Fetch call of a new leader's catch-up.
const fetchTimeout = time.Second

// peerState is what an in-sync peer answered a new leader.
type peerState struct {
	addr  string
	state *statementv1.State
	err   error
}

// lastEpoch is the epoch of the last statement a history with last covers.
func lastEpoch(epochs []wal.EpochStart, last uint64) uint64 {
	var e uint64
	for _, s := range epochs {
		if s.Start <= last {
			e = max(e, s.Epoch)
		}
	}
	return e
}

// catchUp makes the log of a replica elected to lead epoch hold every
// statement a write was acknowledged for, before it leads: it asks the
// in-sync peers for their logs' ends (which also fences the deposed leader:
// each peer adopts epoch), and copies the suffix it lacks from the most
// advanced one (highest last epoch, then LSN). An acknowledged statement is
// on at least quorum in-sync replicas, so enough of them must answer that
// every such set meets one that did (the old leader, gone, is not waited
// for; in-sync replicas that are not running count, and cannot answer);
// until they do it fails with ErrUnavailable and the host retries.
// The caller holds writeMu.
func (r *Replicator) catchUp(ctx context.Context, epoch uint64) error {
	r.mu.Lock()
	var peers []string
	for addr, f := range r.peers {
		if f.isr {
			peers = append(peers, addr)
		}
	}
	q := r.quorumLocked()
	absent := r.isrAbsent
	isr := len(peers) + 1 + absent
	r.mu.Unlock()
	if len(peers) == 0 && isr <= 2 {
		return nil // alone in the set, or with the old leader only
	}
	sort.Strings(peers)
	need := max(1, min(isr-q+1, isr-1)) // replicas to hear from, this one included

	states := r.askPeers(ctx, epoch, peers)
	heard := 1
	var best *peerState
	myEpochs, myLast := r.log.Epochs(), r.log.Last()
	bestEpoch, bestLast := lastEpoch(myEpochs, myLast), myLast
	var silent []string
	for i := range states {
		ps := &states[i]
		if ps.err != nil {
			if status.Code(ps.err) == codes.Aborted {
				return fmt.Errorf("partition %d: lead epoch %d: %s: %w", r.part, epoch, status.Convert(ps.err).Message(), replicators.ErrFenced)
			}
			silent = append(silent, fmt.Sprintf("%s (%v)", ps.addr, status.Convert(ps.err).Message()))
			continue
		}
		heard++
		e := lastEpoch(fromEpochs(ps.state.GetEpochs()), ps.state.GetLast())
		if e > bestEpoch || (e == bestEpoch && ps.state.GetLast() > bestLast) {
			best, bestEpoch, bestLast = ps, e, ps.state.GetLast()
		}
	}
	if absent > 0 {
		silent = append(silent, fmt.Sprintf("%d in-sync replica(s) not running", absent))
	}
	if heard < need {
		return fmt.Errorf("partition %d: cannot lead epoch %d yet: %d of %d in-sync replicas answered and %d must, to be sure no acknowledged write is missing; no answer from %s: %w",
			r.part, epoch, heard, isr, need, strings.Join(silent, ", "), replicators.ErrUnavailable)
	}
	if best == nil {
		return nil
	}
	return r.copyFrom(ctx, epoch, best)
}

// askPeers asks each peer for its log's state, in parallel.
func (r *Replicator) askPeers(ctx context.Context, epoch uint64, peers []string) []peerState {
	out := make([]peerState, len(peers))
	var wg sync.WaitGroup
	for i, addr := range peers {
		wg.Go(func() {
			var resp *statementv1.FetchResponse
			err := r.withPeer(addr, func(peer statementv1.PeerClient) (err error) {
				resp, err = r.fetch(ctx, peer, &statementv1.FetchRequest{Epoch: epoch})
				return err
			})
			out[i] = peerState{addr: addr, state: resp.GetState(), err: err}
		})
	}
	wg.Wait()
	return out
}

// withPeer runs fn with a client of the peer at addr, on one connection.
func (r *Replicator) withPeer(addr string, fn func(statementv1.PeerClient) error) error {
	conn, err := grpc.NewClient(addr, r.creds.DialOption())
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(statementv1.NewPeerClient(conn))
}

// fetch makes one Fetch call to peer.
func (r *Replicator) fetch(ctx context.Context, peer statementv1.PeerClient, req *statementv1.FetchRequest) (*statementv1.FetchResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req.Leader, req.Partition = r.Addr(), uint32(r.part)
	resp, err := peer.Fetch(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.GetState() == nil {
		return nil, status.Error(codes.Internal, "answered without its state")
	}
	return resp, nil
}

// copyFrom drops this log's suffix that best's log does not share and copies
// best's statements after the point where they agree.
func (r *Replicator) copyFrom(ctx context.Context, epoch uint64, best *peerState) error {
	last := best.state.GetLast()
	d := wal.Divergence(fromEpochs(best.state.GetEpochs()), last, r.log.Epochs(), r.log.Last())
	r.mu.Lock()
	applied := max(r.applyMax, r.deliverTo)
	r.mu.Unlock()
	if d < applied || d+1 < r.log.First() {
		return fmt.Errorf("partition %d: lead epoch %d: replica %s is further ahead, but agrees with this log only up to lsn %d, and this replica applied %d (log from %d): %w",
			r.part, epoch, best.addr, d, applied, r.log.First(), replicators.ErrUnavailable)
	}
	if d < r.log.Last() {
		r.logger.Warn("dropping this log's suffix that a more advanced in-sync replica does not have", "after", d, "log_last", r.log.Last(), "replica", best.addr)
		if err := r.log.TruncateAfter(d); err != nil {
			return fmt.Errorf("partition %d: lead epoch %d: %w", r.part, epoch, err)
		}
		r.mu.Lock()
		r.persisted = r.log.Last()
		r.mu.Unlock()
	}
	from := r.log.Last()
	err := r.withPeer(best.addr, func(peer statementv1.PeerClient) error {
		for r.log.Last() < last {
			resp, err := r.fetch(ctx, peer, &statementv1.FetchRequest{Epoch: epoch, Entries: true, After: r.log.Last(), MaxBytes: uint32(r.cfg.batchBytes)})
			if err != nil {
				return fmt.Errorf("partition %d: lead epoch %d: copy lsns after %d from %s: %v: %w", r.part, epoch, r.log.Last(), best.addr, err, replicators.ErrUnavailable)
			}
			if len(resp.GetEntries()) == 0 {
				return fmt.Errorf("partition %d: lead epoch %d: %s sent no statements after lsn %d (its log ends at %d): %w",
					r.part, epoch, best.addr, r.log.Last(), resp.GetState().GetLast(), replicators.ErrUnavailable)
			}
			recs := make([]wal.Record, 0, len(resp.GetEntries()))
			for _, e := range resp.GetEntries() {
				if e.GetLast() > last {
					break // appended after it answered: never acknowledged before this epoch
				}
				recs = append(recs, fromEntry(e))
			}
			if len(recs) == 0 {
				break
			}
			if err := r.log.Append(recs...); err != nil {
				return fmt.Errorf("partition %d: lead epoch %d: append what %s has: %w", r.part, epoch, best.addr, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.log.Sync(); err != nil {
		return fmt.Errorf("partition %d: lead epoch %d: sync the log: %w", r.part, epoch, err)
	}
	r.logger.Info("copied the statements a more advanced in-sync replica had before leading", "replica", best.addr, "after", from, "through", r.log.Last(), "epoch", epoch)
	return nil
}

// Fetch answers a newly elected leader: this replica adopts its epoch (so a
// deposed leader's stream is refused from now on), and sends its log's state
// and, if asked, the statements after req.After.
func (s *peerServer) Fetch(ctx context.Context, req *statementv1.FetchRequest) (*statementv1.FetchResponse, error) {
	r := s.r
	if int(req.GetPartition()) != r.part {
		return nil, status.Errorf(codes.InvalidArgument, "this replicator serves partition %d, not %d", r.part, req.GetPartition())
	}
	epoch := req.GetEpoch()
	r.mu.Lock()
	if err := r.errClosedLocked(); err != nil {
		r.mu.Unlock()
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if epoch < r.epoch || (epoch == r.epoch && r.role == roleLeader) {
		known, role := r.epoch, r.role
		r.mu.Unlock()
		return nil, status.Errorf(codes.Aborted, "replica at %s knows epoch %d (as %s); %s cannot lead epoch %d", r.Addr(), known, role, req.GetLeader(), epoch)
	}
	if r.role == roleLeader {
		r.logger.Warn("a replica elected for a newer epoch asked for this log; stepping down", "epoch", r.epoch, "new_epoch", epoch, "leader", req.GetLeader())
		r.stopLeadingLocked(fmt.Sprintf("deposed by leader %s of epoch %d", req.GetLeader(), epoch))
		r.delivered = max(r.delivered, r.applied)
		r.role = roleFollower
	}
	if epoch > r.epoch {
		r.epoch = epoch
		r.inbound++ // ends a deposed leader's stream
		r.notifyLocked()
	}
	state := &statementv1.State{Epochs: toEpochs(r.log.Epochs()), Last: r.log.Last(), Applied: r.applyMax, Epoch: r.epoch}
	r.mu.Unlock()
	resp := &statementv1.FetchResponse{State: state}
	if !req.GetEntries() {
		return resp, nil
	}
	recs, err := r.log.Read(req.GetAfter()+1, max(int(req.GetMaxBytes()), 1024))
	if errors.Is(err, wal.ErrCompacted) {
		return nil, status.Errorf(codes.OutOfRange, "lsn %d is no longer in the log (it starts at %d)", req.GetAfter()+1, r.log.First())
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read the log after lsn %d: %v", req.GetAfter(), err)
	}
	for _, rec := range recs {
		resp.Entries = append(resp.Entries, toEntry(rec))
	}
	return resp, nil
}

package statement

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statementv1 "github.com/plugdb/plugdb/proto/plugdb/statement/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/statement/wal"
)

// peerServer is the follower side of the peer protocol.
type peerServer struct {
	statementv1.UnimplementedPeerServer
	r *Replicator
}

// maxReorder bounds the entries a follower holds back waiting for a gap.
const maxReorder = 4096

// Ship receives a leader's stream.
func (s *peerServer) Ship(stream statementv1.Peer_ShipServer) error {
	r := s.r
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := req.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "a replication stream starts with hello")
	}
	if int(hello.GetPartition()) != r.part {
		return status.Errorf(codes.InvalidArgument, "this replicator serves partition %d, not %d", r.part, hello.GetPartition())
	}
	epoch := hello.GetEpoch()
	r.mu.Lock()
	if err := r.errClosedLocked(); err != nil {
		r.mu.Unlock()
		return status.Error(codes.Unavailable, err.Error())
	}
	if epoch < r.epoch || (epoch == r.epoch && r.role == roleLeader) {
		known, role := r.epoch, r.role
		r.mu.Unlock()
		return status.Errorf(codes.Aborted, "replica at %s knows epoch %d (as %s); leader %s of epoch %d is deposed", r.Addr(), known, role, hello.GetLeader(), epoch)
	}
	if r.rebuild {
		r.mu.Unlock()
		return status.Error(codes.Unavailable, "rebuilding from a snapshot; connect again when it is done")
	}
	if r.role == roleLeader {
		r.logger.Warn("a leader of a newer epoch connected; stepping down", "epoch", r.epoch, "new_epoch", epoch, "leader", hello.GetLeader())
		r.stopLeadingLocked(fmt.Sprintf("deposed by leader %s of epoch %d", hello.GetLeader(), epoch))
		r.delivered = max(r.delivered, r.applied)
	}
	r.role, r.epoch = roleFollower, epoch
	r.inbound++
	id := r.inbound
	state := &statementv1.State{Epochs: toEpochs(r.log.Epochs()), Last: r.log.Last(), Applied: r.applyMax, Epoch: r.epoch}
	r.notifyLocked()
	r.mu.Unlock()
	if err := stream.Send(&statementv1.ShipResponse{Msg: &statementv1.ShipResponse_State{State: state}}); err != nil {
		return err
	}

	held := map[uint64]wal.Record{} // entries that arrived ahead of a gap
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		r.mu.Lock()
		current, known := r.inbound == id && r.epoch == epoch && !r.closed, r.epoch
		r.mu.Unlock()
		if known > epoch {
			return status.Errorf(codes.Aborted, "replica at %s knows epoch %d; leader %s of epoch %d is deposed", r.Addr(), known, hello.GetLeader(), epoch)
		}
		if !current {
			// Replaced by a newer stream of the same term, or the replica
			// restarted its log (rebuild): not fencing, just reconnect.
			return status.Errorf(codes.Unavailable, "replica at %s replaced this stream; connect again", r.Addr())
		}
		switch m := req.Msg.(type) {
		case *statementv1.ShipRequest_Truncate:
			if err := s.truncate(m.Truncate.GetAfter()); err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			clear(held)
		case *statementv1.ShipRequest_Rebuild:
			s.askRebuild(m.Rebuild.GetReason(), hello.GetLeader())
			return nil
		case *statementv1.ShipRequest_Append:
			ack, err := s.append(m.Append, held)
			if err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			if err := stream.Send(&statementv1.ShipResponse{Msg: &statementv1.ShipResponse_Ack{Ack: ack}}); err != nil {
				return err
			}
		}
	}
}

// truncate drops the log's suffix after lsn.
func (s *peerServer) truncate(after uint64) error {
	r := s.r
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applyMax > after {
		return fmt.Errorf("truncate after lsn %d: lsn %d may already be applied", after, r.applyMax)
	}
	if err := r.log.TruncateAfter(after); err != nil {
		return fmt.Errorf("truncate after lsn %d: %w", after, err)
	}
	r.logger.Info("dropped the log's unacknowledged suffix", "after", after)
	r.persisted = r.log.Last()
	r.deliverTo = min(r.deliverTo, r.persisted)
	return nil
}

// append persists the entries that continue the log (holding back those
// after a gap, dropping duplicates) and moves the commit point.
func (s *peerServer) append(m *statementv1.Append, held map[uint64]wal.Record) (*statementv1.Ack, error) {
	r := s.r
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	// Entries that continue the log are appended; duplicates of what it
	// holds are dropped; those after a gap wait (bounded) for the gap.
	var recs []wal.Record
	next := r.log.Last() + 1
	take := func(rec wal.Record) {
		recs = append(recs, rec)
		next = rec.Last + 1
		for {
			h, ok := held[next]
			if !ok {
				return
			}
			delete(held, next)
			recs = append(recs, h)
			next = h.Last + 1
		}
	}
	for _, e := range m.GetEntries() {
		rec := fromEntry(e)
		switch {
		case rec.Last < rec.First || rec.First == 0:
			return nil, fmt.Errorf("malformed entry %d..%d", rec.First, rec.Last)
		case rec.Last < next:
			// a duplicate
		case rec.First == next:
			take(rec)
		case rec.First > next:
			if len(held) >= maxReorder {
				return nil, fmt.Errorf("more than %d entries wait for lsn %d; reconnect to resend from it", maxReorder, next)
			}
			held[rec.First] = rec
		default:
			return nil, fmt.Errorf("entry %d..%d overlaps the log's end %d", rec.First, rec.Last, next-1)
		}
	}
	for first, rec := range held { // duplicates of what is now logged
		if rec.Last < next {
			delete(held, first)
		}
	}
	if len(recs) > 0 {
		if err := r.log.Append(recs...); err != nil {
			return nil, fmt.Errorf("append %d..%d: %w", recs[0].First, recs[len(recs)-1].Last, err)
		}
		if err := r.log.Sync(); err != nil {
			return nil, fmt.Errorf("sync the log: %w", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.persisted = r.log.Last()
	r.commit = max(r.commit, m.GetCommit())
	if !r.rebuild {
		r.deliverTo = max(r.deliverTo, min(r.commit, r.persisted))
	}
	r.notifyLocked()
	return &statementv1.Ack{Persisted: r.persisted, Applied: r.applied}, nil
}

// askRebuild hands the host a rebuild request, once.
func (s *peerServer) askRebuild(reason, leader string) {
	r := s.r
	r.mu.Lock()
	if r.rebuild {
		r.mu.Unlock()
		return
	}
	r.rebuild = true
	r.deliverTo = r.delivered // deliver nothing more from the old log
	r.mu.Unlock()
	r.logger.Warn("rebuilding from a snapshot of the leader", "leader", leader, "reason", reason)
	select {
	case r.out <- replicators.Delivery{Rebuild: true}:
	default:
		go func() {
			select {
			case r.out <- replicators.Delivery{Rebuild: true}:
			case <-r.bg.Done():
			}
		}()
	}
}

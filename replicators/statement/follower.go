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

// shipQueue bounds the messages a follower's stream reads ahead of the
// writer that logs them.
const shipQueue = 16

// inStream is one leader stream into this follower.
type inStream struct {
	id     uint64 // r.inbound when it connected
	epoch  uint64
	leader string
}

// staleLocked says why a message of in may no longer be taken, or nil:
// the replica knows a newer epoch (the leader is deposed: Aborted), or a
// newer stream or a restart of the log replaced in (Unavailable: the leader
// connects again). r.mu is held.
func (r *Replicator) staleLocked(in inStream) error {
	if r.epoch > in.epoch {
		return status.Errorf(codes.Aborted, "replica at %s knows epoch %d; leader %s of epoch %d is deposed", r.Addr(), r.epoch, in.leader, in.epoch)
	}
	if r.inbound != in.id || r.epoch != in.epoch || r.closed {
		return status.Errorf(codes.Unavailable, "replica at %s replaced this stream; connect again", r.Addr())
	}
	return nil
}

func (r *Replicator) stale(in inStream) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.staleLocked(in)
}

// Ship receives a leader's stream. A receiver goroutine reads ahead into a
// bounded queue while the writer logs: it takes a message and every Append
// already waiting behind it, and logs them with one append, one fsync and
// one ack (acks are cumulative).
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
	in := inStream{id: r.inbound, epoch: epoch, leader: hello.GetLeader()}
	state := &statementv1.State{Epochs: toEpochs(r.log.Epochs()), Last: r.log.Last(), Applied: r.applyMax, Epoch: r.epoch}
	r.receivers.Add(1) // under r.mu, not closed: before Close waits
	r.notifyLocked()
	r.mu.Unlock()

	msgs := make(chan *statementv1.ShipRequest, shipQueue)
	quit := make(chan struct{})
	recvDone := make(chan struct{})
	var recvErr error
	go func() {
		defer r.receivers.Done()
		defer close(recvDone)
		defer close(msgs)
		recvErr = s.receive(stream, msgs, quit)
	}()
	defer close(quit)
	if err := stream.Send(&statementv1.ShipResponse{Msg: &statementv1.ShipResponse_State{State: state}}); err != nil {
		return err
	}
	err = s.write(stream, in, msgs)
	if errors.Is(err, errStreamEnded) {
		// The leader ended the stream: the receiver has returned.
		<-recvDone
		if errors.Is(recvErr, io.EOF) {
			return nil
		}
		return recvErr
	}
	// Ending the stream ourselves: the receiver's Recv returns once this
	// handler has (r.receivers tracks it for Close).
	return err
}

// errStreamEnded says the receiver queued everything the leader sent.
var errStreamEnded = errors.New("the leader ended the stream")

// receive queues the stream's messages until it ends or quit is closed.
func (s *peerServer) receive(stream statementv1.Peer_ShipServer, msgs chan<- *statementv1.ShipRequest, quit <-chan struct{}) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		select {
		case msgs <- req:
		case <-quit:
			return nil
		}
		if s.r.test.queued != nil {
			s.r.test.queued()
		}
	}
}

// write logs the queued messages of in, in order, until the queue ends
// (errStreamEnded) or a message fails.
func (s *peerServer) write(stream statementv1.Peer_ShipServer, in inStream, msgs <-chan *statementv1.ShipRequest) error {
	r := s.r
	held := map[uint64]wal.Record{}   // entries that arrived ahead of a gap
	var next *statementv1.ShipRequest // taken from the queue, not yet handled
	var lastAck *statementv1.Ack      // the last ack sent on this stream
	for {
		req := next
		next = nil
		if req == nil {
			var ok bool
			if req, ok = <-msgs; !ok {
				return errStreamEnded
			}
		}
		if err := r.stale(in); err != nil {
			return err
		}
		switch m := req.Msg.(type) {
		case *statementv1.ShipRequest_Truncate:
			if err := s.truncate(in, m.Truncate.GetAfter()); err != nil {
				return shipErr(err)
			}
			clear(held)
		case *statementv1.ShipRequest_Rebuild:
			s.askRebuild(m.Rebuild.GetReason(), in.leader)
			return nil
		case *statementv1.ShipRequest_Append:
			group := []*statementv1.Append{m.Append}
		drain: // every Append already queued joins the group
			for {
				select {
				case more, ok := <-msgs:
					if !ok {
						break drain
					}
					a := more.GetAppend()
					if a == nil { // a Truncate or Rebuild keeps its place
						next = more
						break drain
					}
					if err := r.stale(in); err != nil {
						return err
					}
					group = append(group, a)
				default:
					break drain
				}
			}
			ack, err := s.append(in, group, held)
			if err != nil {
				return shipErr(err)
			}
			if lastAck != nil && ack.GetPersisted() == lastAck.GetPersisted() && ack.GetApplied() == lastAck.GetApplied() {
				// A commit point or heartbeat that changed nothing the
				// leader counts: an ack would only wake it.
				continue
			}
			if err := stream.Send(&statementv1.ShipResponse{Msg: &statementv1.ShipResponse_Ack{Ack: ack}}); err != nil {
				return err
			}
			lastAck = ack
		}
	}
}

// shipErr is err as a gRPC status: as it is if it is one, else Internal.
func shipErr(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// truncate drops the log's suffix after lsn, for stream in.
func (s *peerServer) truncate(in inStream, after uint64) error {
	r := s.r
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.staleLocked(in); err != nil {
		return err
	}
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

// append persists, with one fsync, the entries of group that continue the
// log (holding back those after a gap, dropping duplicates) and moves the
// commit point. It fails with stream in's staleness error, acknowledging
// nothing, if in is no longer current before the append or after the
// fsync (a newer leader may have read this log's end meanwhile).
func (s *peerServer) append(in inStream, group []*statementv1.Append, held map[uint64]wal.Record) (*statementv1.Ack, error) {
	r := s.r
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if err := r.stale(in); err != nil {
		return nil, err
	}
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
	var commit uint64
	for _, m := range group {
		commit = max(commit, m.GetCommit())
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
		if err := r.syncLog(); err != nil {
			return nil, fmt.Errorf("sync the log through lsn %d: %w", recs[len(recs)-1].Last, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.persisted = r.log.Last()
	if err := r.staleLocked(in); err != nil {
		return nil, err
	}
	r.commit = max(r.commit, commit)
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
	// Counted under r.mu while not closed, so that Close, which waits for
	// r.loops once it set closed, waits for the hand-off below too.
	track := !r.closed
	if track {
		r.loops.Add(1)
	}
	r.mu.Unlock()
	if !track {
		return
	}
	r.logger.Warn("rebuilding from a snapshot of the leader", "leader", leader, "reason", reason)
	select {
	case r.out <- replicators.Delivery{Rebuild: true}:
		r.loops.Done()
	default:
		go func() {
			defer r.loops.Done()
			select {
			case r.out <- replicators.Delivery{Rebuild: true}:
			case <-r.bg.Done():
			}
		}()
	}
}

package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/engines"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
	"github.com/plugdb/plugdb/replicators"
)

// reconcileEvery is how often the node re-checks its role, its followers and
// the in-sync set even when nothing signalled a change.
const reconcileEvery = 200 * time.Millisecond

// A new leader waits for its engine to apply the log's end for at most
// catchUpTimeout, looking at its applied LSN every catchUpPoll.
const (
	catchUpTimeout = time.Minute
	catchUpPoll    = 5 * time.Millisecond
)

// runRoles keeps the replicator's and the partition's role in step with the
// election, and, on the leader, the in-sync set in ZooKeeper in step with the
// replicator's judgement.
func (n *Node) runRoles(ctx context.Context) {
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		roleCh, topoCh := n.cand.Changed(), n.topo.Changed()
		n.reconcile(ctx)
		select {
		case <-ctx.Done():
			n.part.StepDown()
			return
		case <-roleCh:
		case <-topoCh:
		case <-tick.C:
		}
	}
}

func (n *Node) reconcile(ctx context.Context) {
	role, epoch := n.cand.Role()
	view := n.topo.Partition(n.part.ID())
	if role == coord.RoleLeader {
		if n.readyEpoch() != epoch {
			n.becomeLeader(ctx, epoch)
		}
		if n.readyEpoch() == epoch {
			n.syncPeers(ctx, view)
		}
		return
	}
	if n.readyEpoch() != 0 {
		n.part.StepDown()
		n.setReady(0)
		n.logger.Info("no longer leader; writes stop", "partition", n.part.ID())
	}
	leader := ""
	if view.Leader.Epoch >= epoch {
		leader, epoch = view.Leader.Repl, max(epoch, view.Leader.Epoch)
	}
	if n.followed.epoch != epoch || n.followed.leader != leader {
		if err := n.repl.Follow(ctx, epoch, leader); err != nil {
			n.logger.Warn("follow the leader", "epoch", epoch, "leader", leader, "error", err)
			return
		}
		n.followed.epoch, n.followed.leader = epoch, leader
	}
}

// becomeLeader brings the engine to the end of the replicator's log, then
// opens the partition for writes in epoch.
func (n *Node) becomeLeader(ctx context.Context, epoch uint64) {
	n.part.StepDown()
	n.followed.epoch, n.followed.leader = 0, ""
	// A checkpoint: Lead takes applied as the point the log may be trimmed
	// to, so it must be durable in the engine.
	applied, err := n.part.Checkpoint(ctx)
	if err != nil {
		n.logger.Error("checkpoint the engine to lead", "error", err)
		return
	}
	// The replicator learns the in-sync set this leader took over, so that
	// it can first copy what another in-sync replica has and it lacks.
	n.setPeers(ctx, n.topo.Partition(n.part.ID()), n.cand.ISR())
	end, err := n.repl.Lead(ctx, epoch, applied)
	if err != nil {
		n.logger.Warn("the replicator cannot lead yet; trying again", "epoch", epoch, "error", err)
		return
	}
	// Deliveries bring the engine to the end of the log.
	if applied < end {
		deadline := time.NewTimer(catchUpTimeout)
		defer deadline.Stop()
		tick := time.NewTicker(catchUpPoll)
		defer tick.Stop()
		for applied < end {
			select {
			case <-tick.C:
			case <-deadline.C:
				n.logger.Error("the engine did not catch up with the log in time", "applied", applied, "end", end)
				return
			case <-ctx.Done():
				n.logger.Error("the engine did not catch up with the log in time", "applied", applied, "end", end)
				return
			}
			if applied, err = n.part.AppliedLSN(ctx); err != nil {
				return
			}
		}
	}
	if role, e := n.cand.Role(); role != coord.RoleLeader || e != epoch {
		return // lost it meanwhile
	}
	if err := n.part.Lead(epoch, end); err != nil {
		n.logger.Error("open the partition for writes", "epoch", epoch, "error", err)
		return
	}
	n.setReady(epoch)
	n.logger.Info("leading; taking writes", "partition", n.part.ID(), "epoch", epoch, "after_lsn", end)
}

// syncPeers records in ZooKeeper which followers are in sync (before the
// replicator counts their acks, and before it stops counting them) and hands
// the replicator the followers.
func (n *Node) syncPeers(ctx context.Context, view coord.View) {
	st, err := n.repl.Status(ctx)
	if err != nil {
		n.logger.Warn("replicator status", "error", err)
		return
	}
	inSync := map[string]bool{}
	for _, f := range st.Followers {
		inSync[f.Addr] = f.InSync
	}
	// A replicator that makes no copies (none) has nothing to be in sync
	// with: every replica is as good a leader as any.
	copies := n.repl.Addr() != ""
	want := []string{n.addr}
	for _, m := range view.Members {
		if m.Addr == n.addr {
			continue
		}
		if !copies {
			want = append(want, m.Addr)
			continue
		}
		if m.Repl != "" && inSync[m.Repl] {
			want = append(want, m.Addr)
		}
	}
	sort.Strings(want)
	have := slices.Clone(n.cand.ISR())
	sort.Strings(have)
	if !slices.Equal(want, have) {
		if err := n.cand.SetISR(ctx, want); err != nil {
			n.logger.Warn("record the in-sync set", "isr", want, "error", err)
			return
		}
		n.logger.Info("in-sync set changed", "partition", n.part.ID(), "isr", want, "was", have)
	}
	n.setPeers(ctx, view, n.cand.ISR())
}

// setPeers hands the replicator the partition's other members, marking those
// in the in-sync set isr.
func (n *Node) setPeers(ctx context.Context, view coord.View, isr []string) {
	if n.repl.Addr() == "" {
		return
	}
	peers := make([]replicators.Peer, 0, len(view.Members))
	running := map[string]bool{n.addr: true}
	for _, m := range view.Members {
		running[m.Addr] = true
		if m.Addr == n.addr || m.Repl == "" {
			continue
		}
		peers = append(peers, replicators.Peer{Addr: m.Repl, ISR: slices.Contains(isr, m.Addr)})
	}
	for _, a := range isr {
		if !running[a] { // in sync, not running: it counts, but cannot answer
			peers = append(peers, replicators.Peer{ISR: true})
		}
	}
	if err := n.repl.SetPeers(ctx, peers); err != nil {
		n.logger.Warn("hand the replicator its followers", "error", err)
	}
}

// maxApplyBatch bounds the mutations a follower applies as one engine batch.
const maxApplyBatch = 8192

// runDeliveries applies what the replicator delivers, in order: statements
// that are already waiting are applied together as one engine batch (one
// fsync). An apply that fails is retried (a follower cannot skip a statement).
func (n *Node) runDeliveries(ctx context.Context) {
	in := make(chan replicators.Delivery, 1024)
	go func() {
		defer close(in)
		for d, err := range n.repl.Deliveries(ctx) {
			if err != nil {
				n.logger.Error("replicator deliveries ended", "error", err)
				return
			}
			select {
			case in <- d:
			case <-ctx.Done():
				return
			}
		}
	}()
	var next *replicators.Delivery
	for {
		var d replicators.Delivery
		if next != nil {
			d, next = *next, nil
		} else {
			var ok bool
			if d, ok = <-in; !ok {
				return
			}
		}
		muts := d.Statement.Mutations
		for !d.Rebuild && len(muts) < maxApplyBatch && next == nil {
			select {
			case d2, ok := <-in:
				if !ok {
					break
				}
				if d2.Rebuild {
					next = &d2
					break
				}
				muts = append(muts, d2.Statement.Mutations...)
				continue
			default:
			}
			break
		}
		for ctx.Err() == nil {
			var err error
			if d.Rebuild {
				err = n.rebuild(ctx)
			} else {
				err = n.part.ApplyReplicated(ctx, muts)
			}
			if err == nil {
				break
			}
			n.logger.Error("apply from the leader; retrying", "rebuild", d.Rebuild, "lsn", d.Statement.First(), "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// rebuild replaces the engine's contents with a snapshot of the leader.
func (n *Node) rebuild(ctx context.Context) error {
	if _, ok := engines.AsSnapshotter(n.part.Engine()); !ok {
		return fmt.Errorf("rebuild from the leader's snapshot: %w", engines.Unsupported(n.part.Engine(), "restores", "Snapshotter"))
	}
	leader := n.topo.Partition(n.part.ID()).Leader.Addr
	if leader == "" || leader == n.addr {
		return fmt.Errorf("rebuild: no leader known to take a snapshot from")
	}
	conn, err := grpc.NewClient(leader, n.tls.DialOption())
	if err != nil {
		return fmt.Errorf("rebuild from %s: %w", leader, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := nodev1.NewNodeClient(conn).Snapshot(ctx, &nodev1.SnapshotRequest{Partition: uint32(n.part.ID())})
	if err != nil {
		return fmt.Errorf("rebuild: snapshot from %s: %w", leader, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("rebuild: snapshot from %s: %w", leader, err)
	}
	lsn, epoch := first.GetLsn(), first.GetEpoch()
	n.logger.Info("rebuilding from a snapshot", "leader", leader, "lsn", lsn, "epoch", epoch)
	start := time.Now()
	count := 0
	rows := func(yield func(engines.Row, error) bool) {
		chunk := first
		for {
			for _, r := range chunk.GetRows() {
				count++
				if !yield(engines.Row{Key: r.GetKey(), Value: r.GetValue(), LSN: r.GetLsn()}, nil) {
					return
				}
			}
			var err error
			if chunk, err = stream.Recv(); err != nil {
				if !errors.Is(err, io.EOF) {
					yield(engines.Row{}, fmt.Errorf("snapshot stream from %s: %w", leader, err))
				}
				return
			}
		}
	}
	// The replicator hears of the restore under the lock too, so no
	// checkpoint taken before the restore reaches it afterwards.
	unlock := n.part.LockApply()
	err = engines.Restore(ctx, n.part.Engine(), lsn, iter.Seq2[engines.Row, error](rows))
	if err != nil {
		unlock()
		return fmt.Errorf("rebuild: restore the snapshot at lsn %d: %w", lsn, err)
	}
	n.part.Restored(lsn)
	err = n.repl.Restored(ctx, lsn, epoch)
	unlock()
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	n.logger.Info("rebuilt from a snapshot", "rows", count, "lsn", lsn, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// snapshotChunkRows is how many rows one snapshot message carries.
const snapshotChunkRows = 1024

// snapshotServer serves the engine's snapshots to followers.
type snapshotServer struct {
	nodev1.UnimplementedNodeServer
	n *Node
}

// Snapshot streams a point-in-time copy of the engine; rows at or below
// req.SinceLsn without their values.
func (s snapshotServer) Snapshot(req *nodev1.SnapshotRequest, stream nodev1.Node_SnapshotServer) error {
	n := s.n
	if int(req.GetPartition()) != n.part.ID() {
		return status.Errorf(codes.InvalidArgument, "node %s serves partition %d, not %d", n.addr, n.part.ID(), req.GetPartition())
	}
	ctx := stream.Context()
	lsn, rows, err := engines.Snapshot(ctx, n.part.Engine())
	if errors.Is(err, errors.ErrUnsupported) {
		return status.Errorf(codes.Unimplemented, "snapshot: %v", err) // not a Snapshotter
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "snapshot: %v", err)
	}
	epoch, err := n.repl.EpochAt(ctx, lsn)
	if err != nil {
		// Returning ends ctx, which releases the engine's snapshot.
		return status.Errorf(codes.Unavailable, "snapshot at lsn %d: %v", lsn, err)
	}
	chunk := &nodev1.SnapshotChunk{Lsn: lsn, Epoch: epoch}
	for row, err := range rows {
		if err != nil {
			return status.Errorf(codes.Internal, "snapshot: %v", err)
		}
		r := &nodev1.Row{Key: row.Key, Value: row.Value, Lsn: row.LSN}
		if row.LSN <= req.GetSinceLsn() {
			r.Value = nil // unchanged since: the key only
		}
		chunk.Rows = append(chunk.Rows, r)
		if len(chunk.Rows) == snapshotChunkRows {
			if err := stream.Send(chunk); err != nil {
				return err
			}
			chunk = &nodev1.SnapshotChunk{}
		}
	}
	return stream.Send(chunk)
}

// RegisterServices registers the node-to-node services on srv.
func (n *Node) RegisterServices(srv *grpc.Server) {
	nodev1.RegisterNodeServer(srv, snapshotServer{n: n})
}

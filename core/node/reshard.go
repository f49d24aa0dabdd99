package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/go-zookeeper/zk"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
	"github.com/plugdb/plugdb/replicators"
)

// OpenLayout opens the partitioner that places keys under a layout (the
// keyspace's metadata), configured with its partition count and options.
type OpenLayout func(ctx context.Context, m coord.Meta) (partitioners.Partitioner, error)

// layout is what the node knows of its keyspace's layouts: the current one,
// and the move in progress (coord.Reshard), if any.
type layout struct {
	meta  coord.Meta
	owner *Owner // under meta; nil: every key is taken
	// move is the recorded move; nil when none runs. next places keys under
	// its To layout until it flips.
	move *coord.Reshard
	next *Owner
}

// fenced reports whether the move fences the keys that leave the partition.
func (l *layout) fenced() bool { return l.move != nil && l.move.State == coord.ReshardFenced }

// importing reports whether the move accepts copies for layout version.
func (l *layout) importing(version uint64) bool {
	return l.move != nil && l.move.State != coord.ReshardFlipped && l.move.To.Version == version
}

// checkKeys returns a *api.WrongPartitionError for a key the current layout
// places elsewhere, and, while a move is fenced, a *api.MovingError for a key
// it moves elsewhere.
func (n *Node) checkKeys(ctx context.Context, keys ...[]byte) error {
	l := n.layout.Load()
	if l == nil || l.owner == nil {
		return nil
	}
	if err := l.owner.Check(ctx, keys...); err != nil {
		return err
	}
	if !l.fenced() || l.next == nil {
		return nil
	}
	err := l.next.Check(ctx, keys...)
	var wp *api.WrongPartitionError
	if errors.As(err, &wp) {
		return &api.MovingError{Key: wp.Key, Partition: n.part.ID(), To: wp.Owner, Addr: n.addr}
	}
	return err
}

// followLayouts keeps the node's layout current with the keyspace's
// metadata and move record in ZooKeeper (watched; read again every second,
// every 100 ms while a move runs), and, while a move is fenced and this replica leads, acknowledges the
// fence once no write that passed the ownership check before it is still
// running.
func (n *Node) followLayouts(ctx context.Context) {
	if n.openLayout == nil {
		return
	}
	defer n.closeLayout()
	// The watch says when the record changes; the timer is a safety net,
	// short while a move runs (a leader's fence is acknowledged on it).
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	type ack struct{ version, epoch uint64 }
	var acked ack // the move (its To version) and epoch this replica acknowledged the fence of
	var armed <-chan zk.Event
	for {
		w, err := n.readLayout(ctx, armed == nil)
		if err != nil && ctx.Err() == nil {
			n.logger.Warn("read the keyspace's layout", "error", err)
		}
		if w != nil {
			armed = w
		}
		if l := n.layout.Load(); l != nil && l.fenced() {
			if epoch, ok := n.cand.Leader(); ok && n.readyEpoch() == epoch && acked != (ack{l.move.To.Version, epoch}) {
				// Every write that passed the ownership check before the
				// fence ends before the acknowledgement.
				n.writes.Lock()
				n.writes.Unlock() //nolint:staticcheck // an empty critical section: waiting for the writers is the point
				if err := coord.AckFence(ctx, n.client, n.part.ID(), epoch); err != nil {
					n.logger.Warn("acknowledge the reshard's fence", "error", err)
				} else {
					acked = ack{l.move.To.Version, epoch}
					n.logger.Info("fenced the keys that move", "epoch", epoch, "move", l.move.String())
				}
			}
		}
		every := time.Second
		if l := n.layout.Load(); l != nil && l.move != nil {
			every = 100 * time.Millisecond
		}
		timer.Reset(every)
		select {
		case <-ctx.Done():
			return
		case <-armed:
			armed = nil
		case <-timer.C:
		}
	}
}

// readLayout reads the move record (arming a watch when arm is set, which it
// returns) and the metadata, and installs the layout they make when it
// differs from the current one.
func (n *Node) readLayout(ctx context.Context, arm bool) (<-chan zk.Event, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var (
		r      coord.Reshard
		moving bool
		w      <-chan zk.Event
		err    error
	)
	if arm {
		r, moving, w, err = coord.WatchReshard(rctx, n.client)
	} else {
		r, moving, err = coord.ReadReshard(rctx, n.client)
	}
	if err != nil {
		return nil, err
	}
	meta, err := coord.ReadMeta(rctx, n.client)
	if err != nil {
		return w, err
	}
	if moving && r.State == coord.ReshardFlipped {
		meta = r.To // the flip wrote both; the metadata may have been read first
	}
	cur := n.layout.Load()
	var move *coord.Reshard
	if moving {
		move = &r
	}
	if cur != nil && cur.meta.LayoutVersion() == meta.LayoutVersion() && sameMove(cur.move, move) {
		return w, nil
	}
	l := &layout{meta: meta, move: move}
	if cur != nil && cur.meta.LayoutVersion() == meta.LayoutVersion() {
		l.owner = cur.owner
	} else {
		p, err := n.openLayout(rctx, meta)
		if err != nil {
			return w, fmt.Errorf("open the partitioner of layout v%d: %w", meta.LayoutVersion(), err)
		}
		n.keep(p)
		l.owner = NewOwner(p, n.part.ID(), n.addr)
	}
	if move != nil && move.State != coord.ReshardFlipped {
		if cur != nil && cur.next != nil && cur.move != nil && cur.move.To.Version == move.To.Version {
			l.next = cur.next
		} else {
			p, err := n.openLayout(rctx, move.To)
			if err != nil {
				return w, fmt.Errorf("open the partitioner of layout v%d: %w", move.To.LayoutVersion(), err)
			}
			n.keep(p)
			l.next = NewOwner(p, n.part.ID(), n.addr)
		}
	}
	n.layout.Store(l)
	n.logger.Info("layout", "version", meta.LayoutVersion(), "partitions", meta.Partitions, "partitioner", meta.Partitioner.Plugin, "move", moveString(move))
	return w, nil
}

// keep records a partitioner a layout opened, to close at Run's end (a
// request may still be placing keys with a replaced layout's).
func (n *Node) keep(p partitioners.Partitioner) {
	n.layoutMu.Lock()
	defer n.layoutMu.Unlock()
	n.opened = append(n.opened, p)
}

// closeLayout closes every partitioner the layouts opened.
func (n *Node) closeLayout() {
	n.layoutMu.Lock()
	defer n.layoutMu.Unlock()
	for _, p := range n.opened {
		p.Close()
	}
	n.opened = nil
}

func sameMove(a, b *coord.Reshard) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.State == b.State && a.To.Version == b.To.Version
}

func moveString(r *coord.Reshard) string {
	if r == nil {
		return "none"
	}
	return r.String()
}

// Import writes a reshard's copies into the partition (as its leader), one
// replicated write; see plugdb.node.v1.Node.
func (s snapshotServer) Import(ctx context.Context, req *nodev1.ImportRequest) (*nodev1.ImportResponse, error) {
	n := s.n
	if err := n.check(int(req.GetPartition())); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	l := n.layout.Load()
	if l == nil || !l.importing(req.GetLayoutVersion()) {
		return nil, status.Errorf(codes.FailedPrecondition, "partition %d: no move to layout v%d is running here (this node: layout v%d, move %s)",
			n.part.ID(), req.GetLayoutVersion(), layoutVersion(l), moveString(moveOf(l)))
	}
	if err := n.mustLead(); err != nil {
		return nil, api.ToStatus(err)
	}
	writes := make([]partition.Write, len(req.GetRows()))
	keys := make([][]byte, len(req.GetRows()))
	for i, r := range req.GetRows() {
		keys[i] = r.GetKey()
		writes[i] = partition.Write{Op: engines.OpPut, Key: r.GetKey(), Value: r.GetValue(), Cond: partition.Always}
		if r.GetDelete() {
			writes[i] = partition.Write{Op: engines.OpDelete, Key: r.GetKey(), Cond: partition.Always}
		}
	}
	if len(writes) == 0 {
		return &nodev1.ImportResponse{}, nil
	}
	if err := l.next.Check(ctx, keys...); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "import: %v", err)
	}
	lsns, err := n.part.WriteOnce(ctx, writes, replicators.AckDefault, partition.RequestID{})
	if err != nil {
		return nil, api.ToStatus(fmt.Errorf("partition %d: import %d rows: %w", n.part.ID(), len(writes), n.retryable(err)))
	}
	return &nodev1.ImportResponse{Lsn: lsns[len(lsns)-1]}, nil
}

// retryable turns a replicator's refusal as a non-leader (it lost its
// leadership while the write was under way) into a NotLeaderError, which the
// mover retries on the partition's next leader: an import or a prune may
// then be in the log or not, and writing it again is harmless (its writes
// are unconditional puts of copied values, or deletes of keys the partition
// no longer owns).
func (n *Node) retryable(err error) error {
	if errors.Is(err, replicators.ErrNotLeader) {
		return &api.NotLeaderError{Partition: n.part.ID(), Addr: n.addr, Why: "it lost its leadership during the write: " + err.Error()}
	}
	return err
}

// pruneBatch is how many rows one write of Prune deletes.
const pruneBatch = 512

// Prune deletes, as the leader, the rows the current layout places in other
// partitions; see plugdb.node.v1.Node.
func (s snapshotServer) Prune(ctx context.Context, req *nodev1.PruneRequest) (*nodev1.PruneResponse, error) {
	n := s.n
	if err := n.check(int(req.GetPartition())); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	l := n.layout.Load()
	if l == nil || l.meta.LayoutVersion() != req.GetLayoutVersion() || l.owner == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "partition %d: this node is on layout v%d, not v%d (it switches when it sees the flip)",
			n.part.ID(), layoutVersion(l), req.GetLayoutVersion())
	}
	if err := n.mustLead(); err != nil {
		return nil, api.ToStatus(err)
	}
	var foreign [][]byte
	for row, err := range n.part.Scan(ctx, engines.ScanRange{}) {
		if err != nil {
			return nil, api.ToStatus(fmt.Errorf("partition %d: prune: scan: %w", n.part.ID(), err))
		}
		var wp *api.WrongPartitionError
		if err := l.owner.Check(ctx, row.Key); errors.As(err, &wp) {
			foreign = append(foreign, row.Key)
		} else if err != nil {
			return nil, api.ToStatus(err)
		}
	}
	var deleted int64
	for len(foreign) > 0 {
		chunk := foreign[:min(pruneBatch, len(foreign))]
		foreign = foreign[len(chunk):]
		writes := make([]partition.Write, len(chunk))
		for i, k := range chunk {
			writes[i] = partition.Write{Op: engines.OpDelete, Key: k, Cond: partition.Always}
		}
		if _, err := n.part.WriteOnce(ctx, writes, replicators.AckDefault, partition.RequestID{}); err != nil {
			return nil, api.ToStatus(fmt.Errorf("partition %d: prune: delete %d rows: %w", n.part.ID(), len(chunk), n.retryable(err)))
		}
		deleted += int64(len(chunk))
	}
	if deleted > 0 {
		n.logger.Info("pruned the rows other partitions own", "rows", deleted, "layout", l.meta.LayoutVersion())
	}
	return &nodev1.PruneResponse{Deleted: deleted}, nil
}

// layoutOf returns the layout version the request was placed under
// (api.LayoutHeader), if it says.
func layoutOf(ctx context.Context) (uint64, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return 0, false
	}
	vs := md.Get(api.LayoutHeader)
	if len(vs) == 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(vs[0], 10, 64)
	return v, err == nil
}

func layoutVersion(l *layout) uint64 {
	if l == nil {
		return 0
	}
	return l.meta.LayoutVersion()
}

func moveOf(l *layout) *coord.Reshard {
	if l == nil {
		return nil
	}
	return l.move
}

// Package node is one replica of one partition: its engine behind the
// partition's writer, its replicator, its place in ZooKeeper (membership,
// leader election, the in-sync replica set), and the api.Backend its gRPC
// server serves. Writes and strong reads are served only while the replica
// is leader, caught up with its replicator's log and sure of its ZooKeeper
// session; stale reads are served by any replica from what it has applied.
package node

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/tlsconfig"
)

// Info describes the node for Status.
type Info struct {
	Cluster     string
	Partitions  int
	Engine      *plugdbv1.Plugin
	Partitioner *plugdbv1.Plugin
	Replicator  *plugdbv1.Plugin
}

// Node is one replica. It implements api.Backend.
type Node struct {
	part   *partition.Partition
	repl   replicators.Replicator
	client *coord.Client
	cand   *coord.Candidate
	// layout is the keyspace's layout and move in progress, as the node
	// last read them (reshard.go); its owner nil: every key is taken.
	layout     atomic.Pointer[layout]
	openLayout OpenLayout // nil: the layout never changes
	// writes is held (read) by each write from its ownership check to its
	// end, so that a reshard's fence waits for the writes it did not see.
	writes   sync.RWMutex
	layoutMu sync.Mutex
	opened   []partitioners.Partitioner // by the layouts, closed at Run's end
	topo     *coord.Topology
	addr     string
	info     Info
	logger   hclog.Logger
	tls      *tlsconfig.Creds
	applied  atomic.Uint64

	mu    sync.Mutex
	ready uint64 // the epoch in which the partition takes writes; 0: none

	// followed is what the replicator was last told to follow (runRoles only).
	followed struct {
		epoch  uint64
		leader string
	}
}

// Config is what a node needs besides its partition and ZooKeeper client.
type Config struct {
	// Replicator copies the partition's writes (replicators/none when there
	// is one replica); part must be opened with partition.OpenReplica over it.
	Replicator replicators.Replicator
	// Partitioner places keys as the router does (configured with the
	// cluster's partition count and options): the node refuses a key that
	// another partition owns and leaves such rows out of its scans. Nil
	// takes every key it is sent.
	Partitioner partitioners.Partitioner
	// Layout is the keyspace's metadata Partitioner was configured from,
	// and OpenLayout opens the partitioner of another layout: with it the
	// node follows reshards (docs/resharding.md). Nil: the layout is fixed.
	Layout     coord.Meta
	OpenLayout OpenLayout
	// ReplAddr is the replicator's address published to the other replicas
	// when they reach it elsewhere than Replicator.Addr() (a proxy, NAT).
	ReplAddr string
	// Unclean lets this replica lead although it is not in the in-sync set:
	// writes the old leader acknowledged and this replica lacks are lost.
	Unclean bool
	Logger  hclog.Logger
	// TLS is how the node reaches other nodes (a rebuild's snapshot from
	// the leader): nil, plaintext.
	TLS *tlsconfig.Creds
}

// New returns the replica at addr of part, taking part in its partition
// through client. Run starts the election.
func New(part *partition.Partition, client *coord.Client, addr string, info Info, cfg Config) *Node {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	n := &Node{part: part, repl: cfg.Replicator, client: client, addr: addr, info: info, logger: logger, tls: cfg.TLS}
	n.openLayout = cfg.OpenLayout
	l := &layout{meta: cfg.Layout}
	if cfg.Partitioner != nil {
		l.owner = NewOwner(cfg.Partitioner, part.ID(), addr)
	}
	n.layout.Store(l)
	replAddr := cfg.ReplAddr
	if replAddr == "" {
		replAddr = cfg.Replicator.Addr()
	}
	n.cand = coord.NewCandidate(client, coord.CandidateConfig{Partition: part.ID(), Addr: addr, Applied: n.applied.Load,
		Repl: replAddr, Unclean: cfg.Unclean})
	return n
}

// Run keeps the replica registered and in the election, its replicator in
// the matching role and the deliveries applied until ctx ends, then
// withdraws so that another replica takes over at once.
func (n *Node) Run(ctx context.Context) error {
	// The replicator learns what the engine holds before any leader
	// connects, so it neither re-delivers nor skips a statement: a
	// checkpoint makes it durable (what an engine opened LogBacked applied
	// before a kill may not be yet) and reports it.
	if _, err := n.part.Checkpoint(ctx); err != nil {
		return err
	}
	n.topo = coord.WatchTopology(ctx, n.client, n.info.Partitions)
	var wg sync.WaitGroup
	wg.Go(func() { n.trackApplied(ctx) })
	wg.Go(func() { n.runRoles(ctx) })
	wg.Go(func() { n.runDeliveries(ctx) })
	wg.Go(func() { n.followLayouts(ctx) })
	err := n.cand.Run(ctx)
	wg.Wait()
	n.topo.Close()
	return err
}

func (n *Node) readyEpoch() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready
}

func (n *Node) setReady(epoch uint64) {
	n.mu.Lock()
	n.ready = epoch
	n.mu.Unlock()
}

// trackApplied keeps the applied LSN published in ZooKeeper current.
func (n *Node) trackApplied(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if lsn, err := n.part.AppliedLSN(ctx); err == nil {
			n.applied.Store(lsn)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Partitions is the cluster's partition count.
func (n *Node) Partitions() int { return n.info.Partitions }

// Locate places every key in this node's partition: the router has already
// chosen it, and Get and Write refuse a key that another partition owns.
func (n *Node) Locate(_ context.Context, keys [][]byte, out []int) error {
	for i := range keys {
		out[i] = n.part.ID()
	}
	return nil
}

// Range is this node's partition.
func (n *Node) Range(context.Context, []byte, []byte) ([]int, error) {
	return []int{n.part.ID()}, nil
}

// mustLead returns a NotLeaderError unless the node leads now and takes
// writes.
func (n *Node) mustLead() error {
	epoch, ok := n.cand.Leader()
	if ok && n.readyEpoch() == epoch {
		return nil
	}
	why := "a follower"
	if ok {
		why = "a new leader still catching up with its log"
	} else if _, lease := n.client.Lease(); !lease {
		why = "without a sure ZooKeeper session"
	}
	return &api.NotLeaderError{Partition: n.part.ID(), Addr: n.addr, Why: why}
}

func (n *Node) check(p int) error {
	if p != n.part.ID() {
		return fmt.Errorf("node %s serves partition %d, not %d: %w", n.addr, n.part.ID(), p, engines.ErrInvalidArgument)
	}
	return nil
}

// owns returns a *api.WrongPartitionError if another partition owns one of
// keys, or a *api.MovingError if a reshard fences one (checkKeys).
func (n *Node) owns(ctx context.Context, keys ...[]byte) error {
	return n.checkKeys(ctx, keys...)
}

// Get reads a key; a strong read needs the leader. A key of another
// partition is refused with *api.WrongPartitionError.
func (n *Node) Get(ctx context.Context, p int, key []byte, rd api.Read) (engines.Row, error) {
	if err := n.check(p); err != nil {
		return engines.Row{}, err
	}
	if err := n.owns(ctx, key); err != nil {
		return engines.Row{}, err
	}
	if !rd.Stale {
		if err := n.mustLead(); err != nil {
			return engines.Row{}, err
		}
	}
	return n.part.Get(ctx, key)
}

// Write applies writes if the node leads, before and after applying them,
// and its partition owns every key: otherwise it writes none and returns
// *api.WrongPartitionError. A write with a request id is applied once
// however often it is sent, to this leader or the next (partition.WriteOnce).
func (n *Node) Write(ctx context.Context, p int, writes []partition.Write, ack replicators.Ack, id partition.RequestID) ([]uint64, error) {
	if err := n.check(p); err != nil {
		return nil, err
	}
	n.writes.RLock()
	defer n.writes.RUnlock()
	if err := n.ownsAll(ctx, writes); err != nil {
		return nil, err
	}
	if err := n.mustLead(); err != nil {
		return nil, err
	}
	lsns, err := n.part.WriteOnce(ctx, writes, ack, id)
	switch {
	case errors.Is(err, partition.ErrNotLeading):
		// Refused before it reached the replicator: nothing was written.
		return nil, &api.NotLeaderError{Partition: n.part.ID(), Addr: n.addr, Why: "no longer leader"}
	case errors.Is(err, replicators.ErrFenced), errors.Is(err, replicators.ErrNotLeader):
		// It reached the log and maybe a follower, which may commit it
		// under the next leader: its outcome is unknown, not "not written".
		return nil, fmt.Errorf("leadership was lost while the write was replicated (%v); the write may still commit: %w", err, replicators.ErrUnavailable)
	case err != nil:
		return nil, err
	}
	// The session may have gone while the write was replicated: a new
	// leader may be elected, so do not acknowledge.
	if err := n.mustLead(); err != nil {
		return nil, fmt.Errorf("the write was committed but leadership was lost before it was acknowledged (%v); it may or may not survive: %w", err, replicators.ErrUnavailable)
	}
	return lsns, nil
}

// ownsAll is owns for the keys of writes.
func (n *Node) ownsAll(ctx context.Context, writes []partition.Write) error {
	keys := make([][]byte, len(writes))
	for i, w := range writes {
		keys[i] = w.Key
	}
	return n.owns(ctx, keys...)
}

// Scan reads a range; a strong scan needs the leader. It yields only the
// rows this partition owns.
func (n *Node) Scan(ctx context.Context, p int, r engines.ScanRange, rd api.Read) iter.Seq2[engines.Row, error] {
	if err := n.check(p); err != nil {
		return func(yield func(engines.Row, error) bool) { yield(engines.Row{}, err) }
	}
	if !rd.Stale {
		if err := n.mustLead(); err != nil {
			return func(yield func(engines.Row, error) bool) { yield(engines.Row{}, err) }
		}
	}
	l := n.layout.Load()
	if l == nil || l.owner == nil {
		return n.part.Scan(ctx, r)
	}
	if v, ok := layoutOf(ctx); ok && v != l.meta.LayoutVersion() {
		// Placed under another layout: its partitions are not this one's.
		err := &api.MovingError{Key: r.Start, Partition: n.part.ID(), To: -1, Addr: n.addr}
		return func(yield func(engines.Row, error) bool) { yield(engines.Row{}, err) }
	}
	if l.fenced() && !rd.Stale {
		// The keys that move may change at their new owner as soon as the
		// move flips; a strong scan waits until it has.
		err := &api.MovingError{Key: r.Start, Partition: n.part.ID(), To: -1, Addr: n.addr}
		return func(yield func(engines.Row, error) bool) { yield(engines.Row{}, err) }
	}
	return l.owner.Scan(ctx, r, n.part.Scan)
}

// Status describes this replica; a leader also lists its followers as its
// replicator sees them (in-sync, persisted LSN, lag).
func (n *Node) Status(ctx context.Context) (*plugdbv1.StatusResponse, error) {
	lsn, err := n.part.AppliedLSN(ctx)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", n.part.ID(), err)
	}
	st, err := n.part.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", n.part.ID(), err)
	}
	role, epoch := n.cand.Role()
	id := uint32(n.part.ID())
	view := coord.View{}
	if n.topo != nil {
		view = n.topo.Partition(n.part.ID())
	}
	self := &plugdbv1.Replica{Partition: id, Addr: n.addr, Role: role, Epoch: epoch, AppliedLsn: lsn, Keys: st.Keys, Bytes: st.BytesOnDisk,
		Isr: slices.Contains(view.ISR, n.addr), ScansServed: n.part.ScansServed()}
	ps := &plugdbv1.PartitionStatus{Partition: id, Epoch: epoch, Replicas: []*plugdbv1.Replica{self}}
	if rs, err := n.repl.Status(ctx); err == nil {
		ps.Ack, ps.AckFallback = rs.Ack.String(), rs.Fallback
		ps.InSync, ps.AckNeeds, ps.ReplicaSet = uint32(rs.InSync), uint32(rs.AckNeeds), uint32(rs.ReplicaSet)
		self.PersistedLsn = rs.LogEnd
		if role == coord.RoleLeader {
			self.Isr = true
			byRepl := map[string]string{}
			for _, m := range view.Members {
				byRepl[m.Repl] = m.Addr
			}
			for _, f := range rs.Followers {
				addr := byRepl[f.Addr]
				if addr == "" {
					addr = f.Addr
				}
				ps.Replicas = append(ps.Replicas, &plugdbv1.Replica{Partition: id, Addr: addr, Role: coord.RoleFollower, Epoch: epoch,
					AppliedLsn: f.AppliedLSN, Isr: f.ISR, PersistedLsn: f.PersistedLSN, LagStatements: f.LagStatements,
					LagMs: f.LagTime.Milliseconds(), ReplicationError: f.Error})
			}
		}
	}
	return &plugdbv1.StatusResponse{
		Cluster: n.info.Cluster, Engine: n.info.Engine, Partitioner: n.info.Partitioner, Replicator: n.info.Replicator,
		Partitions: []*plugdbv1.PartitionStatus{ps},
	}, nil
}

// Package node is one replica of one partition: its engine behind the
// partition's writer, its place in ZooKeeper (membership and leader election),
// and the api.Backend its gRPC server serves. Writes and strong reads are
// served only while the replica is leader and sure of its ZooKeeper session;
// stale reads are served by any replica from what it has.
package node

import (
	"context"
	"fmt"
	"iter"
	"sync/atomic"
	"time"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
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
	part    *partition.Partition
	client  *coord.Client
	cand    *coord.Candidate
	addr    string
	info    Info
	applied atomic.Uint64
}

// New returns the replica at addr of part, taking part in its partition
// through client. Run starts the election.
func New(part *partition.Partition, client *coord.Client, addr string, info Info) *Node {
	n := &Node{part: part, client: client, addr: addr, info: info}
	n.cand = coord.NewCandidate(client, coord.CandidateConfig{Partition: part.ID(), Addr: addr, Applied: n.applied.Load})
	return n
}

// Run keeps the replica registered and in the election until ctx ends, then
// withdraws so that another replica takes over at once.
func (n *Node) Run(ctx context.Context) error {
	go n.trackApplied(ctx)
	return n.cand.Run(ctx)
}

// Leader reports whether the node may serve writes now, and its epoch.
func (n *Node) Leader() (uint64, bool) { return n.cand.Leader() }

// Role is the node's role now.
func (n *Node) Role() string {
	role, _ := n.cand.Role()
	return role
}

// RoleChanged returns a channel closed at the next role change.
func (n *Node) RoleChanged() <-chan struct{} { return n.cand.Changed() }

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
// chosen it.
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

// mustLead returns a NotLeaderError unless the node leads now.
func (n *Node) mustLead() error {
	if _, ok := n.cand.Leader(); ok {
		return nil
	}
	why := "a follower"
	if _, ok := n.client.Lease(); !ok {
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

// Get reads a key; a strong read needs the leader.
func (n *Node) Get(ctx context.Context, p int, key []byte, rd api.Read) (engines.Row, error) {
	if err := n.check(p); err != nil {
		return engines.Row{}, err
	}
	if !rd.Stale {
		if err := n.mustLead(); err != nil {
			return engines.Row{}, err
		}
	}
	return n.part.Get(ctx, key)
}

// Write applies writes if the node leads, before and after applying them.
func (n *Node) Write(ctx context.Context, p int, writes []partition.Write, ack replicators.Ack) ([]uint64, error) {
	if err := n.check(p); err != nil {
		return nil, err
	}
	if err := n.mustLead(); err != nil {
		return nil, err
	}
	_ = ack // ack: handled by the replication write path
	lsns, err := n.part.Write(ctx, writes)
	if err != nil {
		return nil, err
	}
	// Leadership may have gone while the write was applied: do not
	// acknowledge what a new leader may not have. (Replication makes this
	// exact; see the replicator.)
	if err := n.mustLead(); err != nil {
		return nil, fmt.Errorf("write applied locally but leadership was lost before it was acknowledged: %w", err)
	}
	return lsns, nil
}

// Scan reads a range; a strong scan needs the leader.
func (n *Node) Scan(ctx context.Context, p int, r engines.ScanRange, rd api.Read) iter.Seq2[engines.Row, error] {
	if err := n.check(p); err != nil {
		return func(yield func(engines.Row, error) bool) { yield(engines.Row{}, err) }
	}
	if !rd.Stale {
		if err := n.mustLead(); err != nil {
			return func(yield func(engines.Row, error) bool) { yield(engines.Row{}, err) }
		}
	}
	return n.part.Scan(ctx, r)
}

// Status describes this replica alone.
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
	return &plugdbv1.StatusResponse{
		Cluster: n.info.Cluster, Engine: n.info.Engine, Partitioner: n.info.Partitioner, Replicator: n.info.Replicator,
		Partitions: []*plugdbv1.PartitionStatus{{
			Partition: id, Epoch: epoch,
			Replicas: []*plugdbv1.Replica{{Partition: id, Addr: n.addr, Role: role, Epoch: epoch, AppliedLsn: lsn, Keys: st.Keys, Bytes: st.BytesOnDisk}},
		}},
	}, nil
}

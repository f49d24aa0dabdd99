package reshard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/coord"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
	"github.com/plugdb/plugdb/tlsconfig"
)

// ErrStuck is wrapped by the error of a snapshot that sent nothing for the
// idle time (GRPCNodes.Idle): a stuck node or a black-holed link.
var ErrStuck = errors.New("a stuck node or link")

// GRPCNodes reaches the partitions' leaders, as a topology watched in
// ZooKeeper names them, over the node service (plugdb.node.v1.Node).
type GRPCNodes struct {
	top *coord.Topology
	// TLS is how the nodes are reached (set before the first call); nil:
	// plaintext.
	TLS *tlsconfig.Creds
	// Idle bounds the wait for a snapshot's next chunk and for an import or
	// a prune (default 30 s): a stuck node or a black-holed link fails the
	// pass instead of holding it until the move's own deadline.
	Idle time.Duration

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewGRPCNodes returns the leaders of top's partitions.
func NewGRPCNodes(top *coord.Topology) *GRPCNodes {
	return &GRPCNodes{top: top, conns: map[string]*grpc.ClientConn{}}
}

// Close closes the connections.
func (g *GRPCNodes) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for _, c := range g.conns {
		errs = append(errs, c.Close())
	}
	g.conns = map[string]*grpc.ClientConn{}
	return errors.Join(errs...)
}

// leader returns partition p's leader's client, or an error naming the
// partition when it has none.
func (g *GRPCNodes) leader(p int) (nodev1.NodeClient, string, error) {
	if p >= g.top.Partitions() {
		return nil, "", fmt.Errorf("partition %d: not watched (%d partitions)", p, g.top.Partitions())
	}
	addr := g.top.Partition(p).Leader.Addr
	if addr == "" {
		g.top.Refresh(p)
		// Unavailable: an import waits (retry) for the partition to elect one.
		return nil, "", status.Errorf(codes.Unavailable, "partition %d has no leader (start its nodes: plugdb node --partition %d)", p, p)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.conns[addr]
	if !ok {
		var err error
		if c, err = grpc.NewClient(addr, g.TLS.DialOption()); err != nil {
			return nil, "", fmt.Errorf("node %s: %w", addr, err)
		}
		g.conns[addr] = c
	}
	return nodev1.NewNodeClient(c), addr, nil
}

// LeaderEpoch returns partition p's leader's epoch; 0 without a leader.
func (g *GRPCNodes) LeaderEpoch(p int) uint64 {
	if p >= g.top.Partitions() {
		return 0
	}
	return g.top.Partition(p).Leader.Epoch
}

// Snapshot streams partition p's rows from its leader.
func (g *GRPCNodes) Snapshot(ctx context.Context, p int, since uint64, each func(lsn, epoch uint64, chunk []Row) error) error {
	nc, addr, err := g.leader(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := g.idle()
	stuck := fmt.Errorf("snapshot from %s: no rows for %v: %w", addr, idle, ErrStuck)
	watchdog := time.AfterFunc(idle, func() { cancel(stuck) })
	defer watchdog.Stop()
	stream, err := nc.Snapshot(ctx, &nodev1.SnapshotRequest{Partition: uint32(p), SinceLsn: since})
	if context.Cause(ctx) == stuck {
		return stuck
	}
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", addr, err)
	}
	var lsn, epoch uint64
	for first := true; ; first = false {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if cause := context.Cause(ctx); cause == stuck {
			return stuck
		}
		if err != nil {
			return fmt.Errorf("snapshot from %s: %w", addr, err)
		}
		watchdog.Stop()
		if first {
			lsn, epoch = chunk.GetLsn(), chunk.GetEpoch()
		}
		rows := make([]Row, len(chunk.GetRows()))
		for i, r := range chunk.GetRows() {
			rows[i] = Row{Key: r.GetKey(), Value: r.GetValue(), LSN: r.GetLsn(), HasValue: r.GetLsn() > since}
		}
		if err := each(lsn, epoch, rows); err != nil {
			return err
		}
		watchdog.Reset(idle)
	}
}

func (g *GRPCNodes) idle() time.Duration {
	if g.Idle > 0 {
		return g.Idle
	}
	return 30 * time.Second
}

// Import writes rows into partition p's leader, waiting at most Idle for
// the answer (then Unavailable, which the mover retries).
func (g *GRPCNodes) Import(ctx context.Context, p int, version uint64, rows []*nodev1.ImportRow) error {
	nc, addr, err := g.leader(p)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, g.idle())
	defer cancel()
	if _, err := nc.Import(actx, &nodev1.ImportRequest{Partition: uint32(p), LayoutVersion: version, Rows: rows}); err != nil {
		if ctx.Err() == nil && actx.Err() != nil {
			// This attempt's bound, not the move's: worth another try.
			return status.Errorf(codes.Unavailable, "node %s: import: no answer in %v: %v", addr, g.idle(), err)
		}
		return fmt.Errorf("node %s: %w", addr, err)
	}
	return nil
}

// Prune asks partition p's leader to delete the rows it no longer owns.
func (g *GRPCNodes) Prune(ctx context.Context, p int, version uint64) (int64, error) {
	nc, addr, err := g.leader(p)
	if err != nil {
		return 0, err
	}
	res, err := nc.Prune(ctx, &nodev1.PruneRequest{Partition: uint32(p), LayoutVersion: version})
	if err != nil {
		return 0, fmt.Errorf("node %s: %w", addr, err)
	}
	return res.GetDeleted(), nil
}

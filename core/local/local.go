// Package local is the Backend of `plugdb dev`: every partition in this process,
// one replica each, each on its own engine (a plugin process or linked in).
package local

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
)

// Info describes the setup for Status.
type Info struct {
	Cluster     string
	Addr        string // where clients reach this process
	Engine      *plugdbv1.Plugin
	Partitioner *plugdbv1.Plugin
	Replicator  *plugdbv1.Plugin
}

// Backend serves partitions local to this process.
type Backend struct {
	info  Info
	parts []*partition.Partition
	pt    partitioners.Partitioner
}

// Open opens n partitions, each on an engine of block in dataDir/pN, with the
// hash partitioner linked in.
func Open(ctx context.Context, l *loader.Loader, block loader.Block, dataDir string, n int, info Info) (*Backend, error) {
	pt, err := hash.Open(ctx, hclog.NewNullLogger())
	if err == nil {
		err = pt.Configure(ctx, n, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("hash partitioner: %w", err)
	}
	return open(ctx, l, block, pt, dataDir, n, info)
}

// OpenPartitioned opens n partitions, each on an engine of block in
// dataDir/pN, with the partitioner of the partitioner block loaded by l (in a
// plugin process, or linked in when its mode is inprocess).
func OpenPartitioned(ctx context.Context, l *loader.Loader, block, partitioner loader.Block, dataDir string, n int, info Info) (*Backend, error) {
	pt, err := l.OpenPartitioner(ctx, partitioner, n)
	if err != nil {
		return nil, err
	}
	return open(ctx, l, block, pt, dataDir, n, info)
}

// open opens the partitions on pt, which the Backend owns from then on.
func open(ctx context.Context, l *loader.Loader, block loader.Block, pt partitioners.Partitioner, dataDir string, n int, info Info) (*Backend, error) {
	b := &Backend{info: info, pt: pt}
	for p := 0; p < n; p++ {
		dir := filepath.Join(dataDir, fmt.Sprintf("p%d", p))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Close()
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		eng, err := l.OpenEngine(ctx, block, dir)
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		part, err := partition.Open(ctx, p, eng)
		if err != nil {
			eng.Close()
			b.Close()
			return nil, err
		}
		b.parts = append(b.parts, part)
	}
	return b, nil
}

// Partitions is the number of partitions.
func (b *Backend) Partitions() int { return len(b.parts) }

// Locate maps each key to its partition with the partitioner.
func (b *Backend) Locate(ctx context.Context, keys [][]byte, out []int) error {
	return b.pt.Locate(ctx, keys, out)
}

// Range returns the partitions the partitioner says [start, end) touches.
func (b *Backend) Range(ctx context.Context, start, end []byte) ([]int, error) {
	return b.pt.Range(ctx, start, end)
}

// Get reads key from partition p; every read is strong (one replica each).
func (b *Backend) Get(ctx context.Context, p int, key []byte, _ api.Read) (engines.Row, error) {
	return b.parts[p].Get(ctx, key)
}

// Write applies writes to partition p. Each partition has one copy, so a write
// is acknowledged once it is durable in it: AckDefault and AckAsync are served,
// semi-sync and sync (which need followers) are refused with an error wrapping
// engines.ErrInvalidArgument. A write with a request id is applied once
// however often it is sent (partition.WriteOnce).
func (b *Backend) Write(ctx context.Context, p int, writes []partition.Write, ack replicators.Ack, id partition.RequestID) ([]uint64, error) {
	if ack != replicators.AckDefault && ack != replicators.AckAsync {
		return nil, ackError{ack}
	}
	return b.parts[p].WriteOnce(ctx, writes, replicators.AckDefault, id)
}

// ackError refuses an ack mode that needs followers. It is an
// engines.ErrInvalidArgument, with a message that says what to do instead.
type ackError struct{ ack replicators.Ack }

func (e ackError) Error() string {
	return fmt.Sprintf("plugdb dev keeps one copy: ack %s needs a cluster whose replicator is statement", e.ack)
}

func (e ackError) Unwrap() error { return engines.ErrInvalidArgument }

// Scan reads partition p's range.
func (b *Backend) Scan(ctx context.Context, p int, r engines.ScanRange, _ api.Read) iter.Seq2[engines.Row, error] {
	return b.parts[p].Scan(ctx, r)
}

// Status reports every partition as a single leader replica at epoch 1.
func (b *Backend) Status(ctx context.Context) (*plugdbv1.StatusResponse, error) {
	resp := &plugdbv1.StatusResponse{Cluster: b.info.Cluster, Engine: b.info.Engine, Partitioner: b.info.Partitioner, Replicator: b.info.Replicator}
	for _, part := range b.parts {
		lsn, err := part.AppliedLSN(ctx)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", part.ID(), err)
		}
		st, err := part.Stats(ctx)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", part.ID(), err)
		}
		resp.Partitions = append(resp.Partitions, &plugdbv1.PartitionStatus{
			Partition: uint32(part.ID()), Epoch: 1,
			Replicas: []*plugdbv1.Replica{{
				Partition: uint32(part.ID()), Addr: b.info.Addr, Role: "leader", Epoch: 1,
				AppliedLsn: lsn, Keys: st.Keys, Bytes: st.BytesOnDisk, ScansServed: part.ScansServed(),
			}},
		})
	}
	return resp, nil
}

// Close closes every partition and its engine, and the partitioner (ending
// plugin processes).
func (b *Backend) Close() error {
	var errs []error
	for _, p := range b.parts {
		errs = append(errs, p.Close())
	}
	if b.pt != nil {
		if err := b.pt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close partitioner: %w", err))
		}
	}
	return errors.Join(errs...)
}

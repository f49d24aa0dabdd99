// Package reshard moves a keyspace of a running cluster from one layout
// (partition count and partitioner) to another without losing a write
// (docs/resharding.md). The move is recorded in ZooKeeper (coord.Reshard);
// the nodes enforce it (they accept copies of the keys they will own, fence
// the keys that leave them, and switch layouts at the flip); this package
// drives it:
//
//  1. copying: each source partition's leader streams a snapshot; the rows
//     whose owner changes are imported into their new partitions.
//  2. fenced: the sources refuse the moving keys; once every source leader
//     has acknowledged the fence, a second snapshot pass copies what changed
//     since the first (rows above its LSN) and deletes the copies of keys
//     deleted meanwhile.
//  3. flipped: the metadata becomes the new layout in one ZooKeeper write;
//     routers and nodes switch, requests made on the old layout are refused
//     by name and retried.
//  4. the sources prune the rows they no longer own; the record is removed.
//
// A move to fewer partitions works the same way: the partitions it retires
// are sources only, every key of theirs moves, and after the prune they hold
// nothing; their nodes refuse every key (WRONG_PARTITION) until stopped.
//
// A move interrupted at any step resumes from the recorded state when Run is
// called again (a resumed copy starts over; copies are idempotent), or is
// rolled back by Abort until it has flipped.
package reshard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/plugdb/plugdb/core/coord"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
)

// Row is a snapshot row; HasValue is false for a row sent as its key only
// (unchanged since the pass's LSN).
type Row struct {
	Key, Value []byte
	LSN        uint64
	HasValue   bool
}

// Nodes reaches each partition's current leader.
type Nodes interface {
	// Snapshot streams partition p's rows from its leader, in chunks: lsn
	// is the LSN the snapshot was taken at, epoch the leader's; rows at or
	// below since come without values.
	Snapshot(ctx context.Context, p int, since uint64, each func(lsn, epoch uint64, chunk []Row) error) error
	// Import writes rows into partition p (its leader) for the layout of
	// version.
	Import(ctx context.Context, p int, version uint64, rows []*nodev1.ImportRow) error
	// Prune deletes the rows partition p no longer owns under layout
	// version.
	Prune(ctx context.Context, p int, version uint64) (int64, error)
	// LeaderEpoch returns partition p's leader's epoch; 0 without a leader.
	LeaderEpoch(p int) uint64
}

// Locator places keys in partitions (partitioners.Partitioner does).
type Locator interface {
	Locate(ctx context.Context, keys [][]byte, out []int) error
}

// Layouts opens the locator of a layout.
type Layouts func(ctx context.Context, m coord.Meta) (Locator, func(), error)

// Progress is what a running move reports.
type Progress struct {
	State  coord.ReshardState
	Pass   string // "copy", "catch-up", "prune", "done"
	Rows   int64  // rows read in this pass
	Copied int64  // rows imported (moved) in this pass
	Bytes  int64  // bytes imported in this pass
	// Lag is, in the catch-up pass, the statements the sources took since
	// the first pass's snapshots: what the catch-up reads values for.
	Lag uint64
}

// Report is what a finished move did.
type Report struct {
	// Moved is the number of rows copied to a new owner (first pass),
	// CaughtUp those copied again under the fence, and Deleted the copies
	// deleted (of keys deleted since they were copied, or left by an earlier
	// attempt).
	Moved, CaughtUp, Deleted int64
	// Pruned is the number of rows the sources deleted after the flip.
	Pruned int64
	// Retired is the number of partitions the move retired (a move to
	// fewer): they hold no key after the prune.
	Retired int
	// Read is the keys the first pass read, Rows the rows it was sent (a
	// key more than once if a snapshot repeats it).
	Read, Rows int64
	// CopyTime is the first pass's duration; Fenced how long the moving keys
	// were fenced (the longest write pause a client could see).
	CopyTime, Fenced time.Duration
}

// Mover drives one keyspace's moves.
type Mover struct {
	// Client is the keyspace's ZooKeeper client.
	Client *coord.Client
	// Nodes reaches the partitions' leaders; it must know every partition
	// of both layouts.
	Nodes Nodes
	// Open opens a layout's partitioner.
	Open Layouts
	// Progress, if set, receives progress reports.
	Progress func(Progress)
	// BatchRows bounds the rows of one import (default 512).
	BatchRows int
	// WaitLeaders bounds the wait, before a move begins or resumes, for
	// every partition of both layouts to have a leader (default 30s).
	WaitLeaders time.Duration
}

func (m *Mover) progress(p Progress) {
	if m.Progress != nil {
		m.Progress(p)
	}
}

// Run moves the keyspace to layout to, or resumes the recorded move when
// there is one (to is then ignored, if it differs Run says so), and returns
// what it did.
func (m *Mover) Run(ctx context.Context, to coord.Meta) (Report, error) {
	var r coord.Reshard
	var ok bool
	err := zkRetry(ctx, func() (err error) { r, ok, err = coord.ReadReshard(ctx, m.Client); return err })
	if err != nil {
		return Report{}, err
	}
	if ok && to.Partitions != 0 && !coord.SameLayout(r.To, to) {
		return Report{}, fmt.Errorf("%w: %s; finish it (plugdb reshard with no new layout) or abort it (--abort) first", coord.ErrReshardRunning, r)
	}
	if !ok {
		var cur coord.Meta
		if err := zkRetry(ctx, func() (err error) { cur, err = coord.ReadMeta(ctx, m.Client); return err }); err != nil {
			return Report{}, err
		}
		if err := checkLayouts(cur, to); err != nil {
			return Report{}, err
		}
		if err := m.awaitLeaders(ctx, max(cur.Partitions, to.Partitions)); err != nil {
			return Report{}, err
		}
		if r, err = coord.BeginReshard(ctx, m.Client, to); err != nil {
			return Report{}, err
		}
	}
	if ok {
		if err := m.awaitLeaders(ctx, max(r.From.Partitions, r.To.Partitions)); err != nil {
			return Report{}, err
		}
	}
	return m.resume(ctx, r)
}

// awaitLeaders waits until partitions 0..n-1 each have a leader: a move
// copies from every old partition's and into every new partition's.
func (m *Mover) awaitLeaders(ctx context.Context, n int) error {
	wait := m.WaitLeaders
	if wait <= 0 {
		wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for p := 0; p < n; {
		if m.Nodes.LeaderEpoch(p) != 0 {
			p++
			continue
		}
		m.progress(Progress{Pass: fmt.Sprintf("waiting for partition %d's leader", p)})
		select {
		case <-ctx.Done():
			return fmt.Errorf("partition %d has no leader after %v: start its nodes first (plugdb node --partition %d; plugdb cluster reshard does it for a local cluster)", p, wait, p)
		case <-tick.C:
		}
	}
	return nil
}

// checkLayouts refuses moves plugdb does not make.
func checkLayouts(from, to coord.Meta) error {
	switch {
	case to.Partitions < 1:
		return fmt.Errorf("reshard to %d partitions: allowed values are 1 or more", to.Partitions)
	case coord.SameLayout(from, to):
		return fmt.Errorf("reshard: the keyspace already has %d partitions placed by %s %v: nothing to move", to.Partitions, to.Partitioner.Plugin, to.Partitioner.Options)
	}
	return nil
}

// resume runs the recorded move r from its state to its end.
func (m *Mover) resume(ctx context.Context, r coord.Reshard) (Report, error) {
	var rep Report
	if r.State != coord.ReshardFlipped {
		from, closeFrom, err := m.Open(ctx, r.From)
		if err != nil {
			return rep, fmt.Errorf("open the current layout's partitioner: %w", err)
		}
		defer closeFrom()
		toLoc, closeTo, err := m.Open(ctx, r.To)
		if err != nil {
			return rep, fmt.Errorf("open the new layout's partitioner: %w", err)
		}
		defer closeTo()
		c := &copier{m: m, r: r, from: from, to: toLoc}
		lsns := make([]uint64, r.From.Partitions) // first pass's LSNs; 0: copy all again
		var copied keySets                        // the first pass's copies; nil: unknown (resumed fenced)
		if r.State == coord.ReshardCopying {
			start := time.Now()
			if lsns, copied, err = c.firstPass(ctx, &rep); err != nil {
				return rep, err
			}
			rep.CopyTime = time.Since(start)
			if err := m.advance(ctx, coord.ReshardFenced, func() error {
				return coord.SetReshardState(ctx, m.Client, coord.ReshardCopying, coord.ReshardFenced)
			}); err != nil {
				return rep, err
			}
		}
		fenced := time.Now()
		if err := c.lastPass(ctx, lsns, copied, &rep); err != nil {
			return rep, err
		}
		if err := m.advance(ctx, coord.ReshardFlipped, func() error { return coord.FlipReshard(ctx, m.Client) }); err != nil {
			return rep, err
		}
		rep.Fenced = time.Since(fenced)
	}
	m.progress(Progress{State: coord.ReshardFlipped, Pass: "prune"})
	for p := range r.From.Partitions {
		n, err := m.pruneWhenSwitched(ctx, p, r.To.Version)
		if err != nil {
			return rep, err
		}
		rep.Pruned += n
	}
	rep.Retired = max(r.From.Partitions-r.To.Partitions, 0)
	if err := zkRetry(ctx, func() error { return coord.EndReshard(ctx, m.Client) }); err != nil && !errors.Is(err, coord.ErrNoReshard) {
		return rep, err
	}
	m.progress(Progress{Pass: "done"})
	return rep, nil
}

// pruneWhenSwitched prunes partition p once its leader is on the new
// layout, retrying while it is not yet (it learns of the flip by a watch).
func (m *Mover) pruneWhenSwitched(ctx context.Context, p int, version uint64) (int64, error) {
	for {
		n, err := m.Nodes.Prune(ctx, p, version)
		if err == nil {
			return n, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("partition %d: prune: %w", p, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("partition %d: prune: %w (last: %v)", p, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond): // the leader learns of the flip by a watch
		}
	}
}

// Abort rolls back the recorded move if it has not flipped: the layout stays
// the current one and the fences are lifted. Rows already copied stay in
// their would-be owners, where no request sees them (a node serves only the
// keys it owns), until a later move's prune.
func Abort(ctx context.Context, c *coord.Client) error {
	return coord.AbortReshard(ctx, c)
}

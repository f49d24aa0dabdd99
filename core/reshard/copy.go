package reshard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/partition"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
)

// defaultBatchRows is how many rows one import carries by default.
const defaultBatchRows = 512

// copier copies one move's rows.
type copier struct {
	m        *Mover
	r        coord.Reshard
	from, to Locator
}

// placed is a chunk of rows with their partitions under both layouts.
type placed struct {
	rows     []Row
	from, to []int
}

// place locates a chunk's rows under both layouts, leaving out the
// partition's internal rows (its request table), which never move.
func (c *copier) place(ctx context.Context, chunk []Row) (placed, error) {
	var pl placed
	keys := make([][]byte, 0, len(chunk))
	for _, r := range chunk {
		if partition.Reserved(r.Key) {
			continue
		}
		pl.rows = append(pl.rows, r)
		keys = append(keys, r.Key)
	}
	pl.from, pl.to = make([]int, len(keys)), make([]int, len(keys))
	if len(keys) == 0 {
		return pl, nil
	}
	if err := c.from.Locate(ctx, keys, pl.from); err != nil {
		return pl, fmt.Errorf("place keys under the current layout: %w", err)
	}
	if err := c.to.Locate(ctx, keys, pl.to); err != nil {
		return pl, fmt.Errorf("place keys under the new layout: %w", err)
	}
	return pl, nil
}

// batches gathers imports per target partition and sends them full.
type batches struct {
	c    *copier
	rows map[int][]*nodev1.ImportRow
	n    int64 // rows sent
	b    int64 // bytes sent
}

func (c *copier) batches() *batches { return &batches{c: c, rows: map[int][]*nodev1.ImportRow{}} }

func (b *batches) add(ctx context.Context, q int, row *nodev1.ImportRow) error {
	b.rows[q] = append(b.rows[q], row)
	size := b.c.m.BatchRows
	if size <= 0 {
		size = defaultBatchRows
	}
	if len(b.rows[q]) >= size {
		return b.send(ctx, q)
	}
	return nil
}

func (b *batches) send(ctx context.Context, q int) error {
	rows := b.rows[q]
	if len(rows) == 0 {
		return nil
	}
	if err := retry(ctx, func() error { return b.c.m.Nodes.Import(ctx, q, b.c.r.To.Version, rows) }); err != nil {
		return fmt.Errorf("partition %d: import %d rows: %w", q, len(rows), err)
	}
	for _, r := range rows {
		b.n++
		b.b += int64(len(r.GetKey()) + len(r.GetValue()))
	}
	b.rows[q] = nil
	return nil
}

func (b *batches) flush(ctx context.Context) error {
	for q := range b.rows {
		if err := b.send(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// keySets are keys by partition.
type keySets map[int]map[string]struct{}

func (k keySets) add(p int, key []byte) {
	if k[p] == nil {
		k[p] = map[string]struct{}{}
	}
	k[p][string(key)] = struct{}{}
}

// passResult is what one pass over the sources did.
type passResult struct {
	lsns         []uint64 // the LSN each source's snapshot was taken at
	moving       keySets  // the keys the sources hold that move, by target
	rows, keys   int64    // rows sent; distinct keys among them
	copied, size int64    // rows imported and their bytes
}

// pass reads every source partition's snapshot, the partitions at once:
// rows above since[p] come with their values and are imported where they
// move; the others are keys only. It returns the moving keys the sources
// hold, by target.
func (c *copier) pass(ctx context.Context, since []uint64, state coord.ReshardState, name string) (passResult, error) {
	res := passResult{lsns: make([]uint64, c.r.From.Partitions), moving: keySets{}}
	var mu sync.Mutex // guards res and the progress reports
	var wg sync.WaitGroup
	errs := make([]error, c.r.From.Partitions)
	lag := make([]uint64, c.r.From.Partitions) // statements each source took since its first-pass snapshot
	for p := range c.r.From.Partitions {
		wg.Go(func() {
			var src sourceResult
			err := c.retrySource(ctx, p, name, func() (err error) {
				src, err = c.passSource(ctx, p, since[p], func(lsn uint64, rows, copied, size int64) {
					mu.Lock()
					defer mu.Unlock()
					if since[p] > 0 && lsn > since[p] {
						lag[p] = lsn - since[p]
					}
					c.m.progress(Progress{State: state, Pass: name, Rows: res.rows + rows, Copied: res.copied + copied, Bytes: res.size + size, Lag: sum(lag)})
				})
				return err
			})
			if err != nil {
				errs[p] = fmt.Errorf("partition %d: %s: %w", p, name, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			res.lsns[p] = src.lsn
			res.rows += src.rows
			res.keys += src.keys
			res.copied += src.copied
			res.size += src.size
			for q, keys := range src.moving {
				for k := range keys {
					res.moving.add(q, []byte(k))
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	c.m.progress(Progress{State: state, Pass: name, Rows: res.rows, Copied: res.copied, Bytes: res.size, Lag: sum(lag)})
	return res, nil
}

func sum(xs []uint64) uint64 {
	var n uint64
	for _, x := range xs {
		n += x
	}
	return n
}

// sourceResult is what one source's share of a pass did.
type sourceResult struct {
	lsn                      uint64
	moving                   keySets
	rows, keys, copied, size int64
}

// passSource reads source partition p's snapshot: rows above since come
// with their values and are imported where they move; report gets the
// running totals and the snapshot's LSN.
func (c *copier) passSource(ctx context.Context, p int, since uint64, report func(lsn uint64, rows, copied, size int64)) (sourceResult, error) {
	res := sourceResult{moving: keySets{}}
	b := c.batches()
	seen := map[string]struct{}{}
	var imported error // an import that failed: not the snapshot's fault
	err := c.m.Nodes.Snapshot(ctx, p, since, func(lsn, _ uint64, chunk []Row) error {
		pl, err := c.place(ctx, chunk)
		if err != nil {
			return err
		}
		res.rows += int64(len(pl.rows))
		for i, r := range pl.rows {
			seen[string(r.Key)] = struct{}{}
			q := pl.to[i]
			if pl.from[i] != p || q == p {
				continue // not the source's (left by an aborted move), or not moving
			}
			res.moving.add(q, r.Key)
			if r.HasValue {
				if err := b.add(ctx, q, &nodev1.ImportRow{Key: r.Key, Value: r.Value}); err != nil {
					imported = err
					return err
				}
			}
		}
		res.lsn = lsn
		report(lsn, res.rows, b.n, b.b)
		return nil
	})
	if err == nil {
		err = b.flush(ctx)
		imported = err
	}
	res.keys, res.copied, res.size = int64(len(seen)), b.n, b.b
	if imported != nil {
		return res, &importError{err: imported}
	}
	return res, err
}

// importError is a pass's failed import, which retrySource does not take
// again (the import has had its own retries).
type importError struct{ err error }

func (e *importError) Error() string { return e.err.Error() }
func (e *importError) Unwrap() error { return e.err }

// retrySource runs one source's share of a pass, and runs it again, for up
// to retryFor, when its snapshot failed because the source lost its leader
// or stopped answering (Unavailable, or a stuck stream): once the partition
// has a leader again, the share starts over (its imports are idempotent; a
// fenced pass checks afterwards that the leaders it read from fenced).
func (c *copier) retrySource(ctx context.Context, p int, name string, run func() error) error {
	deadline := time.Now().Add(retryFor)
	for {
		err := run()
		var ie *importError
		if err == nil || errors.As(err, &ie) || !(status.Code(err) == codes.Unavailable || errors.Is(err, ErrStuck)) || time.Now().After(deadline) {
			return err
		}
		c.m.progress(Progress{Pass: fmt.Sprintf("partition %d's snapshot broke (%v): %s again from its leader", p, err, name)})
		for c.m.Nodes.LeaderEpoch(p) == 0 && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
			case <-time.After(50 * time.Millisecond): // waiting for an election
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond): // a new leader's node starts serving
		}
	}
}

// firstPass copies every source partition's moving rows from a snapshot and
// returns the LSN each snapshot was taken at and the keys it copied, by
// target.
func (c *copier) firstPass(ctx context.Context, rep *Report) ([]uint64, keySets, error) {
	res, err := c.pass(ctx, make([]uint64, c.r.From.Partitions), coord.ReshardCopying, "copy")
	if err != nil {
		return nil, nil, err
	}
	rep.Rows, rep.Read, rep.Moved = res.rows, res.keys, res.copied
	// Copies an earlier, aborted or interrupted, attempt left that this one
	// did not make again (their keys were deleted since) would show at the
	// flip: delete them now, before the fence.
	cleaned, err := c.cleanTargets(ctx, res.moving, coord.ReshardCopying)
	if err != nil {
		return nil, nil, err
	}
	rep.Deleted += cleaned
	return res.lsns, res.moving, nil
}

// lastPass runs under the fence: once every source leader has fenced the
// moving keys, it copies the rows changed since the first pass (all of them
// where lsns is 0) and deletes the copies of keys deleted since. If a
// source's leader changed meanwhile, the pass runs again.
func (c *copier) lastPass(ctx context.Context, lsns []uint64, copied keySets, rep *Report) error {
	for {
		epochs, err := c.awaitFence(ctx)
		if err != nil {
			return err
		}
		caught, deleted, err := c.catchUp(ctx, lsns, copied)
		if err != nil {
			return err
		}
		if c.sameLeaders(ctx, epochs) {
			rep.CaughtUp, rep.Deleted = caught, rep.Deleted+deleted
			return nil
		}
	}
}

// awaitFence waits until every source partition's current leader has
// acknowledged the fence and returns their epochs.
func (c *copier) awaitFence(ctx context.Context) ([]uint64, error) {
	epochs := make([]uint64, c.r.From.Partitions)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for p := range epochs {
		for {
			e := c.m.Nodes.LeaderEpoch(p)
			var acked uint64
			err := zkRetry(ctx, func() (err error) { acked, err = coord.FenceAcked(ctx, c.m.Client, p); return err })
			if err != nil {
				return nil, err
			}
			if e != 0 && acked == e {
				epochs[p] = e
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("partition %d: wait for its leader (epoch %d) to fence the moving keys (acknowledged: epoch %d): %w", p, e, acked, ctx.Err())
			case <-tick.C:
			}
		}
	}
	return epochs, nil
}

// sameLeaders reports whether every source partition is still led by the
// leader of epochs, which fenced.
func (c *copier) sameLeaders(ctx context.Context, epochs []uint64) bool {
	for p, e := range epochs {
		if c.m.Nodes.LeaderEpoch(p) != e {
			return false
		}
		if acked, err := coord.FenceAcked(ctx, c.m.Client, p); err != nil || acked != e {
			return false
		}
	}
	return true
}

// catchUp copies what changed at the sources since lsns and deletes, at the
// targets, the copies of keys no source holds any more: of the keys copied
// (the first pass's copies), or, with copied nil (a move resumed fenced), of
// every copy a target holds.
func (c *copier) catchUp(ctx context.Context, lsns []uint64, copied keySets) (caught, deleted int64, err error) {
	res, err := c.pass(ctx, lsns, coord.ReshardFenced, "catch-up")
	if err != nil {
		return 0, 0, err
	}
	moving := res.moving
	caught = res.copied
	// The targets' copies of keys deleted since the first pass.
	if copied == nil {
		deleted, err = c.cleanTargets(ctx, moving, coord.ReshardFenced)
		return caught, deleted, err
	}
	del := c.batches()
	for q, keys := range copied {
		for k := range keys {
			if _, ok := moving[q][k]; ok {
				continue
			}
			if err := del.add(ctx, q, &nodev1.ImportRow{Key: []byte(k), Delete: true}); err != nil {
				return 0, 0, err
			}
		}
	}
	if err := del.flush(ctx); err != nil {
		return 0, 0, err
	}
	return caught, del.n, nil
}

// cleanTargets deletes, at each target partition, the copies (keys it owns
// under the new layout but not under the old) that are not in keep, and
// returns how many.
func (c *copier) cleanTargets(ctx context.Context, keep keySets, state coord.ReshardState) (int64, error) {
	del := c.batches()
	for q := range c.r.To.Partitions {
		err := c.m.Nodes.Snapshot(ctx, q, math.MaxUint64, func(_, _ uint64, chunk []Row) error {
			pl, err := c.place(ctx, chunk)
			if err != nil {
				return err
			}
			for i, r := range pl.rows {
				if pl.to[i] != q || pl.from[i] == q {
					continue // not a copy
				}
				if _, ok := keep[q][string(r.Key)]; ok {
					continue
				}
				if err := del.add(ctx, q, &nodev1.ImportRow{Key: r.Key, Delete: true}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("partition %d: find stale copies: %w", q, err)
		}
		c.m.progress(Progress{State: state, Pass: "clean", Copied: del.n})
	}
	if err := del.flush(ctx); err != nil {
		return 0, err
	}
	return del.n, nil
}

// retryFor bounds how long one import is retried while its partition
// cannot take it yet.
const retryFor = 30 * time.Second

// retry runs fn until it succeeds, retrying while the partition cannot take
// it yet: its leader has not seen the move's record (FAILED_PRECONDITION) or
// is changing (UNAVAILABLE). An import is idempotent (puts and deletes of
// whole rows), so sending one again is safe.
func retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(retryFor)
	wait := 10 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		code := status.Code(err)
		if code != codes.FailedPrecondition && code != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

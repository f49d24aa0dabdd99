// Package memory is an ordered in-memory storage engine: a copy-on-write B-tree
// guarded by a read-write mutex. It keeps nothing across Close (Capabilities.Durable
// is false) and is the simplest correct implementation of engines.Engine.
//
// Params:
//
//	max_key_size    largest key in bytes (default 1024; 0: no limit)
//	max_value_size  largest value in bytes (default 1048576; 0: no limit)
package memory

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/btree"

	"github.com/plugdb/plugdb/engines"
)

// Defaults of the params.
const (
	DefaultMaxKeySize   = 1024
	DefaultMaxValueSize = 1 << 20
)

const degree = 32

// item is one live row in the tree.
type item struct {
	key   []byte
	value []byte
	lsn   uint64
}

func less(a, b item) bool { return bytes.Compare(a.key, b.key) < 0 }

func (it item) row() engines.Row {
	return engines.Row{Key: bytes.Clone(it.key), Value: bytes.Clone(it.value), LSN: it.lsn}
}

// Engine is the in-memory engine. Stored keys and values are never modified in
// place, so a cloned tree can be read without the lock.
type Engine struct {
	caps engines.Capabilities

	mu      sync.RWMutex
	tree    *btree.BTreeG[item] // nil once closed
	applied uint64
}

var (
	_ engines.Engine               = (*Engine)(nil)
	_ engines.Scanner              = (*Engine)(nil)
	_ engines.Snapshotter          = (*Engine)(nil)
	_ engines.StatsReporter        = (*Engine)(nil)
	_ engines.CapabilitiesReporter = (*Engine)(nil)
	_ engines.Flusher              = (*Engine)(nil)
)

// Open opens an empty engine; opts.Dir is not used. It matches engines.OpenFunc.
func Open(ctx context.Context, opts engines.Options) (engines.Engine, error) {
	caps, err := parseParams(opts.Params)
	if err != nil {
		return nil, err
	}
	return &Engine{caps: caps, tree: btree.NewG(degree, less)}, nil
}

func parseParams(params map[string]string) (engines.Capabilities, error) {
	caps := engines.Capabilities{MaxKeySize: DefaultMaxKeySize, MaxValueSize: DefaultMaxValueSize}
	for _, name := range slices.Sorted(maps.Keys(params)) {
		var dst *int
		switch name {
		case "max_key_size":
			dst = &caps.MaxKeySize
		case "max_value_size":
			dst = &caps.MaxValueSize
		default:
			return caps, fmt.Errorf("memory engine: unknown option %q (allowed: max_key_size, max_value_size): %w",
				name, engines.ErrInvalidArgument)
		}
		v := strings.TrimSpace(params[name])
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return caps, fmt.Errorf("memory engine: option %s=%q: want a whole number of bytes >= 0 (0: no limit): %w",
				name, params[name], engines.ErrInvalidArgument)
		}
		*dst = n
	}
	return caps, nil
}

func closedErr(op string) error {
	return fmt.Errorf("memory engine: %s: %w", op, engines.ErrClosed)
}

// Get returns the live row for key, or an error wrapping engines.ErrNotFound.
func (e *Engine) Get(ctx context.Context, key []byte) (engines.Row, error) {
	if err := engines.CheckKey(e.caps, key); err != nil {
		return engines.Row{}, fmt.Errorf("memory engine: get: %w", err)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.tree == nil {
		return engines.Row{}, closedErr("get")
	}
	it, ok := e.tree.Get(item{key: key})
	if !ok {
		return engines.Row{}, fmt.Errorf("memory engine: get %q: %w", key, engines.ErrNotFound)
	}
	return it.row(), nil
}

// Apply validates the whole batch with engines.CheckBatch, then applies it under
// the write lock, so it is applied entirely or not at all. Batches apply in the
// order they take the lock; AppliedLSN becomes the highest LSN seen.
func (e *Engine) Apply(ctx context.Context, batch []engines.Mutation) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory engine: apply: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tree == nil {
		return closedErr("apply")
	}
	if err := engines.CheckBatch(e.caps, batch); err != nil {
		return fmt.Errorf("memory engine: apply: %w", err)
	}
	for _, m := range batch {
		switch m.Op {
		case engines.OpPut:
			e.tree.ReplaceOrInsert(item{key: bytes.Clone(m.Key), value: bytes.Clone(m.Value), lsn: m.LSN})
		case engines.OpDelete:
			e.tree.Delete(item{key: m.Key})
		}
		e.applied = max(e.applied, m.LSN)
	}
	return nil
}

// clone returns a point-in-time copy of the tree and the applied LSN. Clone
// changes the tree's copy-on-write state, so it takes the write lock.
func (e *Engine) clone(op string) (*btree.BTreeG[item], uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tree == nil {
		return nil, 0, closedErr(op)
	}
	return e.tree.Clone(), e.applied, nil
}

// ascend yields copies of the rows of t in [start, end) (end empty: unbounded),
// at most limit of them when limit > 0, and ends with ctx's error if it is done.
func ascend(ctx context.Context, t *btree.BTreeG[item], start, end []byte, limit int, yield func(engines.Row, error) bool) {
	var ctxErr error
	stopped, n := false, 0
	visit := func(it item) bool {
		if ctxErr = ctx.Err(); ctxErr != nil {
			return false
		}
		if !yield(it.row(), nil) {
			stopped = true
			return false
		}
		n++
		return limit <= 0 || n < limit
	}
	if len(end) == 0 {
		t.AscendGreaterOrEqual(item{key: start}, visit)
	} else if bytes.Compare(start, end) < 0 {
		t.AscendRange(item{key: start}, item{key: end}, visit)
	}
	if ctxErr != nil && !stopped {
		yield(engines.Row{}, fmt.Errorf("memory engine: scan: %w", ctxErr))
	}
}

// Scan yields the live rows in r in key order, from a copy-on-write clone taken
// when iteration starts; it holds no lock while yielding.
func (e *Engine) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(engines.Row{}, fmt.Errorf("memory engine: scan: %w", err))
			return
		}
		t, _, err := e.clone("scan")
		if err != nil {
			yield(engines.Row{}, err)
			return
		}
		ascend(ctx, t, r.Start, r.End, r.Limit, yield)
	}
}

// Snapshot returns the applied LSN and the rows as they are now; later writes
// are not seen by rows.
func (e *Engine) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	t, lsn, err := e.clone("snapshot")
	if err != nil {
		return 0, nil, err
	}
	return lsn, func(yield func(engines.Row, error) bool) {
		ascend(ctx, t, nil, nil, 0, yield)
	}, nil
}

// Restore builds a new tree from rows, then swaps it in with lsn under the write
// lock. If rows yields an error or an invalid row, the old contents stay.
func (e *Engine) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	e.mu.RLock()
	closed := e.tree == nil
	e.mu.RUnlock()
	if closed {
		return closedErr("restore")
	}
	t := btree.NewG(degree, less)
	i := 0
	for r, err := range rows {
		if err != nil {
			return fmt.Errorf("memory engine: restore: row %d: %w", i, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memory engine: restore: %w", err)
		}
		m := engines.Mutation{Op: engines.OpPut, Key: r.Key, Value: r.Value, LSN: 1}
		if err := engines.CheckBatch(e.caps, []engines.Mutation{m}); err != nil {
			return fmt.Errorf("memory engine: restore: row %d: %w", i, err)
		}
		t.ReplaceOrInsert(item{key: bytes.Clone(r.Key), value: bytes.Clone(r.Value), lsn: r.LSN})
		i++
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tree == nil {
		return closedErr("restore")
	}
	e.tree, e.applied = t, lsn
	return nil
}

// Flush returns AppliedLSN (engines.Flusher): a memory engine holds nothing
// durably, so there is nothing to make durable; after a restart it starts
// empty, and a replica is rebuilt from its leader.
func (e *Engine) Flush(ctx context.Context) (uint64, error) { return e.AppliedLSN(ctx) }

// AppliedLSN returns the highest LSN applied, or the LSN last restored.
func (e *Engine) AppliedLSN(ctx context.Context) (uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.tree == nil {
		return 0, closedErr("applied lsn")
	}
	return e.applied, nil
}

// Stats returns the number of live keys; nothing is on disk.
func (e *Engine) Stats(ctx context.Context) (engines.Stats, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.tree == nil {
		return engines.Stats{}, closedErr("stats")
	}
	return engines.Stats{Keys: int64(e.tree.Len())}, nil
}

// Capabilities reports a non-durable engine with the configured size limits.
func (e *Engine) Capabilities() engines.Capabilities { return e.caps }

// Close drops the contents. Closing again returns an error wrapping ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tree == nil {
		return closedErr("close")
	}
	e.tree = nil
	return nil
}

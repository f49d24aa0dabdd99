// Command customengine is a storage engine plugin as a third party writes one:
// it imports only plugdb's SDK (engines, plugins), keeps rows in a Go map, and
// serves them with plugins.Serve. Build it, then point a config at the binary:
//
//	go build -o bin/customengine ./examples/customengine
//	plugdb plugin check ./bin/customengine
package main

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/plugins"
)

var caps = engines.Capabilities{MaxKeySize: 1024, MaxValueSize: 1 << 20} // not durable

type mapEngine struct {
	mu     sync.RWMutex
	rows   map[string]engines.Row
	lsn    uint64
	closed bool
}

func open(context.Context, engines.Options) (engines.Engine, error) {
	return &mapEngine{rows: map[string]engines.Row{}}, nil
}

func (e *mapEngine) Get(_ context.Context, key []byte) (engines.Row, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.check(engines.CheckKey(caps, key)); err != nil {
		return engines.Row{}, err
	}
	if r, ok := e.rows[string(key)]; ok {
		return clone(r), nil
	}
	return engines.Row{}, fmt.Errorf("key %q: %w", key, engines.ErrNotFound)
}

func (e *mapEngine) Apply(_ context.Context, batch []engines.Mutation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.check(engines.CheckBatch(caps, batch)); err != nil {
		return err
	}
	for _, m := range batch {
		if delete(e.rows, string(m.Key)); m.Op == engines.OpPut {
			e.rows[string(m.Key)] = clone(engines.Row{Key: m.Key, Value: m.Value, LSN: m.LSN})
		}
		e.lsn = max(e.lsn, m.LSN)
	}
	return nil
}

// clone copies a row so caller and engine never share buffers.
func clone(r engines.Row) engines.Row {
	return engines.Row{Key: slices.Clone(r.Key), Value: slices.Clone(r.Value), LSN: r.LSN}
}

// sorted returns the rows in key order: a copy, so it is also a snapshot.
func (e *mapEngine) sorted() []engines.Row {
	keys := slices.Sorted(maps.Keys(e.rows))
	out := make([]engines.Row, len(keys))
	for i, k := range keys {
		out[i] = e.rows[k]
	}
	return out
}

func (e *mapEngine) Scan(_ context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return scan(e.sorted(), r, e.check(nil))
}

// scan yields the rows in r, or err.
func scan(rows []engines.Row, r engines.ScanRange, err error) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		if err != nil {
			yield(engines.Row{}, err)
			return
		}
		n := 0
		for _, row := range rows {
			k := string(row.Key)
			if k < string(r.Start) || (len(r.End) > 0 && k >= string(r.End)) {
				continue
			}
			if n++; (r.Limit > 0 && n > r.Limit) || !yield(clone(row), nil) {
				return
			}
		}
	}
}

func (e *mapEngine) Snapshot(context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.lsn, scan(e.sorted(), engines.ScanRange{}, nil), e.check(nil)
}

func (e *mapEngine) Restore(_ context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	fresh := map[string]engines.Row{}
	for r, err := range rows {
		if err == nil {
			err = engines.CheckBatch(caps, []engines.Mutation{{Op: engines.OpPut, Key: r.Key, Value: r.Value, LSN: max(r.LSN, 1)}})
		}
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		fresh[string(r.Key)] = clone(r)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rows, e.lsn = fresh, lsn
	return e.check(nil)
}

func (e *mapEngine) AppliedLSN(context.Context) (uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.lsn, e.check(nil)
}

func (e *mapEngine) Stats(context.Context) (engines.Stats, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return engines.Stats{Keys: int64(len(e.rows))}, e.check(nil)
}

func (e *mapEngine) Capabilities() engines.Capabilities { return caps }

func (e *mapEngine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

// check returns ErrClosed after Close, else err.
func (e *mapEngine) check(err error) error {
	if e.closed {
		return fmt.Errorf("map engine: %w", engines.ErrClosed)
	}
	return err
}

func main() { plugins.Serve(plugins.ServeConfig{Engine: open}) }

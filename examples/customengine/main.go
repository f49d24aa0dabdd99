// Command customengine is a storage engine plugin as a third party writes one:
// rows in a Go map, served with plugins.Serve. See docs/writing-an-engine.md.
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/plugins"
)

// mapEngine implements the required engines.Engine only, no optional interface.
type mapEngine struct {
	mu     sync.RWMutex
	rows   map[string]engines.Row // copies, replaced and never changed
	lsn    atomic.Uint64
	closed atomic.Bool
}

func open(_ context.Context, opts engines.Options) (engines.Engine, error) {
	if len(opts.Params) > 0 {
		return nil, fmt.Errorf("map engine takes no options, got %v: %w", opts.Params, engines.ErrInvalidArgument)
	}
	return &mapEngine{rows: map[string]engines.Row{}}, nil
}

func (e *mapEngine) Get(_ context.Context, key []byte) (engines.Row, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.check(engines.CheckKey(engines.DefaultCapabilities, key)); err != nil {
		return engines.Row{}, err
	}
	if r, ok := e.rows[string(key)]; ok {
		return r.Clone(), nil
	}
	return engines.Row{}, fmt.Errorf("key %q: %w", key, engines.ErrNotFound)
}

// Apply checks the whole batch before it changes anything: all or nothing.
func (e *mapEngine) Apply(_ context.Context, batch []engines.Mutation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.check(engines.CheckBatch(engines.DefaultCapabilities, batch)); err != nil {
		return err
	}
	for _, m := range batch {
		if delete(e.rows, string(m.Key)); m.Op == engines.OpPut {
			e.rows[string(m.Key)] = engines.Row{Key: m.Key, Value: m.Value, LSN: m.LSN}.Clone()
		}
		e.lsn.Store(max(e.lsn.Load(), m.LSN))
	}
	return nil
}

func (e *mapEngine) AppliedLSN(context.Context) (uint64, error) { return e.lsn.Load(), e.check(nil) }

func (e *mapEngine) Close() error { e.closed.Store(true); return nil }

// check returns an error wrapping ErrClosed after Close, else err.
func (e *mapEngine) check(err error) error {
	if e.closed.Load() {
		return fmt.Errorf("map engine: %w", engines.ErrClosed)
	}
	return err
}

func main() { plugins.Serve(plugins.ServeConfig{Engine: open}) }

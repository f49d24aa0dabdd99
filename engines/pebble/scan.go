package pebble

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/plugdb/plugdb/engines"
)

// cursor is an open pebble iterator, and for a Snapshot the pebble snapshot it
// reads. The loop that reads it steps it under mu; Close (and a Snapshot's
// cancelled context) release it under mu, so the loop sees closed on its next
// step rather than a closed iterator.
type cursor struct {
	mu     sync.Mutex
	snap   *pebbledb.Snapshot // nil for a Scan
	opts   pebbledb.IterOptions
	it     *pebbledb.Iterator // a Snapshot's is opened on its first step
	closed bool
}

// release closes the iterator and the snapshot; it returns the iterator's error
// the first time and nil after.
func (c *cursor) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var err error
	if c.it != nil {
		err = c.it.Close()
	}
	if c.snap != nil {
		err = errors.Join(err, c.snap.Close())
	}
	return err
}

// next steps the cursor and returns a copy of the row it lands on; ok is false
// at the end. errReleased means it was released (by Close or a cancelled
// context) before this step.
func (c *cursor) next(ctx context.Context, first bool) (row engines.Row, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return engines.Row{}, false, errReleased
	}
	if c.it == nil {
		if c.it, err = c.snap.NewIterWithContext(ctx, &c.opts); err != nil {
			return engines.Row{}, false, err
		}
	}
	if first {
		ok = c.it.First()
	} else {
		ok = c.it.Next()
	}
	if !ok {
		return engines.Row{}, false, c.it.Error()
	}
	v, err := c.it.ValueAndErr()
	if err != nil {
		return engines.Row{}, false, err
	}
	row, err = decodeRow(c.it.Key(), v)
	return row, err == nil, err
}

var errReleased = errors.New("released")

// closed reports whether the engine is closed.
func (e *Engine) closed() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.db == nil
}

// register adds c to the cursors Close releases; mu is held shared.
func (e *Engine) register(c *cursor) {
	e.cmu.Lock()
	e.cursors[c] = struct{}{}
	e.cmu.Unlock()
}

// unregister releases c, unless Close has already taken it over.
func (e *Engine) unregister(c *cursor) error {
	e.cmu.Lock()
	_, mine := e.cursors[c]
	delete(e.cursors, c)
	e.cmu.Unlock()
	if !mine {
		return nil
	}
	return c.release()
}

// bounds returns the pebble bounds of r, and false if r is empty.
func bounds(r engines.ScanRange) (pebbledb.IterOptions, bool) {
	o := pebbledb.IterOptions{LowerBound: rowKey(r.Start), UpperBound: rowsUpper}
	if len(r.End) > 0 {
		if string(r.Start) >= string(r.End) {
			return o, false
		}
		o.UpperBound = rowKey(r.End)
	}
	return o, true
}

// Scan yields copies of the live rows in r in key order, from a pebble
// iterator opened when iteration starts (it sees the writes committed by then).
// The iterator is closed when the loop ends, stops early or fails.
func (e *Engine) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(engines.Row{}, fmt.Errorf("pebble: scan: %w", err))
			return
		}
		opts, ok := bounds(r)
		if !ok {
			if e.closed() {
				yield(engines.Row{}, e.closedErr("scan"))
			}
			return
		}
		c, err := e.openScan(ctx, opts)
		if err != nil {
			yield(engines.Row{}, err)
			return
		}
		e.read(ctx, c, r.Limit, "scan", yield)
	}
}

func (e *Engine) openScan(ctx context.Context, opts pebbledb.IterOptions) (*cursor, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return nil, e.closedErr("scan")
	}
	it, err := e.db.NewIterWithContext(ctx, &opts)
	if err != nil {
		return nil, fmt.Errorf("pebble: scan: %w", err)
	}
	c := &cursor{opts: opts, it: it}
	e.register(c)
	return c, nil
}

// read yields c's rows, at most limit of them when limit > 0, and releases c
// when it ends. It ends with ctx's error if ctx is done, and with an error
// wrapping engines.ErrClosed if Close released c.
func (e *Engine) read(ctx context.Context, c *cursor, limit int, op string, yield func(engines.Row, error) bool) {
	for n := 0; limit <= 0 || n < limit; n++ {
		if err := ctx.Err(); err != nil {
			_ = e.unregister(c)
			yield(engines.Row{}, fmt.Errorf("pebble: %s: %w", op, err))
			return
		}
		row, ok, err := c.next(ctx, n == 0)
		if err != nil {
			_ = e.unregister(c)
			switch {
			case ctx.Err() != nil:
				err = fmt.Errorf("pebble: %s: %w", op, ctx.Err())
			case errors.Is(err, errReleased) && e.closed():
				err = e.closedErr(op)
			case errors.Is(err, errReleased):
				err = fmt.Errorf("pebble: %s: the rows were read once already; take a new snapshot", op)
			default:
				err = fmt.Errorf("pebble: %s: %w", op, err)
			}
			yield(engines.Row{}, err)
			return
		}
		if !ok {
			break
		}
		if !yield(row, nil) {
			_ = e.unregister(c)
			return
		}
	}
	if err := e.unregister(c); err != nil {
		yield(engines.Row{}, fmt.Errorf("pebble: %s: close iterator: %w", op, err))
	}
}

// Snapshot takes a pebble snapshot and reads the applied LSN from it; rows reads
// the snapshot's rows in key order. The snapshot is held until rows has been
// ranged to the end or stopped, ctx is done, or the engine is closed.
func (e *Engine) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, fmt.Errorf("pebble: snapshot: %w", err)
	}
	c, lsn, err := e.openSnapshot()
	if err != nil {
		return 0, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = e.unregister(c) })
	return lsn, func(yield func(engines.Row, error) bool) {
		defer stop()
		e.read(ctx, c, 0, "snapshot", yield)
	}, nil
}

func (e *Engine) openSnapshot() (*cursor, uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return nil, 0, e.closedErr("snapshot")
	}
	snap := e.db.NewSnapshot()
	lsn, err := readLSN(snap)
	if err != nil {
		_ = snap.Close()
		return nil, 0, fmt.Errorf("pebble: snapshot: %w", err)
	}
	c := &cursor{snap: snap, opts: pebbledb.IterOptions{LowerBound: rowsLower, UpperBound: rowsUpper}}
	e.register(c)
	return c, lsn, nil
}

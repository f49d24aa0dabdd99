package rowfile

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/plugdb/plugdb/engines"
)

// pinned is a point-in-time view of the index with references on every segment
// it may read, so compaction and Restore cannot close them underneath.
type pinned struct {
	walk func(fn func(key string, en entry) bool)
	lsn  uint64

	mu       sync.Mutex
	segs     []*segment
	released bool
}

// pin takes a view of the keys in [start, end).
func (e *Engine) pin(start, end []byte) (*pinned, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.check(); err != nil {
		return nil, err
	}
	p := &pinned{walk: e.idx.view(start, end), lsn: e.applied, segs: append([]*segment(nil), e.segs...)}
	for _, s := range p.segs {
		s.acquire()
	}
	return p, nil
}

// release drops the segment references; it may be called more than once.
func (p *pinned) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.released {
		p.released = true
		for _, s := range p.segs {
			s.release()
		}
	}
}

// rows yields the view's rows, reading and verifying each, up to limit (<= 0: all).
func (e *Engine) rows(ctx context.Context, p *pinned, limit int, yield func(engines.Row, error) bool) {
	n := 0
	p.walk(func(key string, en entry) bool {
		if err := ctx.Err(); err != nil {
			yield(engines.Row{}, err)
			return false
		}
		if err := e.check(); err != nil {
			yield(engines.Row{}, err)
			return false
		}
		p.mu.Lock()
		released := p.released
		p.mu.Unlock()
		if released {
			yield(engines.Row{}, fmt.Errorf("rowfile: snapshot released: %w", context.Canceled))
			return false
		}
		row, err := readRow(key, en)
		if err != nil {
			yield(engines.Row{}, fmt.Errorf("rowfile: read %q: %w", key, err))
			return false
		}
		if !yield(row, nil) {
			return false
		}
		n++
		return limit <= 0 || n < limit
	})
}

// Scan yields the live rows in r in ascending key order, as of when the iteration
// starts (later writes are not seen). With index: hash it collects and sorts the
// matching keys first.
func (e *Engine) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	start, end, limit := append([]byte(nil), r.Start...), append([]byte(nil), r.End...), r.Limit
	return func(yield func(engines.Row, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(engines.Row{}, err)
			return
		}
		p, err := e.pin(start, end)
		if err != nil {
			yield(engines.Row{}, err)
			return
		}
		defer p.release()
		e.rows(ctx, p, limit, yield)
	}
}

// Snapshot returns a point-in-time view: the applied LSN and all live rows in key
// order. The segments it reads stay open until rows has been ranged over to the end
// (or broken out of) or ctx is cancelled.
func (e *Engine) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	p, err := e.pin(nil, nil)
	if err != nil {
		return 0, nil, err
	}
	stop := context.AfterFunc(ctx, p.release)
	rows := func(yield func(engines.Row, error) bool) {
		defer func() {
			stop()
			p.release()
		}()
		e.rows(ctx, p, 0, yield)
	}
	return p.lsn, rows, nil
}

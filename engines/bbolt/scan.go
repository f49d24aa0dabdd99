package bbolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/plugdb/plugdb/engines"
)

// A Scan copies rows out in chunks, each in its own short read transaction, so a
// caller that ranges slowly holds no transaction open: an open read transaction
// keeps bbolt from reusing the pages it sees and from growing its mapping.
const (
	scanChunkRows  = 256
	scanChunkBytes = 4 << 20
)

// Scan yields the live rows in r in key order. Each chunk of rows is read
// consistently; writes between chunks may or may not be seen (Snapshot is the
// point-in-time read).
func (e *Engine) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		start, after := r.Start, false
		n := 0
		for {
			if err := ctx.Err(); err != nil {
				yield(engines.Row{}, fmt.Errorf("bbolt: scan: %w", err))
				return
			}
			want := scanChunkRows
			if r.Limit > 0 {
				want = min(want, r.Limit-n)
			}
			chunk, more, err := e.scanChunk(start, after, r.End, want)
			if err != nil {
				yield(engines.Row{}, err)
				return
			}
			for _, row := range chunk {
				if !yield(row, nil) {
					return
				}
			}
			n += len(chunk)
			if !more || (r.Limit > 0 && n >= r.Limit) {
				return
			}
			start, after = chunk[len(chunk)-1].Key, true
		}
	}
}

// scanChunk reads up to want rows from start (or after it, if after) to end,
// fewer if they pass scanChunkBytes; more tells whether rows of the range follow.
func (e *Engine) scanChunk(start []byte, after bool, end []byte, want int) (rows []engines.Row, more bool, err error) {
	err = e.view("scan", func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRows).Cursor()
		k, v := c.Seek(start)
		if after && bytes.Equal(k, start) {
			k, v = c.Next()
		}
		size := 0
		for ; k != nil && (len(end) == 0 || bytes.Compare(k, end) < 0); k, v = c.Next() {
			if len(rows) == want || (size >= scanChunkBytes && len(rows) > 0) {
				more = true
				break
			}
			row, err := decodeRow(k, v)
			if err != nil {
				return fmt.Errorf("bbolt: scan: %w", err)
			}
			rows = append(rows, row)
			size += len(k) + len(v)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return rows, more, nil
}

// snapshot is an open Snapshot: a read transaction held until its rows are read
// to the end, the caller stops ranging, its context ends or the engine closes.
type snapshot struct {
	mu  sync.Mutex
	tx  *bolt.Tx // nil once released
	err error    // why it was released
}

var errSnapshotRead = errors.New("bbolt: snapshot rows were already read; take a new snapshot")

// Snapshot returns the applied LSN and the rows as of one read transaction;
// later writes are not seen by rows. The transaction is released when rows has
// been ranged over (to the end or not), when ctx ends, or at Close.
//
// While the snapshot is open, bbolt cannot grow its mapping (see the option
// initial_mmap_size): a commit that needs to waits until the snapshot is released.
func (e *Engine) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, fmt.Errorf("bbolt: snapshot: %w", err)
	}
	s, lsn, err := e.openSnapshot()
	if err != nil {
		return 0, nil, err
	}
	stop := context.AfterFunc(ctx, func() {
		e.release(s, fmt.Errorf("bbolt: snapshot: %w", context.Cause(ctx)))
	})
	rows := func(yield func(engines.Row, error) bool) {
		defer func() {
			stop()
			e.release(s, errSnapshotRead)
		}()
		first := true
		var c *bolt.Cursor
		for {
			row, ok, err := s.next(&c, first)
			first = false
			if err != nil {
				yield(engines.Row{}, err)
				return
			}
			if !ok || !yield(row, nil) {
				return
			}
		}
	}
	return lsn, rows, nil
}

// openSnapshot begins the read transaction of a snapshot and registers it, so
// that Close can release it.
func (e *Engine) openSnapshot() (*snapshot, uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.usable("snapshot"); err != nil {
		return nil, 0, err
	}
	tx, err := e.db.Begin(false)
	if err != nil {
		return nil, 0, fmt.Errorf("bbolt %s: snapshot: %w", e.path, err)
	}
	lsn, err := getUint(tx.Bucket(bucketMeta), metaLSN)
	if err != nil {
		_ = tx.Rollback()
		return nil, 0, fmt.Errorf("bbolt %s: snapshot: %w", e.path, err)
	}
	s := &snapshot{tx: tx}
	e.snapMu.Lock()
	e.snaps[s] = struct{}{}
	e.snapMu.Unlock()
	return s, lsn, nil
}

// next returns a copy of the next row, moving *c (nil at first) on; ok is false
// at the end.
func (s *snapshot) next(c **bolt.Cursor, first bool) (row engines.Row, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx == nil {
		return row, false, s.err
	}
	var k, v []byte
	if first {
		*c = s.tx.Bucket(bucketRows).Cursor()
		k, v = (*c).First()
	} else {
		k, v = (*c).Next()
	}
	if k == nil {
		return row, false, nil
	}
	row, err = decodeRow(k, v)
	if err != nil {
		return row, false, fmt.Errorf("bbolt: snapshot: %w", err)
	}
	return row, true, nil
}

// release ends s's read transaction, if it is still open, recording err as the
// reason; it is safe to call more than once and from any goroutine.
func (e *Engine) release(s *snapshot, err error) {
	s.mu.Lock()
	if s.tx != nil {
		_ = s.tx.Rollback()
		s.tx, s.err = nil, err
	}
	s.mu.Unlock()
	e.snapMu.Lock()
	delete(e.snaps, s)
	e.snapMu.Unlock()
}

package pebble

import (
	"context"
	"fmt"
	"iter"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/plugdb/plugdb/engines"
)

// Restore replaces the rows with rows and the applied LSN with lsn in one pebble
// batch: a range deletion of all rows, a Set per row and a Set of the meta key,
// committed with pebble.Sync. If rows fails or yields an invalid row, the batch
// is dropped and the old contents stay; a crash before the commit is durable
// leaves them too. Applies wait while a Restore runs.
//
// The whole snapshot is held in memory in that batch; a snapshot of more than
// maxBatchBytes (3GiB) of keys and values is refused (pebble batches stop short
// of 4GiB). A larger partition would need a restore through a side folder.
func (e *Engine) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pebble: restore: %w", err)
	}
	e.rmu.Lock()
	defer e.rmu.Unlock()
	b, err := e.newBatch("restore")
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.DeleteRange(rowsLower, rowsUpper, nil); err != nil {
		return fmt.Errorf("pebble: restore: %w", err)
	}
	i, size := 0, 0
	for r, err := range rows {
		if err != nil {
			return fmt.Errorf("pebble: restore: row %d: %w", i, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("pebble: restore: %w", err)
		}
		m := engines.Mutation{Op: engines.OpPut, Key: r.Key, Value: r.Value, LSN: 1}
		if err := engines.CheckBatch(e.caps, []engines.Mutation{m}); err != nil {
			return fmt.Errorf("pebble: restore: row %d: %w", i, err)
		}
		if size += batchOverhead + len(r.Key) + len(r.Value); size > maxBatchBytes {
			return fmt.Errorf("pebble: restore: row %d: the snapshot exceeds the %d bytes one pebble batch holds: %w", i, maxBatchBytes, engines.ErrInvalidArgument)
		}
		putRow(b, r.Key, r.Value, r.LSN)
		i++
	}
	if err := b.Set(metaLSN, encodeLSN(lsn), nil); err != nil {
		return fmt.Errorf("pebble: restore: %w", err)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return e.closedErr("restore")
	}
	if err := b.Commit(pebbledb.Sync); err != nil {
		return fmt.Errorf("pebble %s: restore: commit: %w", e.dir, err)
	}
	e.applied.Store(lsn)
	return nil
}

// newBatch returns a new batch of db, or an error wrapping engines.ErrClosed.
func (e *Engine) newBatch(op string) (*pebbledb.Batch, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return nil, e.closedErr(op)
	}
	return e.db.NewBatch(), nil
}

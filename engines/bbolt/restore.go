package bbolt

import (
	"context"
	"fmt"
	"iter"

	bolt "go.etcd.io/bbolt"

	"github.com/plugdb/plugdb/engines"
)

// Restore writes rows in transactions of up to restoreChunkRows rows or
// restoreChunkBytes bytes, so a large restore does not hold all its rows in
// memory at once.
const (
	restoreChunkRows  = 4096
	restoreChunkBytes = 16 << 20
)

// Restore replaces the engine's contents with rows and its applied LSN with lsn.
// It stages the rows in the bucket restore (in several transactions), then in one
// transaction deletes rows, moves the staged bucket in its place and sets the
// applied LSN and key count; so a crash or error midway leaves the old contents
// (Open drops a leftover restore bucket). If rows yields an error or an invalid
// row, Restore fails and the old contents stay.
func (e *Engine) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bbolt: restore: %w", err)
	}
	if err := e.check("restore"); err != nil {
		return err
	}
	e.restoreMu.Lock()
	defer e.restoreMu.Unlock()
	err := e.update("restore", func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRestore) != nil {
			if err := tx.DeleteBucket(bucketRestore); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucket(bucketRestore)
		if err != nil {
			return err
		}
		_, err = b.CreateBucket(bucketRows)
		return err
	})
	if err != nil {
		return err
	}
	keys, err := e.stage(ctx, rows)
	if err != nil {
		// Best effort: Open drops the bucket too.
		_ = e.update("restore", func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketRestore) })
		return err
	}
	err = e.update("restore", func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketRows); err != nil {
			return fmt.Errorf("delete bucket %q: %w", bucketRows, err)
		}
		if err := tx.MoveBucket(bucketRows, tx.Bucket(bucketRestore), nil); err != nil {
			return fmt.Errorf("move the restored rows in place: %w", err)
		}
		if err := tx.DeleteBucket(bucketRestore); err != nil {
			return fmt.Errorf("delete bucket %q: %w", bucketRestore, err)
		}
		meta := tx.Bucket(bucketMeta)
		if err := putUint(meta, metaKeys, keys); err != nil {
			return err
		}
		return putUint(meta, metaLSN, lsn)
	})
	if err != nil || !e.logBacked {
		return err
	}
	// The host restarts its log after lsn once Restore returns: the restored
	// contents must be durable by then.
	_, err = e.Flush(ctx)
	return err
}

// stagedRow is a row in its stored form.
type stagedRow struct{ key, value []byte }

// stage writes rows into the restore bucket and returns how many keys it holds.
func (e *Engine) stage(ctx context.Context, rows iter.Seq2[engines.Row, error]) (uint64, error) {
	var keys uint64
	var chunk []stagedRow
	size := 0
	flush := func() error {
		var added uint64
		err := e.update("restore", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRestore).Bucket(bucketRows)
			added = 0
			for _, r := range chunk {
				if b.Get(r.key) == nil {
					added++
				}
				if err := b.Put(r.key, r.value); err != nil {
					return fmt.Errorf("put %q: %w", r.key, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys += added
		chunk, size = chunk[:0], 0
		return nil
	}
	i := 0
	for r, err := range rows {
		if err != nil {
			return 0, fmt.Errorf("bbolt: restore: row %d: %w", i, err)
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("bbolt: restore: %w", err)
		}
		m := engines.Mutation{Op: engines.OpPut, Key: r.Key, Value: r.Value, LSN: 1}
		if err := engines.CheckBatch(e.caps, []engines.Mutation{m}); err != nil {
			return 0, fmt.Errorf("bbolt: restore: row %d: %w", i, err)
		}
		chunk = append(chunk, stagedRow{key: append([]byte(nil), r.Key...), value: encodeValue(r.LSN, r.Value)})
		size += len(r.Key) + 8 + len(r.Value)
		if len(chunk) == restoreChunkRows || size >= restoreChunkBytes {
			if err := flush(); err != nil {
				return 0, err
			}
		}
		i++
	}
	if len(chunk) > 0 {
		if err := flush(); err != nil {
			return 0, err
		}
	}
	return keys, nil
}

package bbolt

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/plugdb/plugdb/engines"
)

// Group commit.
//
// bbolt runs one write transaction at a time, and with sync: always each commit
// costs an fsync. Apply queues its batch under wmu; if no request holds the
// writer role, this one takes it and its caller becomes the leader: it takes
// every queued batch, applies them in one write transaction (one fsync), hands
// the writer role to the first request queued meanwhile and wakes the callers of
// its group. So while one commit runs, the next group accumulates, and no caller
// waits for a timer (bbolt's DB.Batch waits up to 10ms for company, which would
// slow a lone writer down to 100 Applies a second).
//
// A group commits or fails whole, so each batch in it is atomic. The contract
// never has two batches on one key in flight at once, so their order within a
// group does not matter.

type request struct {
	batch []engines.Mutation
	done  chan result // the group's result, or the writer role
}

type result struct {
	err  error
	lead bool
}

// Apply checks the batch with engines.CheckBatch, then applies it atomically and,
// with sync: always, durably before it returns. AppliedLSN becomes the highest
// LSN seen.
func (e *Engine) Apply(ctx context.Context, batch []engines.Mutation) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bbolt: apply: %w", err)
	}
	if err := e.check("apply"); err != nil {
		return err
	}
	if err := engines.CheckBatch(e.caps, batch); err != nil {
		return fmt.Errorf("bbolt: apply: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	r := &request{batch: batch, done: make(chan result, 1)}
	e.wmu.Lock()
	e.queue = append(e.queue, r)
	lead := !e.leading
	e.leading = true
	e.wmu.Unlock()
	if !lead {
		res := <-r.done
		if !res.lead {
			return res.err
		}
	}
	e.lead()
	return (<-r.done).err
}

// check returns the error a call fails with on a closed or stopped engine.
func (e *Engine) check(op string) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.usable(op)
}

// lead commits the queued batches as one group, passes the writer role on and
// delivers the group's result. The caller holds the writer role, and its own
// request is queued.
func (e *Engine) lead() {
	e.wmu.Lock()
	group := e.queue
	e.queue = nil
	e.wmu.Unlock()

	err := e.commit(group)

	e.wmu.Lock()
	if len(e.queue) > 0 {
		e.queue[0].done <- result{lead: true}
	} else {
		e.leading = false
	}
	e.wmu.Unlock()
	for _, r := range group {
		r.done <- result{err: err}
	}
}

// commit applies group in one write transaction.
func (e *Engine) commit(group []*request) error {
	return e.update("apply", func(tx *bolt.Tx) error { return applyGroup(tx, group) })
}

// update runs fn in a write transaction under mu.RLock and commits it. An error
// from fn rolls the transaction back; a failed commit stops the engine (fail),
// as the file's state is then unknown.
func (e *Engine) update(op string, fn func(*bolt.Tx) error) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.usable(op); err != nil {
		return err
	}
	tx, err := e.db.Begin(true)
	if err != nil {
		return fmt.Errorf("bbolt %s: %s: begin: %w", e.path, op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("bbolt %s: %s: %w", e.path, op, err)
	}
	if err := tx.Commit(); err != nil {
		return e.fail(fmt.Errorf("%s: commit: %w", op, err))
	}
	return nil
}

// applyGroup writes the batches of group and updates the key count and the
// applied LSN in tx.
func applyGroup(tx *bolt.Tx, group []*request) error {
	rows, meta := tx.Bucket(bucketRows), tx.Bucket(bucketMeta)
	keys, err := getUint(meta, metaKeys)
	if err != nil {
		return err
	}
	applied, err := getUint(meta, metaLSN)
	if err != nil {
		return err
	}
	for _, r := range group {
		for _, m := range r.batch {
			exists := rows.Get(m.Key) != nil
			switch m.Op {
			case engines.OpPut:
				if err := rows.Put(m.Key, encodeValue(m.LSN, m.Value)); err != nil {
					return fmt.Errorf("put %q: %w", m.Key, err)
				}
				if !exists {
					keys++
				}
			case engines.OpDelete:
				if exists {
					if err := rows.Delete(m.Key); err != nil {
						return fmt.Errorf("delete %q: %w", m.Key, err)
					}
					keys--
				}
			}
			applied = max(applied, m.LSN)
		}
	}
	if err := putUint(meta, metaKeys, keys); err != nil {
		return err
	}
	return putUint(meta, metaLSN, applied)
}

// Package partition is one partition's write path on a node: it orders writes,
// assigns their LSNs, checks create/update conditions, and applies concurrent
// writers' batches to the engine as one group (host-level group commit), so the
// engine sees gap-free LSNs in order.
//
// A replicated partition (OpenReplica) hands each group to its replicator
// first and applies it only once the replicator says its ack mode is met, so
// no reader sees a write a failover could lose. Where the replicator's log is
// the commit point (ReplicaOptions.AnswerAtCommit) it answers the group's
// writes then, and applies them to the engine just after; a read of a key
// with an answered write not yet applied (or a scan, while any is) waits
// for it. While a group replicates, the writes that arrive gather into the
// next one; conditions see the writes of earlier groups not applied yet.
package partition

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/replicators"
)

// ErrAlreadyExists: a create found the key.
var ErrAlreadyExists = errors.New("already exists")

// Cond is a write's precondition.
type Cond uint8

const (
	// Always writes unconditionally (put, delete of a key that may be missing).
	Always Cond = iota
	// MustNotExist fails the write with ErrAlreadyExists if the key exists (create).
	MustNotExist
	// MustExist fails the write with engines.ErrNotFound if the key is missing (update, delete).
	MustExist
)

// Write is one put or delete with its condition.
type Write struct {
	Op    engines.Op
	Key   []byte
	Value []byte
	Cond  Cond
}

// maxGroup bounds how many requests one engine batch carries.
const maxGroup = 512

// Partition is one partition's local replica.
type Partition struct {
	id   int
	eng  engines.Engine
	caps engines.Capabilities
	reqs chan *request
	stop chan struct{}
	done chan struct{}

	mu     sync.RWMutex // guards closed; held shared while queueing a write
	closed bool
	lsn    uint64 // last assigned; only the writer loop touches it

	rep  *replica  // nil: writes apply at once (one replica, no replicator)
	sess *sessions // the request table (writer loop only)

	scans atomic.Uint64 // Scan calls served
}

type request struct {
	ctx    context.Context
	writes []Write
	ack    replicators.Ack
	id     RequestID
	lsns   []uint64
	err    error
	done   chan struct{}
}

// Open starts a partition over an open engine; it resumes after the engine's
// applied LSN.
func Open(ctx context.Context, id int, eng engines.Engine) (*Partition, error) {
	return open(ctx, id, eng, nil)
}

func open(ctx context.Context, id int, eng engines.Engine, rep *replica) (*Partition, error) {
	lsn, err := eng.AppliedLSN(ctx)
	if err != nil {
		return nil, fmt.Errorf("partition %d: read applied lsn: %w", id, err)
	}
	p := &Partition{id: id, eng: eng, caps: engines.CapabilitiesOf(eng), lsn: lsn, rep: rep, sess: newSessions(),
		reqs: make(chan *request, maxGroup), stop: make(chan struct{}), done: make(chan struct{})}
	if rep != nil {
		rep.init(p, lsn)
	}
	go p.writeLoop()
	return p, nil
}

// ID is the partition's number.
func (p *Partition) ID() int { return p.id }

// Engine is the partition's engine.
func (p *Partition) Engine() engines.Engine { return p.eng }

// Get reads a key. A key of the internal key space (ReservedPrefix) is
// refused.
func (p *Partition) Get(ctx context.Context, key []byte) (engines.Row, error) {
	if err := engines.CheckKey(p.caps, key); err != nil {
		return engines.Row{}, err
	}
	if err := checkUserKey(key); err != nil {
		return engines.Row{}, err
	}
	if p.rep != nil {
		// A write is answered once committed: the read waits for it to
		// reach the engine.
		if err := p.rep.awaitVisible(ctx, key); err != nil {
			return engines.Row{}, err
		}
	}
	return p.eng.Get(ctx, key)
}

// Scan reads a range in key order, leaving out the internal rows. On a
// replicated partition it starts once every answered write is applied.
func (p *Partition) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	p.scans.Add(1)
	rows := hideReserved(ctx, r, func(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
		return engines.Scan(ctx, p.eng, r) // an error naming engines.Scanner if the engine is none
	})
	if p.rep == nil {
		return rows
	}
	return func(yield func(engines.Row, error) bool) {
		if err := p.rep.awaitVisible(ctx, nil); err != nil {
			yield(engines.Row{}, err)
			return
		}
		rows(yield)
	}
}

// ScansServed is how many scans the partition served since it was opened.
func (p *Partition) ScansServed() uint64 { return p.scans.Load() }

// Write applies writes atomically and returns their LSNs, once durable per the
// engine's sync mode. A failed condition fails the whole call and writes nothing.
func (p *Partition) Write(ctx context.Context, writes []Write) ([]uint64, error) {
	return p.WriteAck(ctx, writes, replicators.AckDefault)
}

// WriteAck is Write with an ack mode, which a replicated partition passes to
// its replicator. If ctx ends while a replicated write waits for its acks,
// WriteAck returns an error wrapping replicators.ErrUnavailable: the write
// may still commit.
func (p *Partition) WriteAck(ctx context.Context, writes []Write, ack replicators.Ack) ([]uint64, error) {
	return p.WriteOnce(ctx, writes, ack, RequestID{})
}

// WriteOnce is WriteAck for the request id: a write whose id is recorded
// already is answered with the recorded LSNs and not written again, one
// older than its client's recorded id fails with ErrStaleRequest, and any
// other is written and recorded in the same engine batch (see RequestID). A
// retry that arrives while the first attempt is in flight is answered with
// its outcome. The zero id records nothing.
func (p *Partition) WriteOnce(ctx context.Context, writes []Write, ack replicators.Ack, id RequestID) ([]uint64, error) {
	if len(writes) == 0 {
		return nil, nil
	}
	if err := id.Check(); err != nil {
		return nil, err
	}
	check := make([]engines.Mutation, len(writes))
	for i, w := range writes {
		if err := checkUserKey(w.Key); err != nil {
			return nil, err
		}
		check[i] = engines.Mutation{Op: w.Op, Key: w.Key, Value: w.Value, LSN: uint64(i + 1)}
	}
	if err := engines.CheckBatch(p.caps, check); err != nil {
		return nil, err
	}
	if !id.IsZero() {
		// The client's row must fit the engine too: once the statement is
		// committed, the engine may not refuse it.
		row := engines.Mutation{Op: engines.OpPut, Key: sessionKey(id.Client), Value: make([]byte, maxSessionSize(len(writes))), LSN: 1}
		if err := engines.CheckBatch(p.caps, []engines.Mutation{row}); err != nil {
			return nil, fmt.Errorf("request id %s: its client's row (a %d-byte key, a value of up to %d bytes) does not fit the engine: %w",
				id, len(row.Key), len(row.Value), err)
		}
	}
	r := &request{ctx: ctx, writes: writes, ack: ack, id: id, done: make(chan struct{})}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, fmt.Errorf("partition %d: %w", p.id, engines.ErrClosed)
	}
	select {
	case p.reqs <- r:
		p.mu.RUnlock()
	case <-ctx.Done():
		p.mu.RUnlock()
		return nil, ctx.Err()
	}
	if p.rep == nil {
		// Once queued, the write may be applied: wait for its outcome even if
		// ctx ends, so the caller never mistakes an applied write for a failed one.
		<-r.done
		return r.lsns, r.err
	}
	select {
	case <-r.done:
		return r.lsns, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("partition %d: gave up waiting for the write's acks (%w); the write may still commit: %w", p.id, ctx.Err(), replicators.ErrUnavailable)
	}
}

// writeLoop takes every waiting request, checks conditions, assigns LSNs and
// applies them as one engine batch.
func (p *Partition) writeLoop() {
	defer close(p.done)
	for {
		var group []*request
		select {
		case r := <-p.reqs:
			group = append(group, r)
		case <-p.stop:
			return
		}
		if p.rep != nil {
			// Wait for a free slot before taking the rest: what arrives
			// meanwhile joins this group (one statement, one fsync per replica).
			p.rep.acquire()
		}
	more:
		for len(group) < maxGroup {
			select {
			case r := <-p.reqs:
				group = append(group, r)
			default:
				break more
			}
		}
		if p.rep != nil {
			p.rep.start(group)
		} else {
			p.applyGroup(group)
		}
	}
}

func (p *Partition) applyGroup(group []*request) {
	batch, members, lsn, deferred := p.buildBatch(group)
	if len(members) == 0 {
		for _, r := range deferred {
			close(r.done)
		}
		return
	}
	err := p.eng.Apply(context.Background(), batch)
	if err == nil {
		p.lsn = lsn
	} else {
		err = fmt.Errorf("partition %d: apply: %w", p.id, err)
		p.sess.invalidate() // it holds the failed batch's rows
	}
	for _, r := range members {
		if err != nil {
			r.lsns, r.err = nil, err
		}
		close(r.done)
	}
	for _, r := range deferred {
		if err != nil {
			r.err = err
		}
		close(r.done)
	}
}

// buildBatch checks the group's conditions (failing the requests whose
// conditions fail), assigns LSNs after p.lsn and returns the batch, the
// requests in it and the last LSN assigned. A request whose condition failed
// because of a write not yet applied (earlier in the group, or pending in the
// replicator) is returned in deferred, unanswered: the caller answers it once
// that write is applied, so that no client learns of a write before a read
// could see it.
//
// A request with an id is first looked up in the request table: a retry of
// the recorded request gets its LSNs (at once if they are applied, else
// deferred like a failed condition), an older one ErrStaleRequest; a new one
// is written with its client's row after its writes. Rows past the table's
// bounds are deleted in the same batch.
func (p *Partition) buildBatch(group []*request) (batch []engines.Mutation, members []*request, lsn uint64, deferred []*request) {
	exists := map[string]bool{} // keys written earlier in this group
	lsn = p.lsn
	if err := p.sess.load(context.Background(), p.eng); err != nil {
		for _, r := range group {
			r.err = fmt.Errorf("partition %d: %w", p.id, err)
			close(r.done)
		}
		return nil, nil, lsn, nil
	}
	applied := p.appliedLSN()
	now := time.Now()
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		var s *session
		if !r.id.IsZero() {
			var err error
			if s, err = p.sess.get(context.Background(), r.id.Client); err != nil {
				r.err = fmt.Errorf("partition %d: %w", p.id, err)
				close(r.done)
				continue
			}
		}
		if s != nil && r.id.Seq <= s.seq {
			if r.id.Seq < s.seq {
				r.err = fmt.Errorf("partition %d: request seq %d of client %q is older than its last, %d: %w", p.id, r.id.Seq, r.id.Client, s.seq, ErrStaleRequest)
				close(r.done)
				continue
			}
			r.lsns = slices.Clone(s.lsns)
			if len(s.lsns) > 0 && s.lsns[len(s.lsns)-1] > applied {
				deferred = append(deferred, r) // the first attempt is in flight
			} else {
				close(r.done)
			}
			continue
		}
		if unapplied, err := p.checkConds(r, exists); err != nil {
			r.err = err
			if unapplied {
				deferred = append(deferred, r)
			} else {
				close(r.done)
			}
			continue
		}
		r.lsns = make([]uint64, len(r.writes))
		for i, w := range r.writes {
			lsn++
			r.lsns[i] = lsn
			batch = append(batch, engines.Mutation{Op: w.Op, Key: w.Key, Value: w.Value, LSN: lsn})
			exists[string(w.Key)] = w.Op == engines.OpPut
		}
		if !r.id.IsZero() {
			lsn++
			batch = append(batch, p.sess.record(r.id, slices.Clone(r.lsns), now, lsn))
		}
		members = append(members, r)
	}
	if len(members) > 0 {
		for client := range p.sess.expire(now) {
			lsn++
			batch = append(batch, engines.Mutation{Op: engines.OpDelete, Key: sessionKey(client), LSN: lsn})
		}
	}
	return batch, members, lsn, deferred
}

// appliedLSN is the LSN through which the engine holds the writes (writer
// loop only).
func (p *Partition) appliedLSN() uint64 {
	if p.rep == nil {
		return p.lsn
	}
	p.rep.mu.Lock()
	defer p.rep.mu.Unlock()
	return p.rep.applied
}

// checkConds evaluates r's conditions against the group so far, the writes
// pending in the replicator, then the engine. unapplied says a failed
// condition was decided by a write the engine does not have yet.
func (p *Partition) checkConds(r *request, exists map[string]bool) (unapplied bool, err error) {
	seen := map[string]bool{}
	for _, w := range r.writes {
		if w.Cond == Always {
			seen[string(w.Key)] = w.Op == engines.OpPut
			continue
		}
		present, ok := seen[string(w.Key)]
		fromUnapplied := false
		if !ok {
			present, ok = exists[string(w.Key)]
			fromUnapplied = ok
		}
		if !ok && p.rep != nil {
			present, ok = p.rep.pendingExists(w.Key)
			fromUnapplied = ok
		}
		if !ok {
			_, err := p.eng.Get(r.ctx, w.Key)
			switch {
			case err == nil:
				present = true
			case errors.Is(err, engines.ErrNotFound):
				present = false
			default:
				return false, fmt.Errorf("partition %d: check %q: %w", p.id, w.Key, err)
			}
		}
		if w.Cond == MustNotExist && present {
			return fromUnapplied, fmt.Errorf("key %q: %w", w.Key, ErrAlreadyExists)
		}
		if w.Cond == MustExist && !present {
			return fromUnapplied, fmt.Errorf("key %q: %w", w.Key, engines.ErrNotFound)
		}
		seen[string(w.Key)] = w.Op == engines.OpPut
	}
	return false, nil
}

// AppliedLSN is the engine's applied LSN.
func (p *Partition) AppliedLSN(ctx context.Context) (uint64, error) { return p.eng.AppliedLSN(ctx) }

// Stats are the engine's stats; Keys leaves out the internal rows, which it
// counts with a scan (an engine that is not an engines.Scanner counts them
// in). An engine that is not an engines.StatsReporter gives zeros.
func (p *Partition) Stats(ctx context.Context) (engines.Stats, error) {
	sr, ok := engines.AsStatsReporter(p.eng)
	if !ok {
		return engines.Stats{}, nil
	}
	st, err := sr.Stats(ctx)
	if err != nil {
		return st, err
	}
	scanner, ok := engines.AsScanner(p.eng)
	if !ok {
		return st, nil
	}
	n, err := countReserved(ctx, scanner)
	if err != nil {
		return st, fmt.Errorf("partition %d: count the internal rows: %w", p.id, err)
	}
	st.Keys = max(st.Keys-n, 0)
	return st, nil
}

// Close stops taking writes, finishes the group in flight and closes the engine.
func (p *Partition) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	if p.rep != nil {
		p.rep.close()
	}
	// Fail writes that were queued but not taken.
	for {
		select {
		case r := <-p.reqs:
			r.err = fmt.Errorf("partition %d: %w", p.id, engines.ErrClosed)
			close(r.done)
		default:
			return p.eng.Close()
		}
	}
}

package partition

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/errdefs"
	"github.com/plugdb/plugdb/replicators"
)

// ErrNotLeading: a replicated partition takes writes only between Lead and
// StepDown; a write refused with it never reached the replicator. It is an
// errdefs.ErrNotLeader, but a distinct one: the replicator's ErrNotLeader (the
// write may be in its log) does not match ErrNotLeading.
var ErrNotLeading error = notLeading{}

// notLeading is ErrNotLeading: "not leading", a kind of errdefs.ErrNotLeader.
type notLeading struct{}

func (notLeading) Error() string { return "not leading" }
func (notLeading) Unwrap() error { return errdefs.ErrNotLeader }

// Replication is what a replicated partition needs of its replicator.
type Replication interface {
	// Replicate returns once the statement's ack mode is met; nil for one
	// statement means every earlier one is committed too.
	Replicate(ctx context.Context, st replicators.Statement, ack replicators.Ack) error
	// Applied reports an LSN through which the engine holds every statement
	// durably (Checkpoint): the replicator may trim its log up to it.
	Applied(ctx context.Context, lsn uint64) error
}

// maxInFlight bounds the groups handed to the replicator and not yet
// replicated. The writer loop waits for a free slot before it takes the
// waiting requests, so under load requests gather into large groups (each
// one replicated statement: one log fsync per replica, one message per hop)
// rather than many small ones. One at a time measured best (default
// cluster, 2 cpus, kvload put: 64 clients 2,620 and 2,118/s against 1,863
// and 1,640 with 2 and 1,866 and 2,109 with 4; 8 clients 542 and 478
// against 520/469 and 513/454): the replicator pipelines on its own (the
// leader ships while it fsyncs, a follower fsyncs what queued in one
// group), and each extra statement in flight costs messages at every hop.
const maxInFlight = 1

// checkpointEvery is how often a replicated partition checkpoints its engine
// (Checkpoint).
const checkpointEvery = time.Second

// ReplicaOptions are how a replicated partition runs.
type ReplicaOptions struct {
	// Logger hears of checkpoints that failed; nil: nothing is logged.
	Logger hclog.Logger
	// AnswerAtCommit: the replicator's log is the commit point (a committed
	// statement survives without the engine, which replays it from the
	// log), so a write is answered once its statement committed and applied
	// to the engine just after; a read of a key with an answered write not
	// yet applied waits for it. Without it (replicator none, whose Replicate
	// returns at once) a write is answered once the engine applied it, and
	// is as durable as the engine's sync mode makes it.
	AnswerAtCommit bool
}

// OpenReplica starts a partition whose writes are committed through repl
// before they are applied. It takes writes only after Lead. Every
// checkpointEvery, and once at Close, it checkpoints the engine (Checkpoint).
func OpenReplica(ctx context.Context, id int, eng engines.Engine, repl Replication, opts ReplicaOptions) (*Partition, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	return open(ctx, id, eng, &replica{repl: repl, log: opts.Logger, answerAtCommit: opts.AnswerAtCommit})
}

// replica is the replicated write path of a partition.
type replica struct {
	p      *Partition
	repl   Replication
	log    hclog.Logger
	flight chan *group   // groups in LSN order, to the apply loop
	slots  chan struct{} // one per group in flight (acquire, release)
	loop   sync.WaitGroup

	answerAtCommit bool // see ReplicaOptions.AnswerAtCommit

	stopCheckpoints chan struct{} // closed by close: the checkpoint loop ends
	checkpoints     sync.WaitGroup
	// checkpointMu serialises checkpoints with each other and with a restore
	// (LockApply), so that the replicator never hears, after Restored, an
	// LSN flushed before the restore.
	checkpointMu sync.Mutex

	mu       sync.Mutex
	leading  bool
	epoch    uint64
	next     uint64 // the writer loop numbers after it once renumber is set (Lead)
	renumber bool
	pending  map[string]pendingWrite // keys written by groups not yet applied
	applied  uint64                  // the engine's applied LSN
	// committed: the leader knows every statement through it committed, and
	// has answered its writes; the engine holds them once applied reaches it.
	committed uint64
	applyErr  error         // the engine failed to apply committed writes
	moved     chan struct{} // closed and replaced when applied moves or applyErr is set
	last      *group        // the group handed to the replicator last (writer loop only)

	applyMu sync.Mutex // one engine Apply at a time (leader groups, follower deliveries)
}

type pendingWrite struct {
	exists bool
	lsn    uint64
}

// group is one statement in flight.
type group struct {
	epoch   uint64
	batch   []engines.Mutation
	members []*request
	done    chan struct{} // closed when Replicate returned
	err     error

	// Requests whose conditions failed on writes of this group or earlier
	// ones: answered once this group is applied (then all of those are) or
	// has failed.
	mu       sync.Mutex
	deferred []*request
	finished bool
	outcome  error // nil: applied
}

// await answers reqs once g is applied or has failed (at once if it has).
func (r *replica) await(g *group, reqs []*request) {
	if len(reqs) == 0 {
		return
	}
	if g == nil {
		r.answerDeferred(reqs, errors.New("no write in flight"))
		return
	}
	g.mu.Lock()
	if !g.finished {
		g.deferred = append(g.deferred, reqs...)
		g.mu.Unlock()
		return
	}
	outcome := g.outcome
	g.mu.Unlock()
	r.answerDeferred(reqs, outcome)
}

// finish records g's first outcome (a failed group applied later changes
// nothing) and answers the requests waiting for it.
func (r *replica) finish(g *group, outcome error) {
	g.mu.Lock()
	if g.finished {
		g.mu.Unlock()
		return
	}
	g.finished, g.outcome = true, outcome
	reqs := g.deferred
	g.deferred = nil
	g.mu.Unlock()
	r.answerDeferred(reqs, outcome)
}

// answerDeferred answers requests whose conditions failed on unapplied
// writes: with their condition's error once those writes are applied, else
// with Unavailable (nothing was written; the writes that decided the
// condition may or may not commit).
func (r *replica) answerDeferred(reqs []*request, outcome error) {
	for _, q := range reqs {
		switch {
		case outcome == nil:
		case q.err == nil:
			// A retry of a request in flight: its outcome is that request's.
			q.lsns = nil
			q.err = fmt.Errorf("partition %d: request %s was in flight and is not committed (%v); it may still commit: %w",
				r.p.id, q.id, outcome, replicators.ErrUnavailable)
		default:
			q.err = fmt.Errorf("partition %d: %v, decided by an earlier write that is not committed (%v); nothing was written: %w",
				r.p.id, q.err, outcome, replicators.ErrUnavailable)
		}
		close(q.done)
	}
}

func (r *replica) init(p *Partition, applied uint64) {
	r.p = p
	r.applied = applied
	r.pending = map[string]pendingWrite{}
	r.moved = make(chan struct{})
	r.flight = make(chan *group, maxInFlight)
	r.slots = make(chan struct{}, maxInFlight)
	r.loop.Add(1)
	go r.applyLoop()
	r.stopCheckpoints = make(chan struct{})
	r.checkpoints.Add(1)
	go r.checkpointLoop()
}

// close waits for the groups in flight, stops the checkpoint loop and
// checkpoints once more, so the replicator hears of the last writes.
func (r *replica) close() {
	close(r.flight)
	r.loop.Wait()
	close(r.stopCheckpoints)
	r.checkpoints.Wait()
	if _, err := r.p.Checkpoint(context.Background()); err != nil {
		r.log.Warn("checkpoint the engine at close", "partition", r.p.id, "error", err)
	}
}

// checkpointLoop checkpoints the engine every checkpointEvery until close.
func (r *replica) checkpointLoop() {
	defer r.checkpoints.Done()
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.stopCheckpoints:
			return
		case <-tick.C:
		}
		if _, err := r.p.Checkpoint(context.Background()); err != nil {
			r.log.Warn("checkpoint the engine; trying again", "partition", r.p.id, "every", checkpointEvery, "error", err)
		}
	}
}

// Checkpoint makes the engine durable through its applied LSN with Flush
// (engines.Flusher; an engine without one is as durable as its own sync mode
// makes it, and its AppliedLSN is taken) and, on a replicated partition,
// reports that LSN to the replicator, which may then trim its log up to it.
// It returns the LSN. The replicator hears of nothing else: an engine opened
// LogBacked holds applied writes it has not fsynced, and those must stay in
// the log until a checkpoint covers them.
func (p *Partition) Checkpoint(ctx context.Context) (uint64, error) {
	r := p.rep
	if r != nil {
		r.checkpointMu.Lock()
		defer r.checkpointMu.Unlock()
	}
	lsn, err := flushEngine(ctx, p.eng)
	if err != nil {
		return 0, fmt.Errorf("partition %d: flush the engine: %w", p.id, err)
	}
	if r == nil {
		return lsn, nil
	}
	if err := r.repl.Applied(ctx, lsn); err != nil {
		return 0, fmt.Errorf("partition %d: report durable lsn %d to the replicator: %w", p.id, lsn, err)
	}
	return lsn, nil
}

// flushEngine is eng's Flush, or its AppliedLSN when it has none.
func flushEngine(ctx context.Context, eng engines.Engine) (uint64, error) {
	if f, ok := engines.AsFlusher(eng); ok {
		lsn, err := f.Flush(ctx)
		if !errors.Is(err, errors.ErrUnsupported) {
			return lsn, err
		}
	}
	return eng.AppliedLSN(ctx)
}

// Lead starts taking writes in epoch, numbering them after end; the engine
// must have applied everything through end (ApplyReplicated).
func (p *Partition) Lead(epoch, end uint64) error {
	r := p.rep
	if r == nil {
		return fmt.Errorf("partition %d is not replicated: %w", p.id, engines.ErrInvalidArgument)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied < end {
		return fmt.Errorf("partition %d: lead epoch %d after lsn %d, but the engine applied only %d", p.id, epoch, end, r.applied)
	}
	r.leading, r.epoch, r.next, r.renumber = true, epoch, end, true
	clear(r.pending)
	return nil
}

// StepDown stops taking writes. Groups in flight finish: applied if their
// statements committed, failed otherwise.
func (p *Partition) StepDown() {
	if r := p.rep; r != nil {
		r.mu.Lock()
		r.leading = false
		r.mu.Unlock()
	}
}

// Leading reports whether the partition takes writes, and in which epoch.
func (p *Partition) Leading() (uint64, bool) {
	if p.rep == nil {
		return 0, true
	}
	p.rep.mu.Lock()
	defer p.rep.mu.Unlock()
	return p.rep.epoch, p.rep.leading
}

// ApplyReplicated applies a statement a follower received, skipping the
// LSNs the engine already has (so a repeated delivery changes nothing).
func (p *Partition) ApplyReplicated(ctx context.Context, muts []engines.Mutation) error {
	r := p.rep
	if r == nil {
		return fmt.Errorf("partition %d is not replicated: %w", p.id, engines.ErrInvalidArgument)
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.mu.Lock()
	applied := r.applied
	r.mu.Unlock()
	var batch []engines.Mutation
	for _, m := range muts {
		if m.LSN > applied {
			batch = append(batch, m)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	if err := p.eng.Apply(ctx, batch); err != nil {
		return fmt.Errorf("partition %d: apply replicated lsns %d..%d: %w", p.id, batch[0].LSN, batch[len(batch)-1].LSN, err)
	}
	r.setApplied(batch[len(batch)-1].LSN)
	return nil
}

// Restored tells the partition its engine now holds a snapshot at lsn (the
// caller holds LockApply, and tells the replicator before it unlocks).
func (p *Partition) Restored(lsn uint64) {
	if r := p.rep; r != nil {
		r.mu.Lock()
		r.applied = lsn
		r.committed = min(r.committed, lsn) // a follower's restore: nothing of its own is pending
		r.notifyAppliedLocked()
		r.mu.Unlock()
	}
}

// LockApply serialises engine writes and checkpoints with a restore the
// caller runs (and with the caller telling the replicator of it); call the
// returned function to unlock.
func (p *Partition) LockApply() func() {
	r := p.rep
	if r == nil {
		return func() {}
	}
	r.applyMu.Lock()
	r.checkpointMu.Lock()
	return func() {
		r.checkpointMu.Unlock()
		r.applyMu.Unlock()
	}
}

// setApplied records lsn as applied to the engine. The replicator hears of
// it only from a checkpoint, once it is durable.
func (r *replica) setApplied(lsn uint64) {
	r.mu.Lock()
	r.applied = max(r.applied, lsn)
	r.notifyAppliedLocked()
	r.mu.Unlock()
}

// notifyAppliedLocked wakes the reads waiting for applied writes; r.mu is held.
func (r *replica) notifyAppliedLocked() {
	close(r.moved)
	r.moved = make(chan struct{})
}

// answerCommitted answers the writes of g, whose statement committed: they
// are durable on a majority, in the leader's log, and any leader after it
// applies them. The engine applies them next (applyLoop); until then a read
// of one of their keys waits (awaitVisible).
func (r *replica) answerCommitted(g *group) {
	if !r.answerAtCommit {
		return // apply answers them
	}
	r.mu.Lock()
	r.committed = max(r.committed, g.batch[len(g.batch)-1].LSN)
	r.mu.Unlock()
	for _, q := range g.members {
		close(q.done)
	}
}

// awaitVisible waits until the engine holds every answered write of key,
// or, for a nil key (a scan), every answered write: a write is answered
// once its statement committed, and applied to the engine just after.
func (r *replica) awaitVisible(ctx context.Context, key []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if key != nil {
			if _, ok := r.pending[string(key)]; !ok {
				return nil // no write of key waits to be applied
			}
		}
		if r.applied >= r.committed {
			return nil
		}
		if r.applyErr != nil {
			return fmt.Errorf("partition %d: %v; the writes are committed and a new leader applies them: %w", r.p.id, r.applyErr, replicators.ErrUnavailable)
		}
		moved := r.moved
		r.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			r.mu.Lock()
			return fmt.Errorf("partition %d: waiting for committed writes to reach the engine: %w", r.p.id, ctx.Err())
		}
		r.mu.Lock()
	}
}

// pendingExists reports whether a group in flight writes key, and whether
// the key exists after it.
func (r *replica) pendingExists(key []byte) (bool, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.pending[string(key)]
	return w.exists, ok
}

// start checks, numbers and hands a group to the replicator (writer loop).
func (r *replica) start(reqs []*request) {
	p := r.p
	r.mu.Lock()
	leading, epoch := r.leading, r.epoch
	if leading && r.renumber {
		p.lsn, r.renumber = r.next, false
		p.sess.invalidate() // a new term: the engine's table is the truth
	}
	r.mu.Unlock()
	if !leading {
		r.release()
		for _, q := range reqs {
			q.err = fmt.Errorf("partition %d: %w", p.id, ErrNotLeading)
			close(q.done)
		}
		return
	}
	batch, members, lsn, deferred := p.buildBatch(reqs)
	if len(members) == 0 {
		r.release()
		r.await(r.last, deferred)
		return
	}
	p.lsn = lsn
	ack := replicators.AckDefault
	for _, q := range members {
		ack = replicators.Stronger(ack, q.ack)
	}
	g := &group{epoch: epoch, batch: batch, members: members, done: make(chan struct{}), deferred: deferred}
	r.last = g
	r.mu.Lock()
	for _, m := range batch {
		r.pending[string(m.Key)] = pendingWrite{exists: m.Op == engines.OpPut, lsn: m.LSN}
	}
	r.mu.Unlock()
	r.flight <- g // never blocks: a slot is held
	ctx, cancel := groupContext(members)
	go func() {
		defer cancel()
		g.err = r.repl.Replicate(ctx, replicators.Statement{Epoch: epoch, Mutations: batch}, ack)
		if g.err != nil {
			err := g.err
			if prefix := fmt.Sprintf("partition %d: ", p.id); !strings.HasPrefix(err.Error(), prefix) {
				err = fmt.Errorf("%s%w", prefix, err)
			}
			for _, q := range members {
				q.lsns, q.err = nil, err
				close(q.done)
			}
			r.finish(g, g.err)
		}
		close(g.done)
	}()
}

// acquire waits for a free slot for a group (writer loop).
func (r *replica) acquire() { r.slots <- struct{}{} }

// release frees a group's slot: its statement is applied or has failed.
func (r *replica) release() { <-r.slots }

// groupContext ends at the latest deadline of the group's requests (never,
// if one has none: the replicator's ack timeout bounds the wait).
func groupContext(members []*request) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, q := range members {
		d, ok := q.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// fatal reports whether a Replicate error means this replica cannot lead.
func fatal(err error) bool {
	return errors.Is(err, replicators.ErrFenced) || errors.Is(err, replicators.ErrNotLeader) || errors.Is(err, replicators.ErrClosed)
}

// applyLoop applies committed groups in LSN order. A group whose Replicate
// failed without being fatal is held: it may still commit, which a later
// group's success proves, and then it is applied first.
func (r *replica) applyLoop() {
	defer r.loop.Done()
	var held []*group
	var next *group // taken from flight, not handled yet
	for {
		g := next
		next = nil
		if g == nil {
			var ok bool
			if g, ok = <-r.flight; !ok {
				return
			}
		}
		<-g.done
		r.release() // replicated or failed: the writer loop may start another
		switch {
		case g.err == nil:
			r.answerCommitted(g)
			// Groups already committed behind it join the same engine
			// batch: one engine write (one fsync) for all of them.
			run := append(held, g)
			held = nil
			for len(run) < maxCoalesce && next == nil {
				select {
				case g2, ok := <-r.flight:
					if !ok {
						break
					}
					select {
					case <-g2.done:
						if g2.err == nil {
							r.release()
							r.answerCommitted(g2)
							run = append(run, g2)
							continue
						}
					default:
					}
					next = g2
				default:
				}
				break
			}
			r.apply(run)
		case fatal(g.err):
			// Nothing after a fenced statement commits in this term; what
			// did commit reaches the engine through the new leader.
			for _, h := range held {
				r.finish(h, h.err)
			}
			held = nil
			r.finish(g, g.err)
			r.mu.Lock()
			if r.epoch == g.epoch {
				r.leading = false
			}
			clear(r.pending)
			r.mu.Unlock()
		default:
			held = append(held, g)
		}
	}
}

// maxCoalesce bounds the groups applied as one engine batch.
const maxCoalesce = 256

// apply writes committed groups, in LSN order, to the engine as one batch
// and answers the requests that still wait: those deferred to them, and,
// unless they were answered when they committed (answerAtCommit), the
// writes of groups whose Replicate succeeded (a held group's were answered
// with its error).
func (r *replica) apply(run []*group) {
	p := r.p
	var batch []engines.Mutation
	for _, g := range run {
		batch = append(batch, g.batch...)
	}
	r.applyMu.Lock()
	err := p.eng.Apply(context.Background(), batch)
	r.applyMu.Unlock()
	if err != nil {
		err = fmt.Errorf("partition %d: apply committed lsns %d..%d: %w", p.id, batch[0].LSN, batch[len(batch)-1].LSN, err)
		// The engine failed a write the replicas committed: stop leading
		// rather than serve reads that miss it.
		r.mu.Lock()
		r.leading = false
		r.applyErr = err
		r.notifyAppliedLocked()
		r.mu.Unlock()
	} else {
		r.mu.Lock()
		for _, m := range batch {
			if w, ok := r.pending[string(m.Key)]; ok && w.lsn == m.LSN {
				delete(r.pending, string(m.Key))
			}
		}
		r.mu.Unlock()
		r.setApplied(batch[len(batch)-1].LSN)
	}
	for _, g := range run {
		r.finish(g, err)
		if g.err != nil || r.answerAtCommit {
			continue // answered with its error, or when it committed
		}
		for _, q := range g.members {
			if err != nil {
				q.lsns, q.err = nil, err
			}
			close(q.done)
		}
	}
}

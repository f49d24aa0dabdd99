package replicatortest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/replicators"
)

// Time limits of the kit's waits. Generous: they bound hangs, not speed.
const (
	callTimeout  = 30 * time.Second // one call that should succeed
	shortTimeout = 500 * time.Millisecond
	endTimeout   = 5 * time.Second // a Deliveries sequence ending, a follower catching up
)

// options returns the options the kit opens a replicator on dir with.
func options(h Harness, dir string, params map[string]string) replicators.Options {
	p := maps.Clone(h.Params)
	if p == nil {
		p = map[string]string{}
	}
	maps.Copy(p, params)
	log := h.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return replicators.Options{Dir: dir, Partition: 0, Listen: "127.0.0.1:0", Params: p, Logger: log}
}

// kitParams are the options every replicator of the kit gets.
func kitParams() map[string]string { return map[string]string{"ack": "async"} }

// open opens a replicator on dir and closes it when the case ends.
func open(t T, h Harness, dir string) replicators.Replicator {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	r, err := h.Open(ctx, options(h, dir, kitParams()))
	if err != nil {
		t.Fatalf("open on %s: %v", dir, err)
	}
	if r == nil {
		t.Fatalf("open on %s: nil replicator and nil error", dir)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, replicators.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return r
}

// ctxFor returns a context for one call, ending after d.
func ctxFor(t T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

// lead makes r the leader of epoch with applied and checks what Lead returns.
func lead(t T, r replicators.Replicator, epoch, applied, wantEnd uint64) {
	t.Helper()
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	end, err := r.Lead(ctx, epoch, applied)
	if err != nil {
		t.Fatalf("Lead(epoch %d, applied %d): %v", epoch, applied, err)
	}
	if end != wantEnd {
		t.Fatalf("Lead(epoch %d, applied %d) on an empty log = %d, want %d", epoch, applied, end, wantEnd)
	}
}

// status returns r's status or ends the case.
func status(t T, r replicators.Replicator) replicators.Status {
	t.Helper()
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return st
}

// mutation returns the mutation of lsn: mostly puts of binary keys and values
// of varied sizes, every fifth a delete.
func mutation(lsn uint64) engines.Mutation {
	key := fmt.Appendf([]byte{0x00, 'k'}, "%d\xff", lsn%257)
	if lsn%5 == 0 {
		return engines.Mutation{Op: engines.OpDelete, Key: key, LSN: lsn}
	}
	value := bytes.Repeat(fmt.Appendf([]byte{0xff, 0x00}, "v%d.", lsn), 1+int(lsn%7))
	return engines.Mutation{Op: engines.OpPut, Key: key, Value: value, LSN: lsn}
}

// statement returns the statement of epoch holding lsns first..first+n-1.
func statement(epoch, first uint64, n int) replicators.Statement {
	st := replicators.Statement{Epoch: epoch, Mutations: make([]engines.Mutation, n)}
	for i := range st.Mutations {
		st.Mutations[i] = mutation(first + uint64(i))
	}
	return st
}

// statements returns count consecutive statements of epoch from lsn first, of
// 1 to 3 mutations each.
func statements(epoch, first uint64, count int) []replicators.Statement {
	out := make([]replicators.Statement, count)
	for i := range out {
		out[i] = statement(epoch, first, 1+i%3)
		first = out[i].Last() + 1
	}
	return out
}

// replicate replicates st with ack and fails the case on an error.
func replicate(t T, r replicators.Replicator, st replicators.Statement, ack replicators.Ack) {
	t.Helper()
	ctx, cancel := ctxFor(t, callTimeout)
	defer cancel()
	if err := r.Replicate(ctx, st, ack); err != nil {
		t.Fatalf("Replicate lsn %d..%d (epoch %d, ack %s): %v", st.First(), st.Last(), st.Epoch, ack, err)
	}
}

// replicateOverlapping replicates sts with ack from overlapping calls: each
// starts after the one before it started, at most window at a time. It
// returns each call's error.
func replicateOverlapping(t T, r replicators.Replicator, sts []replicators.Statement, ack replicators.Ack, window int) []error {
	errs := make([]error, len(sts))
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	for i, st := range sts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := ctxFor(t, callTimeout)
			defer cancel()
			errs[i] = r.Replicate(ctx, st, ack)
		})
	}
	wg.Wait()
	return errs
}

// firstError returns a description of the first non-nil error of errs, or "".
func firstError(errs []error, sts []replicators.Statement) string {
	n := 0
	first := ""
	for i, err := range errs {
		if err != nil {
			if n == 0 {
				first = fmt.Sprintf("lsn %d..%d: %v", sts[i].First(), sts[i].Last(), err)
			}
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d calls failed; the first: %s", n, len(errs), first)
}

// mutationsOf returns the mutations of sts, in order.
func mutationsOf(sts []replicators.Statement) []engines.Mutation {
	var out []engines.Mutation
	for _, st := range sts {
		out = append(out, st.Mutations...)
	}
	return out
}

// sameMutations compares what a follower was delivered with what the leader
// replicated, mutation by mutation (a replicator may group statements its own
// way), and returns the first difference, or "".
func sameMutations(got, want []replicators.Statement) string {
	gm, wm := mutationsOf(got), mutationsOf(want)
	ge, we := epochsOf(got), epochsOf(want)
	for i := range min(len(gm), len(wm)) {
		g, w := gm[i], wm[i]
		if g.LSN != w.LSN || g.Op != w.Op || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) {
			return fmt.Sprintf("mutation %d: delivered {op %d, lsn %d, key %q, value %q}, replicated {op %d, lsn %d, key %q, value %q}",
				i, g.Op, g.LSN, g.Key, g.Value, w.Op, w.LSN, w.Key, w.Value)
		}
		if ge[i] != we[i] {
			return fmt.Sprintf("mutation %d (lsn %d): delivered in a statement of epoch %d, replicated in epoch %d", i, g.LSN, ge[i], we[i])
		}
	}
	if len(gm) != len(wm) {
		return fmt.Sprintf("%d mutations delivered, %d replicated", len(gm), len(wm))
	}
	return ""
}

func epochsOf(sts []replicators.Statement) []uint64 {
	var out []uint64
	for _, st := range sts {
		for range st.Mutations {
			out = append(out, st.Epoch)
		}
	}
	return out
}

// cloneStatement copies st's buffers, which belong to the replicator.
func cloneStatement(st replicators.Statement) replicators.Statement {
	out := replicators.Statement{Epoch: st.Epoch, Mutations: make([]engines.Mutation, len(st.Mutations))}
	for i, m := range st.Mutations {
		out.Mutations[i] = engines.Mutation{Op: m.Op, Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value), LSN: m.LSN}
	}
	return out
}

// host plays a follower's host: it ranges over Deliveries, applies each
// statement (records it) in LSN order and reports it with Applied.
type host struct {
	r      replicators.Replicator
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when anything is recorded
	applied uint64        // the host engine's applied LSN
	got     []replicators.Statement
	faults  []string // what broke the contract: gaps, redeliveries, rebuilds, errors
}

// startHost starts the host of r, whose engine has applied through applied.
// With stopAt > 0 it stops after applying the statement holding stopAt, as a
// host that goes down would. It is stopped when the case ends.
func startHost(t T, r replicators.Replicator, applied, stopAt uint64) *host {
	ctx, cancel := context.WithCancel(context.Background())
	h := &host{r: r, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}), applied: applied}
	go h.run(ctx, stopAt)
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *host) run(ctx context.Context, stopAt uint64) {
	defer close(h.done)
	defer h.notify()
	for d, err := range h.r.Deliveries(ctx) {
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			h.fault("Deliveries yielded an error: %v", err)
			continue
		}
		if d.Rebuild {
			h.fault("Deliveries asked for a rebuild, which nothing here calls for")
			continue
		}
		st := d.Statement
		h.mu.Lock()
		applied := h.applied
		h.mu.Unlock()
		switch {
		case len(st.Mutations) == 0:
			h.fault("Deliveries yielded an empty statement (epoch %d)", st.Epoch)
			continue
		case st.First() <= applied:
			h.fault("Deliveries redelivered lsn %d..%d, at or below the applied lsn %d", st.First(), st.Last(), applied)
			continue
		case st.First() != applied+1:
			h.fault("Deliveries skipped lsns: statement %d..%d after applied lsn %d", st.First(), st.Last(), applied)
		}
		h.mu.Lock()
		h.got = append(h.got, cloneStatement(st))
		h.applied = st.Last()
		h.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, callTimeout)
		err = h.r.Applied(actx, st.Last())
		cancel()
		if err != nil && ctx.Err() == nil {
			h.fault("Applied(%d): %v", st.Last(), err)
		}
		h.notify()
		if stopAt > 0 && st.Last() >= stopAt {
			return
		}
	}
}

func (h *host) fault(format string, args ...any) {
	h.mu.Lock()
	if len(h.faults) < 10 {
		h.faults = append(h.faults, fmt.Sprintf(format, args...))
	}
	h.mu.Unlock()
	h.notify()
}

func (h *host) notify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.changed)
	h.changed = make(chan struct{})
}

// waitApplied waits until the host applied lsn, it stopped, or d passed, and
// returns what it applied and the faults it met.
func (h *host) waitApplied(lsn uint64, d time.Duration) (applied uint64, got []replicators.Statement, faults []string) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		h.mu.Lock()
		applied, ch := h.applied, h.changed
		got, faults = append([]replicators.Statement(nil), h.got...), append([]string(nil), h.faults...)
		h.mu.Unlock()
		if applied >= lsn {
			return applied, got, faults
		}
		select {
		case <-ch:
		case <-h.done:
			h.mu.Lock()
			applied, got, faults = h.applied, append([]replicators.Statement(nil), h.got...), append([]string(nil), h.faults...)
			h.mu.Unlock()
			return applied, got, faults
		case <-timer.C:
			return applied, got, faults
		}
	}
}

// stop ends the host's Deliveries loop; the sequence must end soon after its
// context does.
func (h *host) stop(t T) {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(endTimeout):
		t.Errorf("Deliveries did not end within %v of its context ending", endTimeout)
	}
}

// checkDelivered waits until h applied through the last LSN of want and
// checks it got exactly want's mutations, with nothing else going wrong.
func checkDelivered(t T, h *host, want []replicators.Statement, who string) {
	t.Helper()
	last := want[len(want)-1].Last()
	applied, got, faults := h.waitApplied(last, endTimeout+callTimeout)
	for _, f := range faults {
		t.Errorf("%s: %s", who, f)
	}
	if applied < last {
		t.Fatalf("%s: applied through lsn %d, want %d: the deliveries stopped coming", who, applied, last)
	}
	if diff := sameMutations(got, want); diff != "" {
		t.Fatalf("%s: what Deliveries yielded differs from what the leader replicated: %s", who, diff)
	}
}

// waitPersisted waits until the leader's Status shows the follower at addr
// persisted through lsn.
func waitPersisted(t T, leader replicators.Replicator, addr string, lsn uint64) {
	t.Helper()
	var last replicators.Status
	if !testutil.Eventually(t.Context(), endTimeout, func() bool {
		last = status(t, leader)
		for _, f := range last.Followers {
			if f.Addr == addr && f.PersistedLSN >= lsn {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("leader Status does not show follower %s persisted through lsn %d within %v: %+v", addr, lsn, endTimeout, last)
	}
}

// drainTracked is drain that also sends the id of the goroutine that ranges
// over seq, just before it calls seq.
func drainTracked(seq func(yield func(replicators.Delivery, error) bool)) (<-chan error, <-chan uint64) {
	gid := make(chan uint64, 1)
	items := drain(func(yield func(replicators.Delivery, error) bool) {
		gid <- testutil.GoroutineID()
		seq(yield)
	})
	return items, gid
}

// waitBlocked waits until the goroutine whose id gid sends is blocked, and
// fails t, naming what, if it is not within endTimeout.
func waitBlocked(t T, gid <-chan uint64, what string) {
	t.Helper()
	var id uint64
	select {
	case id = <-gid:
	case <-time.After(endTimeout):
		t.Fatalf("waited %v for %s: the goroutine did not start", endTimeout, what)
	}
	testutil.WaitFor(t, endTimeout, func() bool { return testutil.GoroutineBlocked(id) }, what)
}

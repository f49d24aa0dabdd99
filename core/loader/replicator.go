package loader

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"time"

	"github.com/plugdb/plugdb/plugins"
	"github.com/plugdb/plugdb/replicators"
)

// OpenReplicator opens the replicator of block b: linked in process when
// b.Mode is inprocess, otherwise in a plugin process. opts gives the folder,
// partition and listen address; its Params are b.Options (opts.Params is not
// used), and its Logger defaults to the loader's.
//
// A replicator in a plugin process is not restarted if the process dies: it
// holds role state (leader or follower, epoch, peers) that only the host can
// set again. Every call then fails with an error that wraps
// replicators.ErrClosed, names the plugin and quotes the end of its stderr;
// the host closes it and opens a new one.
func (l *Loader) OpenReplicator(ctx context.Context, b Block, opts replicators.Options) (replicators.Replicator, error) {
	if err := l.CheckReplicatorBlock(b); err != nil {
		return nil, err
	}
	opts.Params = maps.Clone(b.Options)
	if opts.Logger == nil {
		opts.Logger = l.logger().Named("replicator." + b.Plugin)
	}
	if b.Mode == ModeInProcess {
		return openInProcess(ctx, plugins.KindReplicator, b.Plugin, l.Replicators[b.Plugin], opts)
	}
	p := &processReplicator{supervised[*plugins.ReplicatorClient]{
		l: l, kind: plugins.KindReplicator, block: b, errClosed: replicators.ErrClosed,
		versions: plugins.ReplicatorPluginSet(nil, nil), what: "open " + opts.Dir,
		ready: func(ctx context.Context, rc *plugins.ReplicatorClient) error { return rc.Open(ctx, opts) },
	}}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// processReplicator is a replicator in a plugin process. It is supervised
// (start, current, Close and PID are supervised's) but never restarted: when
// the process dies it turns into a closed replicator whose calls fail with
// the error that reports the death (its own check), so current never waits.
type processReplicator struct {
	supervised[*plugins.ReplicatorClient]
}

var _ replicators.Replicator = (*processReplicator)(nil)

// check inspects err from a call: a dead or unreachable plugin turns the
// replicator closed, and err into the error that says so. (It replaces
// supervised's check, which would restart the plugin.)
func (p *processReplicator) check(op string, err error) error {
	if err == nil || !(plugins.IsTransport(err) || p.gone()) {
		return err
	}
	// Once the process is gone its stderr is read to the end: wait a little
	// for that, so the report quotes its last words.
	p.awaitExit(exitWait)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed != nil {
		return p.failed
	}
	tail := p.live.stderr.String()
	p.failed = fmt.Errorf("replicator plugin %s died during %s; it is not restarted, as a replicator holds role state: open it again (last output: %q): %w: %w",
		p.block.Plugin, op, tail, replicators.ErrClosed, err)
	p.l.logger().Named("replicator."+p.block.Plugin).Error("replicator plugin died", "during", op, "last_output", tail, "error", err)
	p.live.client.Kill()
	return p.failed
}

// gone reports whether the plugin process ended: it exited, or Close ended
// it.
func (p *processReplicator) gone() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.live.client == nil || p.live.client.Exited()
}

// exitWait bounds how long a failed call waits for the plugin process to
// be seen exited, so that its stderr is read to the end.
const exitWait = 2 * time.Second

// awaitExit waits until the plugin process is seen exited, for at most d or
// until the replicator closes. go-plugin offers no exit channel, so it looks
// every 10ms.
func (p *processReplicator) awaitExit(d time.Duration) {
	if p.gone() {
		return
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !p.gone() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-p.closing.Done():
			return
		}
	}
}

// Addr is the address the plugin's replicator reported when it opened.
func (p *processReplicator) Addr() string { return p.client().Addr() }

func (p *processReplicator) Lead(ctx context.Context, epoch, applied uint64) (uint64, error) {
	r, _, err := p.current(ctx)
	if err != nil {
		return 0, err
	}
	end, err := r.Lead(ctx, epoch, applied)
	return end, p.check("lead", err)
}

func (p *processReplicator) SetPeers(ctx context.Context, peers []replicators.Peer) error {
	r, _, err := p.current(ctx)
	if err != nil {
		return err
	}
	return p.check("set-peers", r.SetPeers(ctx, peers))
}

func (p *processReplicator) Replicate(ctx context.Context, st replicators.Statement, ack replicators.Ack) error {
	r, _, err := p.current(ctx)
	if err != nil {
		return err
	}
	return p.check("replicate", r.Replicate(ctx, st, ack))
}

func (p *processReplicator) Follow(ctx context.Context, epoch uint64, leader string) error {
	r, _, err := p.current(ctx)
	if err != nil {
		return err
	}
	return p.check("follow", r.Follow(ctx, epoch, leader))
}

// Deliveries streams the plugin's deliveries; if the plugin dies, it yields
// the error that reports it and ends.
func (p *processReplicator) Deliveries(ctx context.Context) iter.Seq2[replicators.Delivery, error] {
	return func(yield func(replicators.Delivery, error) bool) {
		r, _, err := p.current(ctx)
		if err != nil {
			yield(replicators.Delivery{}, err)
			return
		}
		for d, err := range r.Deliveries(ctx) {
			if err != nil {
				if err = p.check("deliveries", err); p.dead() {
					yield(replicators.Delivery{}, err)
					return
				}
			}
			if !yield(d, err) {
				return
			}
		}
		// The stream also ends when the plugin's replicator closed, or when
		// the plugin died between two deliveries.
		if ctx.Err() == nil && p.gone() {
			yield(replicators.Delivery{}, p.check("deliveries", fmt.Errorf("the deliveries stream ended: %w", replicators.ErrClosed)))
		}
	}
}

// dead reports whether the replicator failed or closed.
func (p *processReplicator) dead() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.failed != nil
}

func (p *processReplicator) Applied(ctx context.Context, lsn uint64) error {
	r, _, err := p.current(ctx)
	if err != nil {
		return err
	}
	return p.check("applied", r.Applied(ctx, lsn))
}

func (p *processReplicator) EpochAt(ctx context.Context, lsn uint64) (uint64, error) {
	r, _, err := p.current(ctx)
	if err != nil {
		return 0, err
	}
	epoch, err := r.EpochAt(ctx, lsn)
	return epoch, p.check("epoch-at", err)
}

func (p *processReplicator) Restored(ctx context.Context, lsn, epoch uint64) error {
	r, _, err := p.current(ctx)
	if err != nil {
		return err
	}
	return p.check("restored", r.Restored(ctx, lsn, epoch))
}

func (p *processReplicator) Status(ctx context.Context) (replicators.Status, error) {
	r, _, err := p.current(ctx)
	if err != nil {
		return replicators.Status{}, err
	}
	st, err := r.Status(ctx)
	return st, p.check("status", err)
}

package loader

import (
	"context"
	"fmt"
	"iter"
	"sync"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/plugins"
)

// OpenEngine opens the engine of block b on dir: linked in process when b.Mode is
// inprocess, otherwise in a plugin process that is restarted if it dies.
func (l *Loader) OpenEngine(ctx context.Context, b Block, dir string) (engines.Engine, error) {
	return l.openEngine(ctx, b, dir, false)
}

// OpenLogBackedEngine is OpenEngine for an engine a durable log backs
// (engines.Options.LogBacked): its Apply need not fsync, and the host makes it
// durable with Flush. Find its Flush with engines.AsFlusher: a plugin's
// engine is an engines.Proxy, which has the method even when the engine
// behind it has none.
func (l *Loader) OpenLogBackedEngine(ctx context.Context, b Block, dir string) (engines.Engine, error) {
	return l.openEngine(ctx, b, dir, true)
}

func (l *Loader) openEngine(ctx context.Context, b Block, dir string, logBacked bool) (engines.Engine, error) {
	if err := l.CheckEngineBlock(b); err != nil {
		return nil, err
	}
	opts := engines.Options{Dir: dir, Params: b.Options, Logger: l.logger().Named("engine." + b.Plugin), LogBacked: logBacked}
	if b.Mode == ModeInProcess {
		eng, err := l.Engines[b.Plugin](ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("open engine %s in process: %w", b.Plugin, err)
		}
		return eng, nil
	}
	p := &processEngine{l: l, block: b, opts: opts}
	client, eng, stderr, err := p.launch(ctx)
	if err != nil {
		return nil, err
	}
	p.client, p.eng, p.stderr = client, eng, stderr
	p.closing, p.closeNow = context.WithCancel(context.Background())
	return p, nil
}

var (
	_ engines.Proxy                = (*processEngine)(nil)
	_ engines.Scanner              = (*processEngine)(nil)
	_ engines.Snapshotter          = (*processEngine)(nil)
	_ engines.StatsReporter        = (*processEngine)(nil)
	_ engines.CapabilitiesReporter = (*processEngine)(nil)
	_ engines.Flusher              = (*processEngine)(nil)
)

// processEngine is an engine in a plugin process, supervised: it is an
// engines.Proxy, whose Interfaces are those the plugin's engine has (a
// method of another fails with engines.Unsupported, naming the plugin). When the process
// dies, the call in flight fails with an error naming the plugin, and the
// process is restarted (bounded attempts) and its engine reopened, which
// recovers every durably acknowledged write.
//
// A restart does not hold mu while it starts the new process or waits
// between attempts: it marks the engine restarting (calls wait for that
// with their ctx), starts the process without the lock, and swaps the new
// client in under the lock.
type processEngine struct {
	l     *Loader
	block Block
	opts  engines.Options

	// closing ends at Close: a restart in progress stops starting and
	// waiting.
	closing  context.Context
	closeNow context.CancelFunc

	mu         sync.RWMutex
	client     *goplugin.Client
	eng        *plugins.EngineClient
	stderr     *tailBuffer
	gen        int           // incremented by each restart
	restarting chan struct{} // non-nil while a restart runs; closed when it ends
	closed     bool
	failed     error // set when restarts are exhausted or after Close
}

// launch starts a plugin process and opens its engine.
func (p *processEngine) launch(ctx context.Context) (*goplugin.Client, *plugins.EngineClient, *tailBuffer, error) {
	stderr := newTailBuffer(20)
	client, raw, err := p.l.startClient(plugins.KindEngine, p.block, plugins.EnginePluginSet(nil, nil), stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	eng, ok := raw.(*plugins.EngineClient)
	if !ok {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("plugin %s dispensed %T, not an engine", p.block.Plugin, raw)
	}
	if err := eng.Open(ctx, p.opts); err != nil {
		client.Kill()
		if status.Code(err) == codes.Unimplemented {
			return nil, nil, nil, fmt.Errorf("plugin %s is not %s plugin (it does not serve the engine service): %w", p.block.Plugin, article(plugins.KindEngine), wrongKind{err})
		}
		return nil, nil, nil, fmt.Errorf("engine plugin %s: open %s: %w", p.block.Plugin, p.opts.Dir, err)
	}
	return client, eng, stderr, nil
}

// current returns the live engine client and its generation; while a
// restart runs it waits for it, or for ctx.
func (p *processEngine) current(ctx context.Context) (*plugins.EngineClient, int, error) {
	for {
		p.mu.RLock()
		eng, gen, failed, restarting := p.eng, p.gen, p.failed, p.restarting
		p.mu.RUnlock()
		if failed != nil {
			return nil, gen, failed
		}
		if restarting == nil {
			return eng, gen, nil
		}
		select {
		case <-restarting:
		case <-ctx.Done():
			return nil, gen, fmt.Errorf("engine plugin %s is restarting: %w", p.block.Plugin, ctx.Err())
		}
	}
}

// check inspects err from a call made on generation gen: a dead or
// unreachable plugin turns into an error that names it, and the plugin is restarted.
func (p *processEngine) check(op string, gen int, err error) error {
	if err == nil {
		return nil
	}
	if !(plugins.IsTransport(err) || p.exited(gen)) {
		return err
	}
	p.mu.RLock()
	tail := p.stderr.String()
	p.mu.RUnlock()
	crash := fmt.Errorf("engine plugin %s failed during %s (restarting it; last output: %q): %w", p.block.Plugin, op, tail, err)
	p.restart(gen)
	return crash
}

// replaced reports whether the plugin of generation gen was restarted since.
func (p *processEngine) replaced(gen int) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return gen != p.gen
}

func (p *processEngine) exited(gen int) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return gen == p.gen && p.client != nil && p.client.Exited()
}

// restart replaces the plugin of generation gen, unless another caller
// already did or is doing it (then it waits for that restart to end). The
// slow part, starting processes and waiting between attempts, runs without
// mu; Close ends it early.
func (p *processEngine) restart(gen int) {
	p.mu.Lock()
	if gen != p.gen || p.failed != nil {
		p.mu.Unlock()
		return
	}
	if ch := p.restarting; ch != nil {
		p.mu.Unlock()
		<-ch
		return
	}
	done := make(chan struct{})
	p.restarting = done
	old, tail := p.client, p.stderr.String()
	p.mu.Unlock()
	defer close(done) // after the lock is released and any new process killed

	log := p.l.logger().Named("engine." + p.block.Plugin)
	log.Error("engine plugin died; restarting", "last_output", tail)
	old.Kill()
	var err error
	for attempt := 1; attempt <= p.l.maxRestarts(); attempt++ {
		ctx, cancel := context.WithTimeout(p.closing, 2*p.l.startTimeout())
		client, eng, stderr, startErr := p.launch(ctx)
		cancel()
		err = startErr
		if err == nil {
			p.mu.Lock()
			p.restarting = nil
			if p.closed {
				p.mu.Unlock()
				client.Kill()
				return
			}
			p.client, p.eng, p.stderr = client, eng, stderr
			p.gen++
			p.mu.Unlock()
			log.Info("engine plugin restarted", "attempt", attempt)
			return
		}
		log.Error("engine plugin restart failed", "attempt", attempt, "max", p.l.maxRestarts(), "error", err)
		if attempt == p.l.maxRestarts() || !backoff(p.closing, attempt) {
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.restarting = nil
	if p.failed == nil { // Close sets its own
		p.failed = fmt.Errorf("engine plugin %s: gave up after %d restarts: %v: %w", p.block.Plugin, p.l.maxRestarts(), err, engines.ErrClosed)
	}
}

// Interfaces are the optional interfaces of the plugin's engine, as its Open
// answered (engines.Proxy).
func (p *processEngine) Interfaces() engines.Interfaces {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.eng.Interfaces()
}

// String names the engine in errors: "engine plugin NAME cannot serve scans (…)".
func (p *processEngine) String() string { return "plugin " + p.block.Plugin }

func (p *processEngine) Get(ctx context.Context, key []byte) (engines.Row, error) {
	eng, gen, err := p.current(ctx)
	if err != nil {
		return engines.Row{}, err
	}
	row, err := eng.Get(ctx, key)
	return row, p.check("get", gen, err)
}

func (p *processEngine) Apply(ctx context.Context, batch []engines.Mutation) error {
	eng, gen, err := p.current(ctx)
	if err != nil {
		return err
	}
	return p.check("apply", gen, eng.Apply(ctx, batch))
}

func (p *processEngine) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		if !p.Interfaces().Scanner {
			yield(engines.Row{}, engines.Unsupported(p, "scans", "Scanner"))
			return
		}
		eng, gen, err := p.current(ctx)
		if err != nil {
			yield(engines.Row{}, err)
			return
		}
		for row, err := range eng.Scan(ctx, r) {
			if !yield(row, p.check("scan", gen, err)) || err != nil {
				return
			}
		}
	}
}

func (p *processEngine) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	if !p.Interfaces().Snapshotter {
		return 0, nil, engines.Unsupported(p, "snapshots", "Snapshotter")
	}
	eng, gen, err := p.current(ctx)
	if err != nil {
		return 0, nil, err
	}
	lsn, rows, err := eng.Snapshot(ctx)
	if err != nil {
		return 0, nil, p.check("snapshot", gen, err)
	}
	checked := func(yield func(engines.Row, error) bool) {
		for row, err := range rows {
			if !yield(row, p.check("snapshot", gen, err)) || err != nil {
				return
			}
		}
	}
	return lsn, checked, nil
}

func (p *processEngine) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	if !p.Interfaces().Snapshotter {
		return engines.Unsupported(p, "restores", "Snapshotter")
	}
	eng, gen, err := p.current(ctx)
	if err != nil {
		return err
	}
	return p.check("restore", gen, eng.Restore(ctx, lsn, rows))
}

func (p *processEngine) AppliedLSN(ctx context.Context) (uint64, error) {
	eng, gen, err := p.current(ctx)
	if err != nil {
		return 0, err
	}
	lsn, err := eng.AppliedLSN(ctx)
	return lsn, p.check("applied-lsn", gen, err)
}

// Flush is the plugin's Flush (engines.Flusher); an error wrapping
// errors.ErrUnsupported when its engine has none.
func (p *processEngine) Flush(ctx context.Context) (uint64, error) {
	if !p.Interfaces().Flusher {
		return 0, engines.Unsupported(p, "flushes", "Flusher")
	}
	eng, gen, err := p.current(ctx)
	if err != nil {
		return 0, err
	}
	lsn, err := eng.Flush(ctx)
	return lsn, p.check("flush", gen, err)
}

func (p *processEngine) Stats(ctx context.Context) (engines.Stats, error) {
	if !p.Interfaces().StatsReporter {
		return engines.Stats{}, engines.Unsupported(p, "stats", "StatsReporter")
	}
	eng, gen, err := p.current(ctx)
	if err != nil {
		return engines.Stats{}, err
	}
	st, err := eng.Stats(ctx)
	return st, p.check("stats", gen, err)
}

func (p *processEngine) Capabilities() engines.Capabilities {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.eng.Capabilities()
}

// Close closes the engine and ends the plugin process. The plugin's Close
// is bounded by the loader's close timeout, and runs without mu; a restart
// in progress is stopped and waited for.
func (p *processEngine) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.closeNow()
	restarting := p.restarting
	failed := p.failed
	p.failed = fmt.Errorf("engine plugin %s: %w", p.block.Plugin, engines.ErrClosed)
	p.mu.Unlock()
	if restarting != nil {
		<-restarting // it found Close, and killed what it started
	}
	p.mu.Lock()
	client, eng := p.client, p.eng
	p.client = nil
	p.mu.Unlock()
	var err error
	if restarting == nil && failed == nil {
		ctx, cancel := context.WithTimeout(context.Background(), p.l.closeTimeout())
		err = eng.CloseContext(ctx)
		cancel()
	}
	client.Kill()
	if err != nil {
		return fmt.Errorf("close engine plugin %s: %w", p.block.Plugin, err)
	}
	return nil
}

// PID returns the plugin process's id (for tests and status), or 0.
func (p *processEngine) PID() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.client == nil {
		return 0
	}
	if rc := p.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

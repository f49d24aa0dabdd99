package loader

import (
	"context"
	"iter"

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
		return openInProcess(ctx, plugins.KindEngine, b.Plugin, l.Engines[b.Plugin], opts)
	}
	p := &processEngine{supervised[*plugins.EngineClient]{
		l: l, kind: plugins.KindEngine, block: b, errClosed: engines.ErrClosed,
		versions: plugins.EnginePluginSet(nil, nil), what: "open " + dir,
		ready: func(ctx context.Context, eng *plugins.EngineClient) error { return eng.Open(ctx, opts) },
	}}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
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
// recovers every durably acknowledged write. Its Close and PID are
// supervised's.
type processEngine struct {
	supervised[*plugins.EngineClient]
}

// Interfaces are the optional interfaces of the plugin's engine, as its Open
// answered (engines.Proxy).
func (p *processEngine) Interfaces() engines.Interfaces { return p.client().Interfaces() }

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

func (p *processEngine) Capabilities() engines.Capabilities { return p.client().Capabilities() }

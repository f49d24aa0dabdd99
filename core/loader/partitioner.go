package loader

import (
	"context"
	"fmt"
	"maps"
	"sync"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/plugins"
)

// OpenPartitioner returns the partitioner of block b configured with
// partitions and b.Options: linked in process when b.Mode is inprocess,
// otherwise in a plugin process that is restarted if it dies.
func (l *Loader) OpenPartitioner(ctx context.Context, b Block, partitions int) (partitioners.Partitioner, error) {
	if err := l.CheckPartitionerBlock(b); err != nil {
		return nil, err
	}
	if err := partitioners.CheckPartitions(partitions); err != nil {
		return nil, fmt.Errorf("partitioner %s: %w", b.Plugin, err)
	}
	if b.Mode == ModeInProcess {
		p, err := l.Partitioners[b.Plugin](ctx, l.logger().Named("partitioner."+b.Plugin))
		if err != nil {
			return nil, fmt.Errorf("open partitioner %s in process: %w", b.Plugin, err)
		}
		if err := p.Configure(ctx, partitions, maps.Clone(b.Options)); err != nil {
			p.Close()
			return nil, fmt.Errorf("partitioner %s: configure %d partitions: %w", b.Plugin, partitions, err)
		}
		return p, nil
	}
	p := &processPartitioner{l: l, block: b, partitions: partitions}
	client, pc, stderr, err := p.launch(ctx)
	if err != nil {
		return nil, err
	}
	p.client, p.p, p.stderr = client, pc, stderr
	p.closing, p.closeNow = context.WithCancel(context.Background())
	return p, nil
}

// processPartitioner is a partitioner in a plugin process, supervised. A
// partitioner holds no data, only its configuration, and its calls have no side
// effects: so when the process dies, it is restarted and configured again
// (bounded attempts), and the call that met the death is retried once on the
// new process. If that fails too, the call fails with an error naming the
// plugin and its last output.
//
// A restart does not hold mu while it starts the new process or waits
// between attempts: calls wait for it with their ctx (see processEngine).
type processPartitioner struct {
	l          *Loader
	block      Block
	partitions int

	// closing ends at Close: a restart in progress stops.
	closing  context.Context
	closeNow context.CancelFunc

	mu         sync.RWMutex
	client     *goplugin.Client
	p          *plugins.PartitionerClient
	stderr     *tailBuffer
	gen        int           // incremented by each restart
	restarting chan struct{} // non-nil while a restart runs; closed when it ends
	closed     bool
	failed     error // set when restarts are exhausted or after Close
}

// launch starts a plugin process and configures its partitioner.
func (p *processPartitioner) launch(ctx context.Context) (*goplugin.Client, *plugins.PartitionerClient, *tailBuffer, error) {
	stderr := newTailBuffer(20)
	client, raw, err := p.l.startClient(plugins.KindPartitioner, p.block, plugins.PartitionerPluginSet(nil, nil), stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	pc, ok := raw.(*plugins.PartitionerClient)
	if !ok {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("plugin %s dispensed %T, not a partitioner", p.block.Plugin, raw)
	}
	if err := pc.Configure(ctx, p.partitions, maps.Clone(p.block.Options)); err != nil {
		client.Kill()
		if status.Code(err) == codes.Unimplemented {
			return nil, nil, nil, fmt.Errorf("plugin %s is not %s plugin (it does not serve the partitioner service): %w", p.block.Plugin, article(plugins.KindPartitioner), wrongKind{err})
		}
		return nil, nil, nil, fmt.Errorf("partitioner plugin %s: configure %d partitions: %w", p.block.Plugin, p.partitions, err)
	}
	return client, pc, stderr, nil
}

// current returns the live client and its generation; while a restart runs
// it waits for it, or for ctx.
func (p *processPartitioner) current(ctx context.Context) (*plugins.PartitionerClient, int, error) {
	for {
		p.mu.RLock()
		c, gen, failed, restarting := p.p, p.gen, p.failed, p.restarting
		p.mu.RUnlock()
		if failed != nil {
			return nil, gen, failed
		}
		if restarting == nil {
			return c, gen, nil
		}
		select {
		case <-restarting:
		case <-ctx.Done():
			return nil, gen, fmt.Errorf("partitioner plugin %s is restarting: %w", p.block.Plugin, ctx.Err())
		}
	}
}

// crashed reports whether err from a call on generation gen is the plugin
// process dying or unreachable rather than an answer from it.
func (p *processPartitioner) crashed(gen int, err error) bool {
	if err == nil {
		return false
	}
	if plugins.IsTransport(err) {
		return true
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return gen == p.gen && p.client != nil && p.client.Exited()
}

// call runs f on the live client; if the plugin died under it, it restarts
// the plugin and runs f once more.
func (p *processPartitioner) call(ctx context.Context, op string, f func(*plugins.PartitionerClient) error) error {
	for attempt := 0; ; attempt++ {
		c, gen, err := p.current(ctx)
		if err != nil {
			return err
		}
		err = f(c)
		if !p.crashed(gen, err) || ctx.Err() != nil {
			return err
		}
		p.mu.RLock()
		tail := p.stderr.String()
		p.mu.RUnlock()
		if attempt == 1 {
			return fmt.Errorf("partitioner plugin %s failed during %s, twice (last output: %q): %w", p.block.Plugin, op, tail, err)
		}
		p.restart(gen)
	}
}

// restart replaces the plugin of generation gen, unless another caller
// already did or is doing it (then it waits for that restart to end). The
// slow part runs without mu; Close ends it early.
func (p *processPartitioner) restart(gen int) {
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

	log := p.l.logger().Named("partitioner." + p.block.Plugin)
	log.Error("partitioner plugin died; restarting", "last_output", tail)
	old.Kill()
	var err error
	for attempt := 1; attempt <= p.l.maxRestarts(); attempt++ {
		ctx, cancel := context.WithTimeout(p.closing, 2*p.l.startTimeout())
		client, pc, stderr, startErr := p.launch(ctx)
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
			p.client, p.p, p.stderr = client, pc, stderr
			p.gen++
			p.mu.Unlock()
			log.Info("partitioner plugin restarted", "attempt", attempt)
			return
		}
		log.Error("partitioner plugin restart failed", "attempt", attempt, "max", p.l.maxRestarts(), "error", err)
		if attempt == p.l.maxRestarts() || !backoff(p.closing, attempt) {
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.restarting = nil
	if p.failed == nil { // Close sets its own
		p.failed = fmt.Errorf("partitioner plugin %s: gave up after %d restarts: %v: %w", p.block.Plugin, p.l.maxRestarts(), err, partitioners.ErrClosed)
	}
}

// Configure is refused: OpenPartitioner configured the partitioner, and a
// restarted plugin is configured alike.
func (p *processPartitioner) Configure(context.Context, int, map[string]string) error {
	return fmt.Errorf("partitioner plugin %s: already configured by the loader: %w", p.block.Plugin, partitioners.ErrInvalidArgument)
}

// Locate locates keys in the plugin process.
func (p *processPartitioner) Locate(ctx context.Context, keys [][]byte, out []int) error {
	return p.call(ctx, "locate", func(c *plugins.PartitionerClient) error { return c.Locate(ctx, keys, out) })
}

// Range asks the plugin process which partitions [start, end) touches.
func (p *processPartitioner) Range(ctx context.Context, start, end []byte) ([]int, error) {
	var parts []int
	err := p.call(ctx, "range", func(c *plugins.PartitionerClient) error {
		var err error
		parts, err = c.Range(ctx, start, end)
		return err
	})
	return parts, err
}

// Close closes the partitioner and ends the plugin process. The plugin's
// Close is bounded by the loader's close timeout, and runs without mu; a
// restart in progress is stopped and waited for.
func (p *processPartitioner) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.closeNow()
	restarting := p.restarting
	failed := p.failed
	p.failed = fmt.Errorf("partitioner plugin %s: %w", p.block.Plugin, partitioners.ErrClosed)
	p.mu.Unlock()
	if restarting != nil {
		<-restarting // it found Close, and killed what it started
	}
	p.mu.Lock()
	client, pc := p.client, p.p
	p.client = nil
	p.mu.Unlock()
	var err error
	if restarting == nil && failed == nil {
		ctx, cancel := context.WithTimeout(context.Background(), p.l.closeTimeout())
		err = pc.CloseContext(ctx)
		cancel()
	}
	client.Kill()
	if err != nil {
		return fmt.Errorf("close partitioner plugin %s: %w", p.block.Plugin, err)
	}
	return nil
}

// PID returns the plugin process's id (for tests and status), or 0.
func (p *processPartitioner) PID() int {
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

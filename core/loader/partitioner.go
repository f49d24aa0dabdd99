package loader

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

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
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// processPartitioner is a partitioner in a plugin process, supervised. A
// partitioner holds no data, only its configuration, and its calls have no side
// effects: so when the process dies, it is restarted and configured again
// (bounded attempts), and the call that met the death is retried once on the
// new process. If that fails too, the call fails with an error naming the
// plugin and its last output.
type processPartitioner struct {
	l          *Loader
	block      Block
	partitions int

	mu     sync.RWMutex
	client *goplugin.Client
	p      *plugins.PartitionerClient
	stderr *tailBuffer
	gen    int   // incremented by each restart
	failed error // set when restarts are exhausted or after Close
}

func (p *processPartitioner) start(ctx context.Context) error {
	stderr := newTailBuffer(20)
	client, raw, err := p.l.startClient(plugins.KindPartitioner, p.block, plugins.PartitionerPluginSet(nil, nil), stderr)
	if err != nil {
		return err
	}
	pc, ok := raw.(*plugins.PartitionerClient)
	if !ok {
		client.Kill()
		return fmt.Errorf("plugin %s dispensed %T, not a partitioner", p.block.Plugin, raw)
	}
	if err := pc.Configure(ctx, p.partitions, maps.Clone(p.block.Options)); err != nil {
		client.Kill()
		if status.Code(err) == codes.Unimplemented {
			return fmt.Errorf("plugin %s is not %s plugin (it does not serve the partitioner service): %w", p.block.Plugin, article(plugins.KindPartitioner), wrongKind{err})
		}
		return fmt.Errorf("partitioner plugin %s: configure %d partitions: %w", p.block.Plugin, p.partitions, err)
	}
	p.client, p.p, p.stderr = client, pc, stderr
	return nil
}

// current returns the live client and its generation.
func (p *processPartitioner) current() (*plugins.PartitionerClient, int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.failed != nil {
		return nil, p.gen, p.failed
	}
	return p.p, p.gen, nil
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
		c, gen, err := p.current()
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

// restart replaces the plugin of generation gen, unless another caller already did.
func (p *processPartitioner) restart(gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen != p.gen || p.failed != nil {
		return
	}
	log := p.l.logger().Named("partitioner." + p.block.Plugin)
	log.Error("partitioner plugin died; restarting", "last_output", p.stderr.String())
	p.client.Kill()
	var err error
	for attempt := 1; attempt <= p.l.maxRestarts(); attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*p.l.startTimeout())
		err = p.start(ctx)
		cancel()
		if err == nil {
			p.gen++
			log.Info("partitioner plugin restarted", "attempt", attempt)
			return
		}
		log.Error("partitioner plugin restart failed", "attempt", attempt, "max", p.l.maxRestarts(), "error", err)
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
	p.failed = fmt.Errorf("partitioner plugin %s: gave up after %d restarts: %v: %w", p.block.Plugin, p.l.maxRestarts(), err, partitioners.ErrClosed)
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

// Close closes the partitioner and ends the plugin process.
func (p *processPartitioner) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return nil
	}
	err := p.p.Close()
	p.client.Kill()
	p.client = nil
	p.failed = fmt.Errorf("partitioner plugin %s: %w", p.block.Plugin, partitioners.ErrClosed)
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

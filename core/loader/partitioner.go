package loader

import (
	"context"
	"fmt"
	"maps"

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
		p, err := openInProcess(ctx, plugins.KindPartitioner, b.Plugin, l.Partitioners[b.Plugin], l.logger().Named("partitioner."+b.Plugin))
		if err != nil {
			return nil, err
		}
		if err := p.Configure(ctx, partitions, maps.Clone(b.Options)); err != nil {
			p.Close()
			return nil, fmt.Errorf("partitioner %s: configure %d partitions: %w", b.Plugin, partitions, err)
		}
		return p, nil
	}
	p := &processPartitioner{supervised[*plugins.PartitionerClient]{
		l: l, kind: plugins.KindPartitioner, block: b, errClosed: partitioners.ErrClosed,
		versions: plugins.PartitionerPluginSet(nil, nil), what: fmt.Sprintf("configure %d partitions", partitions),
		ready: func(ctx context.Context, pc *plugins.PartitionerClient) error {
			return pc.Configure(ctx, partitions, maps.Clone(b.Options))
		},
	}}
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
// plugin and its last output. Its Close and PID are supervised's.
type processPartitioner struct {
	supervised[*plugins.PartitionerClient]
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
		if attempt == 1 {
			return fmt.Errorf("partitioner plugin %s failed during %s, twice (last output: %q): %w", p.block.Plugin, op, p.tail(), err)
		}
		p.restart(gen)
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

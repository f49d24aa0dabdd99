package main

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/partitioners"
)

// layoutOf is the layout cfg creates its keyspace with.
func layoutOf(cfg config.Config) coord.Meta {
	return coord.Meta{Partitions: cfg.Partitions, Partitioner: coord.PluginMeta{Plugin: cfg.Partitioner.Plugin, Options: cfg.Partitioner.Options}}
}

// openLayout opens the partitioner of layout m (docs/resharding.md). When m
// uses the config's partitioner (block), the block's mode and sha256 pin
// apply; a bundled partitioner runs in process when inProcess is set or the
// layout's partitioner is not the config's (it is a pure function of its
// options).
func openLayout(ctx context.Context, l *loader.Loader, m coord.Meta, block config.Plugin, inProcess bool) (partitioners.Partitioner, error) {
	b := loader.Block{Plugin: m.Partitioner.Plugin, Options: maps.Clone(m.Partitioner.Options)}
	same := block.Plugin == b.Plugin
	if same {
		b.Mode, b.SHA256 = block.Mode, block.SHA256
	}
	if slices.Contains(l.PartitionerNames(), b.Plugin) && (inProcess || !same) {
		b.Mode = loader.ModeInProcess
	}
	p, err := l.OpenPartitioner(ctx, b, m.Partitions)
	if err != nil {
		return nil, fmt.Errorf("the partitioner of layout v%d (%d partitions, %s): %w", m.LayoutVersion(), m.Partitions, m.Partitioner.Plugin, err)
	}
	return p, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/partitionertest"
	"github.com/plugdb/plugdb/plugins"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/replicatortest"
)

func pluginCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Serve or check plugins",
	}
	cmd.AddCommand(pluginServeCommand(), pluginCheckCommand())
	return cmd
}

func pluginServeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "serve KIND NAME",
		Short: "Serve a bundled plugin (run by the plugdb host, not by hand)",
		Long: "Serve a bundled plugin over go-plugin. The plugdb host runs this itself for bundled\n" +
			"plugins in process mode; run by hand it prints a message and exits.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name := args[0], args[1]
			switch plugins.Kind(kind) {
			case plugins.KindEngine:
				open, ok := bundledEngines()[name]
				if !ok {
					return fmt.Errorf("no bundled engine %q (bundled: %s)", name, strings.Join(slices.Sorted(maps.Keys(bundledEngines())), ", "))
				}
				plugins.Serve(plugins.ServeConfig{Engine: open})
			case plugins.KindPartitioner:
				open, ok := bundledPartitioners()[name]
				if !ok {
					return fmt.Errorf("no bundled partitioner %q (bundled: %s)", name, strings.Join(slices.Sorted(maps.Keys(bundledPartitioners())), ", "))
				}
				plugins.Serve(plugins.ServeConfig{Partitioner: open})
			case plugins.KindReplicator:
				open, ok := bundledReplicators()[name]
				if !ok {
					return fmt.Errorf("no bundled replicator %q (bundled: %s)", name, strings.Join(slices.Sorted(maps.Keys(bundledReplicators())), ", "))
				}
				plugins.Serve(plugins.ServeConfig{Replicator: open})
			default:
				return fmt.Errorf("plugin kind %q: allowed kinds are %s, %s, %s", kind, plugins.KindEngine, plugins.KindPartitioner, plugins.KindReplicator)
			}
			return nil
		},
	}
}

func pluginCheckCommand() *cobra.Command {
	var mode, kind string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check NAME-or-PATH",
		Short: "Run the conformance kit against a bundled plugin or a plugin binary",
		Long: "Run the conformance kit of the plugin's kind (engines/enginetest,\n" +
			"partitioners/partitionertest or replicators/replicatortest) against a bundled engine,\n" +
			"partitioner or replicator (by name) or any plugin binary (by path), through a real plugin\n" +
			"process unless --mode inprocess. The kind is found out (a binary that is no engine is tried\n" +
			"as a partitioner, then as a replicator) unless --kind says it. Prints one line per case\n" +
			"and, last, 'N passed, N failed, N skipped'. Exits 1\n" +
			"when a case fails, 2 when the plugin cannot be loaded (not a plugin, of no kind this\n" +
			"plugdb knows, another protocol version).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := newLoader(newLogger("error"))
			if err != nil {
				return err
			}
			block := loader.Block{Plugin: args[0], Mode: mode}
			k, err := checkKind(cmd.Context(), l, block, kind)
			if err != nil {
				return err
			}
			switch k {
			case plugins.KindPartitioner:
				return runPartitionerCheck(cmd.Context(), cmd.OutOrStdout(), l, block, timeout)
			case plugins.KindReplicator:
				return runReplicatorCheck(cmd.Context(), cmd.OutOrStdout(), l, block, timeout)
			}
			return runCheck(cmd.Context(), cmd.OutOrStdout(), l, block, timeout)
		},
	}
	cmd.Flags().StringVar(&mode, "mode", loader.ModeProcess, "process (a real plugin process) or inprocess (bundled plugins only)")
	cmd.Flags().StringVar(&kind, "kind", "", "engine, partitioner or replicator (default: found out)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "time limit for each case")
	return cmd
}

// checkKind returns the kind of plugin block names: kind if set; else the
// kind of a bundled plugin of that name; else, for a binary, engine unless it
// turns out to serve another kind, then partitioner, then replicator.
func checkKind(ctx context.Context, l *loader.Loader, block loader.Block, kind string) (plugins.Kind, error) {
	switch plugins.Kind(kind) {
	case plugins.KindEngine, plugins.KindPartitioner, plugins.KindReplicator:
		return plugins.Kind(kind), nil
	case "":
	default:
		return "", fmt.Errorf("--kind %q: allowed values are %s, %s, %s", kind, plugins.KindEngine, plugins.KindPartitioner, plugins.KindReplicator)
	}
	if slices.Contains(l.EngineNames(), block.Plugin) {
		return plugins.KindEngine, nil
	}
	if slices.Contains(l.PartitionerNames(), block.Plugin) {
		return plugins.KindPartitioner, nil
	}
	if slices.Contains(l.ReplicatorNames(), block.Plugin) {
		return plugins.KindReplicator, nil
	}
	if !strings.ContainsRune(block.Plugin, filepath.Separator) {
		return "", fmt.Errorf("%q: no such bundled engine (bundled: %s), partitioner (bundled: %s) or replicator (bundled: %s); a plugin binary is given by path, e.g. ./bin/myplugin",
			block.Plugin, strings.Join(l.EngineNames(), ", "), strings.Join(l.PartitionerNames(), ", "), strings.Join(l.ReplicatorNames(), ", "))
	}
	if err := l.CheckEngineBlock(block); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "plugdb-check-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	eng, err := l.OpenEngine(ctx, block, dir)
	if err == nil {
		if err := eng.Close(); err != nil {
			return "", fmt.Errorf("close %s after probe: %w", block.Plugin, err)
		}
		return plugins.KindEngine, nil
	}
	if !errors.Is(err, loader.ErrWrongKind) {
		return "", err
	}
	p, perr := l.OpenPartitioner(ctx, block, 1)
	if perr == nil {
		if err := p.Close(); err != nil {
			return "", fmt.Errorf("close %s after probe: %w", block.Plugin, err)
		}
		return plugins.KindPartitioner, nil
	}
	if !errors.Is(perr, loader.ErrWrongKind) {
		return "", perr
	}
	r, rerr := l.OpenReplicator(ctx, block, replicators.Options{Dir: dir, Listen: "127.0.0.1:0"})
	if rerr != nil {
		if errors.Is(rerr, loader.ErrWrongKind) {
			return "", fmt.Errorf("%s is a plugdb plugin of no kind this plugdb checks (neither an engine, a partitioner nor a replicator): %w", block.Plugin, err)
		}
		return "", rerr
	}
	if err := r.Close(); err != nil {
		return "", fmt.Errorf("close %s after probe: %w", block.Plugin, err)
	}
	return plugins.KindReplicator, nil
}

// runCheck runs every kit case against the engine of block and reports.
func runCheck(ctx context.Context, out io.Writer, l *loader.Loader, block loader.Block, timeout time.Duration) error {
	if err := l.CheckEngineBlock(block); err != nil {
		return err
	}
	// Load once up front so a binary that is no engine plugin fails with one clear error.
	dir, err := os.MkdirTemp("", "plugdb-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	probe, err := l.OpenEngine(ctx, block, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "optional interfaces: %s\n", engines.InterfacesOf(probe))
	if err := probe.Close(); err != nil {
		return fmt.Errorf("close %s after probe: %w", block.Plugin, err)
	}

	harness := enginetest.HarnessFunc(func(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
		b := block
		b.Options = params
		return l.OpenEngine(ctx, b, dir)
	})
	var results []enginetest.Result
	for _, c := range enginetest.Cases() {
		caseCtx, cancel := context.WithTimeout(ctx, timeout)
		res := enginetest.RunCase(caseCtx, c, harness)
		cancel()
		results = append(results, res)
		printResult(out, res)
	}
	return summarize(out, block, results)
}

// runPartitionerCheck runs every partitioner kit case against the partitioner
// of block and reports. A bundled partitioner is compared with itself linked
// in process (the MatchesReference case); a binary has no reference.
func runPartitionerCheck(ctx context.Context, out io.Writer, l *loader.Loader, block loader.Block, timeout time.Duration) error {
	if err := l.CheckPartitionerBlock(block); err != nil {
		return err
	}
	// Load once up front so a binary that is no partitioner plugin fails with one clear error.
	probe, err := l.OpenPartitioner(ctx, block, 1)
	if err != nil {
		return err
	}
	if err := probe.Close(); err != nil {
		return fmt.Errorf("close %s after probe: %w", block.Plugin, err)
	}
	h := partitionertest.Harness{
		Open: partitionertest.OpenConfigured(func(ctx context.Context, n int, options map[string]string) (partitioners.Partitioner, error) {
			b := block
			b.Options = options
			return l.OpenPartitioner(ctx, b, n)
		}),
	}
	if open, ok := bundledPartitioners()[block.Plugin]; ok && !strings.ContainsRune(block.Plugin, filepath.Separator) {
		h.Reference = partitionertest.FromOpenFunc(open)
	}
	var results []enginetest.Result
	for _, c := range partitionertest.Cases() {
		caseCtx, cancel := context.WithTimeout(ctx, timeout)
		res := partitionertest.RunCase(caseCtx, c, h)
		cancel()
		results = append(results, res)
		printResult(out, res)
	}
	return summarize(out, block, results)
}

// runReplicatorCheck runs every replicator kit case against the replicator of
// block and reports. The cases that need copies run with two plugin processes
// that reach each other on 127.0.0.1; a replicator that makes none skips them.
func runReplicatorCheck(ctx context.Context, out io.Writer, l *loader.Loader, block loader.Block, timeout time.Duration) error {
	if err := l.CheckReplicatorBlock(block); err != nil {
		return err
	}
	// Load once up front so a binary that is no replicator plugin fails with one clear error.
	dir, err := os.MkdirTemp("", "plugdb-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	probe, err := l.OpenReplicator(ctx, block, replicators.Options{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	if err := probe.Close(); err != nil {
		return fmt.Errorf("close %s after probe: %w", block.Plugin, err)
	}
	h := replicatortest.Harness{Open: func(ctx context.Context, opts replicators.Options) (replicators.Replicator, error) {
		b := block
		b.Options = opts.Params
		return l.OpenReplicator(ctx, b, opts)
	}}
	var results []enginetest.Result
	for _, c := range replicatortest.Cases() {
		caseCtx, cancel := context.WithTimeout(ctx, timeout)
		res := replicatortest.RunCase(caseCtx, c, h)
		cancel()
		results = append(results, res)
		printResult(out, res)
	}
	return summarize(out, block, results)
}

// printResult prints a case's line, and its log unless it passed.
func printResult(out io.Writer, res enginetest.Result) {
	fmt.Fprintln(out, res)
	if res.Status == enginetest.Pass {
		return
	}
	for _, line := range res.Log {
		fmt.Fprintf(out, "    %s\n", line)
	}
}

// summarize prints 'N passed, N failed, N skipped' and fails if a case failed.
func summarize(out io.Writer, block loader.Block, results []enginetest.Result) error {
	var passed, failed, skipped int
	for _, res := range results {
		switch res.Status {
		case enginetest.Pass:
			passed++
		case enginetest.Fail:
			failed++
		case enginetest.Skip:
			skipped++
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s: %d of %d cases failed", block.Plugin, failed, passed+failed+skipped)}
	}
	return nil
}

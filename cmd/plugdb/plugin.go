package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/plugins"
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
			if kind != string(plugins.KindEngine) {
				return fmt.Errorf("plugin kind %q: allowed kinds are %s", kind, plugins.KindEngine)
			}
			open, ok := bundledEngines()[name]
			if !ok {
				return fmt.Errorf("no bundled engine %q (bundled: %s)", name, strings.Join(slices.Sorted(maps.Keys(bundledEngines())), ", "))
			}
			plugins.Serve(plugins.ServeConfig{Engine: open})
			return nil
		},
	}
}

func pluginCheckCommand() *cobra.Command {
	var mode string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check NAME-or-PATH",
		Short: "Run the engine conformance kit against a bundled engine or a plugin binary",
		Long: "Run the engine conformance kit (engines/enginetest) against a bundled engine (by name)\n" +
			"or any plugin binary (by path), through a real plugin process unless --mode inprocess.\n" +
			"Prints one line per case and, last, 'N passed, N failed, N skipped'. Exits 1 when a\n" +
			"case fails, 2 when the plugin cannot be loaded (not a plugin, not an engine, another\n" +
			"protocol version).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := newLoader(newLogger("error"))
			if err != nil {
				return err
			}
			block := loader.Block{Plugin: args[0], Mode: mode}
			return runCheck(cmd.Context(), cmd.OutOrStdout(), l, block, timeout)
		},
	}
	cmd.Flags().StringVar(&mode, "mode", loader.ModeProcess, "process (a real plugin process) or inprocess (bundled engines only)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "time limit for each case")
	return cmd
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
	if err := probe.Close(); err != nil {
		return fmt.Errorf("close %s after probe: %w", block.Plugin, err)
	}

	harness := enginetest.HarnessFunc(func(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
		b := block
		b.Options = params
		return l.OpenEngine(ctx, b, dir)
	})
	var passed, failed, skipped int
	for _, c := range enginetest.Cases() {
		caseCtx, cancel := context.WithTimeout(ctx, timeout)
		res := enginetest.RunCase(caseCtx, c, harness)
		cancel()
		fmt.Fprintln(out, res)
		switch res.Status {
		case enginetest.Pass:
			passed++
		case enginetest.Fail:
			failed++
			for _, line := range res.Log {
				fmt.Fprintf(out, "    %s\n", line)
			}
		case enginetest.Skip:
			skipped++
			for _, line := range res.Log {
				fmt.Fprintf(out, "    %s\n", line)
			}
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s: %d of %d cases failed", block.Plugin, failed, passed+failed+skipped)}
	}
	return nil
}

// Command plugdb is plugdb's one binary: it hosts the database, serves the
// bundled plugins (plugdb plugin serve KIND NAME), and checks plugins.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/bbolt"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/engines/pebble"
	"github.com/plugdb/plugdb/engines/rowfile"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/keyrange"
	"github.com/plugdb/plugdb/partitioners/ring"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/none"
	"github.com/plugdb/plugdb/replicators/statement"
)

// bundledEngines are the engines this binary links and serves.
func bundledEngines() map[string]engines.OpenFunc {
	return map[string]engines.OpenFunc{
		"rowfile": rowfile.Open,
		"memory":  memory.Open,
		"bbolt":   bbolt.Open,
		"pebble":  pebble.Open,
	}
}

// bundledPartitioners are the partitioners this binary links and serves.
func bundledPartitioners() map[string]partitioners.OpenFunc {
	return map[string]partitioners.OpenFunc{
		"hash":  hash.Open,
		"range": keyrange.Open,
		"ring":  ring.Open,
	}
}

// bundledReplicators are the replicators this binary links and serves. Their
// names are also the replicator.plugin values a config may name.
func bundledReplicators() map[string]replicators.OpenFunc {
	return map[string]replicators.OpenFunc{
		"none":      none.Open,
		"statement": statement.Open,
	}
}

// newLoader returns a loader that serves bundled plugins from this executable.
func newLoader(log hclog.Logger) (*loader.Loader, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	return &loader.Loader{Logger: log, Self: self, Engines: bundledEngines(), Partitioners: bundledPartitioners(), Replicators: bundledReplicators()}, nil
}

func newLogger(level string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "plugdb", Level: hclog.LevelFromString(level), Output: os.Stderr})
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "plugdb",
		Short: "plugdb: a distributed key-value database built from plugins",
		Long: "plugdb is a key-value database whose storage engines, partitioners and replicators are\n" +
			"out-of-process plugins over gRPC (hashicorp/go-plugin).\n\n" +
			"Start with `plugdb dev` (the whole database in one process), then use the client verbs\n" +
			"against it (--addr, default 127.0.0.1:7070). Exit codes: 0 success; 1 a missing key\n" +
			"(\"not found: KEY\" on stderr) or a failed conformance case; 2 any other error.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("log-level", "info", "log level: trace, debug, info, warn, error")
	root.AddCommand(pluginCommand(), demoCommand(), devCommand())
	root.AddCommand(cliCommands()...)
	root.AddCommand(nodeCommand(), routerCommand(), clusterCommand())
	root.AddCommand(benchCommand(), reshardCommand())
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		printError(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 2
}

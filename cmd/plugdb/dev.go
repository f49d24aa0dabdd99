package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/datadir"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/core/local"
	"github.com/plugdb/plugdb/core/server"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// devCommand is `plugdb dev`: the whole database in one process.
func devCommand() *cobra.Command {
	var flags configFlags
	cmd := &cobra.Command{
		Use:   "dev [--config FILE] [--data DIR]",
		Short: "Run plugdb in one process: router and every partition, no ZooKeeper",
		Long: "Run the embedded default: the router and all partitions in one process, one replica\n" +
			"each, the engine loaded as a plugin (unless engine.mode is inprocess). Configuration:\n" +
			"built-in defaults, then --config FILE, then PLUGDB_… environment variables, then flags.\n" +
			"Stops cleanly on SIGINT or SIGTERM.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.load(cmd)
			if err != nil {
				return err
			}
			level, _ := cmd.Flags().GetString("log-level")
			return runDev(cmd.Context(), cfg, level)
		},
	}
	flags.register(cmd, "data", "router.grpc", "router.http")
	return cmd
}

// configFlags are a command's --config flag and the flags that set config keys.
type configFlags struct {
	file string
	keys map[string]*string
}

// register adds --config and a flag for each of keys (see flagName).
func (f *configFlags) register(cmd *cobra.Command, keys ...string) {
	cmd.Flags().StringVar(&f.file, "config", "", "config file (YAML) overlaying the built-in defaults")
	f.keys = map[string]*string{}
	for _, key := range keys {
		f.keys[key] = new(string)
		cmd.Flags().StringVar(f.keys[key], flagName(key), "", "sets config key "+key)
	}
}

// load loads the config: defaults, the file, the environment, the flags given.
func (f *configFlags) load(cmd *cobra.Command) (config.Config, error) {
	set := map[string]string{}
	for key, v := range f.keys {
		if cmd.Flags().Changed(flagName(key)) {
			set[key] = *v
		}
	}
	return config.Load(config.Source{File: f.file, Env: os.Environ(), Flags: set})
}

func flagName(key string) string {
	if key == "data" {
		return "data"
	}
	return strings.TrimPrefix(key, "router.")
}

func runDev(ctx context.Context, cfg config.Config, level string) error {
	log := newLogger(level)
	l, err := newLoader(log)
	if err != nil {
		return err
	}
	known := config.Known{Engines: l.EngineNames(), Partitioners: l.PartitionerNames(), Replicators: l.ReplicatorNames()}
	if err := cfg.Validate(known); err != nil {
		return err
	}
	// One local backend per keyspace, each on its own data folder
	// (config.ForKeyspace's Data), served side by side.
	backends := map[string]api.Backend{}
	var (
		kcfgs  []config.Config
		opened []*local.Backend
	)
	defer func() {
		for i, b := range opened {
			if err := b.Close(); err != nil {
				log.Error("close partitions", "keyspace", kcfgs[i].Keyspace, "error", err)
			}
		}
	}()
	for _, name := range cfg.KeyspaceNames() {
		kcfg, err := cfg.ForKeyspace(name)
		if err != nil {
			return err
		}
		b, err := openDevKeyspace(ctx, l, kcfg)
		if err != nil {
			if kcfg.Keyspace != "" {
				return fmt.Errorf("keyspace %s: %w", name, err)
			}
			return err
		}
		backends[name] = b
		kcfgs, opened = append(kcfgs, kcfg), append(opened, b)
	}
	creds, err := cfg.TLS.Creds()
	if err != nil {
		return err
	}
	srv, err := server.StartTLS(ctx, creds, api.NewKeyspaceServer(backends), cfg.Router.GRPC, cfg.Router.HTTP)
	if err != nil {
		return err
	}
	mode := cfg.Engine.Mode
	if mode == "" {
		mode = "process"
	}
	fmt.Printf("plugdb dev: cluster %q, %d partitions, data in %s\n", cfg.Cluster, cfg.Partitions, cfg.Data)
	fmt.Printf("  engine %s (%s) %s, partitioner %s (%s), replicator %s\n", cfg.Engine.Plugin, mode, formatOptions(cfg.Engine.Options),
		cfg.Partitioner.Plugin, pluginInfo(cfg.Partitioner, cfg.Partitioner.Mode).GetMode(), cfg.Replicator.Plugin)
	for _, k := range kcfgs[1:] {
		fmt.Printf("  keyspace %s: %d partitions, engine %s, partitioner %s, data in %s\n", k.Keyspace, k.Partitions, k.Engine.Plugin, k.Partitioner.Plugin, k.Data)
	}
	fmt.Printf("  gRPC  %s   (plugdb get KEY --addr %s)\n", srv.GRPCAddr(), srv.GRPCAddr())
	fmt.Printf("  REST  %s/v1/kv/KEY   (OpenAPI: /v1/openapi.json)\n", srv.HTTPURL())
	if len(kcfgs) > 1 {
		fmt.Printf("        %s/v1/keyspaces/NAME/kv/KEY\n", srv.HTTPURL())
	}
	fmt.Println("ready; Ctrl-C stops")

	select {
	case <-ctx.Done():
		log.Info("stopping: signal received")
	case err := <-srv.Err():
		log.Error("server stopped", "error", err)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Stop(stopCtx)
	return nil
}

// openDevKeyspace opens the partitions of the keyspace cfg describes (as
// config.ForKeyspace makes it) on its data folder.
func openDevKeyspace(ctx context.Context, l *loader.Loader, cfg config.Config) (*local.Backend, error) {
	if cfg.Replicator.Plugin != "none" {
		return nil, fmt.Errorf("replicator.plugin %q: plugdb dev runs one replica per partition: allowed value is none", cfg.Replicator.Plugin)
	}
	_, statErr := os.Stat(cfg.Data)
	_, metaErr := datadir.Meta(cfg.Data)
	if err := datadir.Prepare(cfg.Data, cfg.Engine, cfg.Partitions); err != nil {
		return nil, err
	}
	if err := datadir.CheckPartitioner(cfg.Data, cfg.Partitioner); err != nil {
		return nil, err
	}
	// A folder this run claimed is released again if its engine cannot be
	// started (a binary that is no plugin, say), so a fixed config can use it.
	release := func() {
		if !errors.Is(metaErr, fs.ErrNotExist) {
			return
		}
		os.Remove(filepath.Join(cfg.Data, datadir.RecordFile))
		for p := 0; p < cfg.Partitions; p++ {
			os.RemoveAll(datadir.PartitionDir(cfg.Data, p))
		}
		if errors.Is(statErr, fs.ErrNotExist) {
			os.Remove(cfg.Data)
		}
	}
	info := local.Info{
		Cluster: cfg.Cluster, Addr: cfg.Router.GRPC,
		Engine: pluginInfo(cfg.Engine, cfg.Engine.Mode), Partitioner: pluginInfo(cfg.Partitioner, cfg.Partitioner.Mode),
		// The none replicator is linked in until its plugin contract comes with
		// the cluster.
		Replicator: pluginInfo(cfg.Replicator, "inprocess"),
	}
	backend, err := local.OpenPartitioned(ctx, l, cfg.Engine.Block(), cfg.Partitioner.Block(), cfg.Data, cfg.Partitions, info)
	if err != nil {
		release()
		return nil, err
	}
	return backend, nil
}

func pluginInfo(p config.Plugin, mode string) *plugdbv1.Plugin {
	if mode == "" {
		mode = "process"
	}
	return &plugdbv1.Plugin{Plugin: p.Plugin, Mode: mode, Options: p.Options}
}

func formatOptions(opts map[string]string) string {
	if len(opts) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + opts[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

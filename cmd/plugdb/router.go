package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/router"
	"github.com/plugdb/plugdb/core/server"
	"github.com/plugdb/plugdb/partitioners"
)

// routerCommand is `plugdb router`: the cluster's front door.
func routerCommand() *cobra.Command {
	var flags configFlags
	cmd := &cobra.Command{
		Use:   "router --config FILE",
		Short: "Run the router: the cluster's gRPC and REST front door",
		Long: "Run the router: it loads the partitioner plugin, watches the cluster's topology in\n" +
			"ZooKeeper, and serves the public API (gRPC on router.grpc, REST on router.http),\n" +
			"sending writes and strong reads to each partition's leader and stale reads to a\n" +
			"follower. It serves every keyspace of the config (docs/keyspaces.md), each with its\n" +
			"own partitioner and topology. Stops cleanly on SIGINT or SIGTERM.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.load(cmd)
			if err != nil {
				return err
			}
			level, _ := cmd.Flags().GetString("log-level")
			return runRouter(cmd.Context(), cfg, newLogger(level).Named("router"))
		},
	}
	flags.register(cmd, "router.grpc", "router.http")
	return cmd
}

// keyspaceRouter is the router of one keyspace and what it holds open.
type keyspaceRouter struct {
	cfg    config.Config // the keyspace's, as config.ForKeyspace makes it
	r      *router.Router
	client *coord.Client
	close  func()
}

// openKeyspaceRouter joins keyspace name of cfg's cluster: its own ZooKeeper
// session (one per keyspace: a coord.Client coordinates one keyspace, and a
// router serves few keyspaces, so a session each costs little and keeps
// their watches apart), its metadata checked, its partitioner loaded, and a
// router.Router watching its topology.
func openKeyspaceRouter(ctx context.Context, cfg config.Config, name string, pm *processMetrics, log hclog.Logger) (*keyspaceRouter, error) {
	kcfg, err := cfg.ForKeyspace(name)
	if err != nil {
		return nil, err
	}
	if kcfg.Keyspace != "" {
		log = log.Named(kcfg.Keyspace)
	}
	l, client, err := joinCluster(ctx, kcfg, log)
	if err != nil {
		return nil, fmt.Errorf("keyspace %s: %w", name, err)
	}
	l.OnRestart = pm.plugins.Restarted
	// The keyspace's recorded layout: the config's partitions and
	// partitioner are only what it was created with, and a reshard may
	// have moved it since.
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	meta, err := coord.ReadMeta(mctx, client)
	cancel()
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("keyspace %s: %w", name, err)
	}
	creds, err := kcfg.TLS.Creds()
	if err != nil {
		client.Close()
		return nil, err
	}
	// A layout with the config's partitioner is opened as the config says
	// (its mode: in-process, or a plugin process); another in process if
	// bundled.
	open := func(ctx context.Context, m coord.Meta) (partitioners.Partitioner, error) {
		p, err := openLayout(ctx, l, m, kcfg.Partitioner, false)
		if err != nil {
			return nil, err
		}
		return pm.plugins.Partitioner(p, m.Partitioner.Plugin), nil
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	r, err := router.New(watchCtx, client, meta, open, router.Info{
		Cluster: kcfg.Cluster, Keyspace: kcfg.Keyspace, Engine: pluginInfo(kcfg.Engine, kcfg.Engine.Mode),
		Partitioner: pluginInfo(kcfg.Partitioner, kcfg.Partitioner.Mode), Replicator: pluginInfo(kcfg.Replicator, kcfg.Replicator.Mode),
		Logger: log, TLS: creds,
	})
	if err != nil {
		stopWatch()
		client.Close()
		return nil, fmt.Errorf("keyspace %s: %w", name, err)
	}
	return &keyspaceRouter{cfg: kcfg, r: r, client: client, close: func() {
		r.Close()
		stopWatch()
		client.Close()
	}}, nil
}

func runRouter(ctx context.Context, cfg config.Config, log hclog.Logger) error {
	var routers []*keyspaceRouter
	defer func() {
		for _, kr := range routers {
			kr.close()
		}
	}()
	m, err := newProcessMetrics()
	if err != nil {
		return err
	}
	backends := map[string]api.Backend{}
	for _, name := range cfg.KeyspaceNames() {
		kr, err := openKeyspaceRouter(ctx, cfg, name, m, log)
		if err != nil {
			return err
		}
		routers = append(routers, kr)
		backends[name] = kr.r
	}
	creds, err := cfg.TLS.Creds()
	if err != nil {
		return err
	}
	page := newRouterUI(routers)
	stopMetrics, err := startRouterMetrics(m, routers, page.onLeaderChange)
	if err != nil {
		return err
	}
	defer stopMetrics()
	extra := page.serve(m.extra(m.health))
	extra.TLS = creds
	srv, err := server.StartWith(ctx, m.countedKV(api.NewKeyspaceServer(backends)), cfg.Router.GRPC, cfg.Router.HTTP, extra, m.grpc.Init)
	if err != nil {
		return err
	}
	layout := layoutOf(cfg)
	for _, kr := range routers {
		if kr.cfg.Keyspace == "" || kr.cfg.Keyspace == config.DefaultKeyspace {
			layout = kr.r.Layout()
		}
	}
	fmt.Printf("plugdb router: cluster %q, %d partitions, partitioner %s, ZooKeeper %v\n", cfg.Cluster, layout.Partitions, layout.Partitioner.Plugin, cfg.ZooKeeper.Servers)
	if len(routers) > 1 {
		fmt.Printf("  keyspaces %s\n", keyspacesLine(routers))
	}
	// An every-interface address (0.0.0.0) is printed as this machine's name.
	fmt.Printf("  gRPC  %s   (plugdb status --addr %s)\n", reachableAddr(srv.GRPCAddr()), reachableAddr(srv.GRPCAddr()))
	fmt.Printf("  REST  %s://%s/v1/kv/KEY\n", restScheme(creds), reachableAddr(srv.HTTPAddr()))
	if len(routers) > 1 {
		fmt.Printf("        %s://%s/v1/keyspaces/NAME/kv/KEY\n", restScheme(creds), reachableAddr(srv.HTTPAddr()))
	}
	fmt.Printf("  metrics http://%s/metrics   (health: /healthz)\n", srv.HTTPAddr())
	fmt.Printf("  status page http://%s/ui/\n", srv.HTTPAddr())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping: signal received")
	case err := <-srv.Err():
		runErr = fmt.Errorf("router server stopped: %w", err)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Stop(stopCtx)
	return runErr
}

// keyspacesLine describes the routers' keyspaces, e.g. "default (hash, 2
// partitions), events (range, 3 partitions)".
func keyspacesLine(routers []*keyspaceRouter) string {
	parts := make([]string, len(routers))
	for i, kr := range routers {
		name := kr.cfg.Keyspace
		if name == "" {
			name = config.DefaultKeyspace
		}
		m := kr.r.Layout()
		parts[i] = fmt.Sprintf("%s (%s, %d partitions)", name, m.Partitioner.Plugin, m.Partitions)
	}
	return strings.Join(parts, ", ")
}

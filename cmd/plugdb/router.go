package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/router"
	"github.com/plugdb/plugdb/core/server"
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
			"follower. Stops cleanly on SIGINT or SIGTERM.",
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

func runRouter(ctx context.Context, cfg config.Config, log hclog.Logger) error {
	l, client, err := joinCluster(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer client.Close()
	part, err := l.OpenPartitioner(ctx, cfg.Partitioner.Block(), cfg.Partitions)
	if err != nil {
		return err
	}
	defer part.Close()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	r := router.New(watchCtx, client, part, cfg.Partitions, router.Info{
		Cluster: cfg.Cluster, Engine: pluginInfo(cfg.Engine, cfg.Engine.Mode),
		Partitioner: pluginInfo(cfg.Partitioner, cfg.Partitioner.Mode), Replicator: pluginInfo(cfg.Replicator, cfg.Replicator.Mode),
	})
	defer r.Close()
	srv, err := server.Start(ctx, api.NewServer(r), cfg.Router.GRPC, cfg.Router.HTTP)
	if err != nil {
		return err
	}
	fmt.Printf("plugdb router: cluster %q, %d partitions, partitioner %s, ZooKeeper %v\n", cfg.Cluster, cfg.Partitions, cfg.Partitioner.Plugin, cfg.ZooKeeper.Servers)
	fmt.Printf("  gRPC  %s   (plugdb status --addr %s)\n", srv.GRPCAddr(), srv.GRPCAddr())
	fmt.Printf("  REST  http://%s/v1/kv/KEY\n", srv.HTTPAddr())

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

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/zkserver"
)

// defaultClusterConfig and defaultClusterDir are `plugdb cluster up`'s defaults.
const (
	defaultClusterConfig = "configs/cluster.yaml"
	defaultClusterDir    = "./plugdb-cluster"
)

// clusterCommand is `plugdb cluster up|down`: the default cluster on one machine.
func clusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster up|down|reshard",
		Short: "Run a whole cluster on this machine: ZooKeeper, a router and the nodes",
		Long: "`plugdb cluster up` starts ZooKeeper (the system's install), a router and\n" +
			"partitions × nodes.replicas nodes as child processes, their logs in DIR/logs, and stops\n" +
			"them all on Ctrl-C (SIGINT) or SIGTERM; `plugdb cluster down` stops a cluster started\n" +
			"in the background from another terminal; `plugdb cluster reshard` adds partitions to it\n" +
			"while it serves.",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(clusterUpCommand(), clusterDownCommand(), clusterReshardCommand())
	return cmd
}

func clusterUpCommand() *cobra.Command {
	var file, dir string
	var zookeepers int
	var useTLS bool
	cmd := &cobra.Command{
		Use:   "up [--dir DIR] [--config FILE] [--zookeepers 1|3] [--tls]",
		Short: "Start ZooKeeper, the router and every node; stop them on Ctrl-C",
		Long: "Start the cluster in the foreground: ZooKeeper on the first of zookeeper.servers\n" +
			"(with --zookeepers 3, an ensemble on that port and the two after it), the router on\n" +
			"router.grpc and router.http, and replica r of partition p on\n" +
			"127.0.0.1:nodes.base_port+p*nodes.replicas+r, each a child process with its log in\n" +
			"DIR/logs and its data in DIR/data/p<p>-r<r> (ZooKeeper's in DIR/zookeeper); the nodes of\n" +
			"another keyspace K follow on the next ports, their data in DIR/data/keyspaces/K. It waits\n" +
			"until every partition of every keyspace has a leader, prints the endpoints, and runs until SIGINT or\n" +
			"SIGTERM (or `plugdb cluster down --dir DIR`), then stops the router, the nodes and\n" +
			"ZooKeeper in that order. A node that dies is reported and left down. Starting again\n" +
			"on the same DIR reuses its data, and starts the nodes of the partitions a move added\n" +
			"(`plugdb cluster reshard`) too. With --tls every process serves mutual TLS: a throwaway\n" +
			"CA and a certificate per process (and one for clients) in DIR/tls; it prints the\n" +
			"--cacert, --cert and --key flags the client verbs then need (docs/security.md).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if zookeepers != 1 && zookeepers != 3 {
				return fmt.Errorf("--zookeepers %d: allowed values are 1 and 3", zookeepers)
			}
			if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
				return fmt.Errorf("config file %s not found: run from plugdb's source folder or give --config FILE", file)
			}
			cfg, err := config.Load(config.Source{File: file, Env: os.Environ()})
			if err != nil {
				return err
			}
			l, err := newLoader(newLogger("error"))
			if err != nil {
				return err
			}
			if err := cfg.Validate(clusterKnown(l)); err != nil { // every keyspace's too
				return err
			}
			if _, err := zkserver.Find(); err != nil {
				return fmt.Errorf("plugdb cluster up runs ZooKeeper from the system's install: %w", err)
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own executable: %w", err)
			}
			ctx := cmd.Context()
			// `plugdb cluster reshard` asks for the nodes of new partitions
			// with a request file and RequestSignal (core/cluster/grow.go):
			// the handler is in place before the record says it is.
			requests := make(chan os.Signal, 1)
			signal.Notify(requests, cluster.RequestSignal)
			c, err := cluster.Start(ctx, cluster.Options{
				Config: cfg, ConfigFile: file, Dir: dir, Binary: self, ZooKeepers: zookeepers,
				Env: os.Environ(), Out: cmd.OutOrStdout(), ServeRequests: true, TLS: useTLS,
			})
			if err != nil {
				signal.Stop(requests)
				return err
			}
		serve:
			for {
				select {
				case <-ctx.Done():
					break serve
				case <-requests:
					if err := c.ServeRequest(); err != nil {
						fmt.Fprintf(cmd.OutOrStdout(), "plugdb cluster: a request to start nodes: %v\n", err)
					}
				}
			}
			// A request that comes while the cluster stops is dropped, and
			// must not end the supervisor (the signal's default action).
			signal.Ignore(cluster.RequestSignal)
			fmt.Fprintln(cmd.OutOrStdout(), "stopping: router, nodes, ZooKeeper …")
			began := time.Now()
			if err := c.Stop(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped in %v\n", time.Since(began).Round(100*time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultClusterDir, "cluster folder: ZooKeeper's data, the nodes' data, logs, cluster.json")
	cmd.Flags().StringVar(&file, "config", defaultClusterConfig, "config file (YAML) overlaying the built-in defaults")
	cmd.Flags().IntVar(&zookeepers, "zookeepers", 1, "ZooKeeper servers: 1, or 3 (an ensemble on loopback)")
	cmd.Flags().BoolVar(&useTLS, "tls", false, "serve mutual TLS everywhere, with a throwaway CA and certificates made in DIR/tls")
	return cmd
}

func clusterDownCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down [--dir DIR]",
		Short: "Stop the cluster running from DIR",
		Long: "Stop the cluster that `plugdb cluster up --dir DIR` runs: signal its supervisor (the\n" +
			"PID recorded in DIR/cluster.json, if it is still that process), wait for it to stop its\n" +
			"children, then stop any recorded child still running (after the supervisor was killed,\n" +
			"say): SIGTERM, then SIGKILL. Says what it stopped; nothing running is no error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cluster.Down(cmd.Context(), dir, cmd.OutOrStdout(), 10*time.Second)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultClusterDir, "cluster folder given to `plugdb cluster up`")
	return cmd
}

package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/callstream"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/datadir"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/core/node"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/core/server"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/replicators"
)

// connectTimeout bounds the first connection to ZooKeeper at start-up.
const connectTimeout = 15 * time.Second

// nodeCommand is `plugdb node`: one replica of one partition.
func nodeCommand() *cobra.Command {
	var (
		file, addr, data, replAddr string
		metricsAddr                string
		advertise, replAdvertise   string
		keyspace                   string
		part                       int
		unclean, newPartition      bool
	)
	cmd := &cobra.Command{
		Use:   "node --config FILE --partition N --addr HOST:PORT --data DIR",
		Short: "Run one replica of one partition, coordinated through ZooKeeper",
		Long: "Run one replica of partition N: it loads its engine, registers in ZooKeeper, takes part\n" +
			"in the partition's leader election, and serves the node API (plugdb.v1.KV for its\n" +
			"partition) on --addr. As leader it serves writes and strong reads; as follower, stale\n" +
			"reads (`plugdb get --node HOST:PORT KEY`). A key of another partition is refused\n" +
			"(FAILED_PRECONDITION, naming its partition) and scans return only the partition's keys.\n" +
			"Stops cleanly on SIGINT or SIGTERM.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set := map[string]string{}
			if data != "" {
				set["data"] = data
			}
			if metricsAddr != "" {
				set["metrics.addr"] = metricsAddr
			}
			cfg, err := config.Load(config.Source{File: file, Env: os.Environ(), Flags: set})
			if err != nil {
				return err
			}
			// From here on cfg is the keyspace's: its partitions, plugins,
			// ZooKeeper znodes. --data names this replica's own folder, which
			// the keyspace's data folder does not move.
			if cfg, err = cfg.ForKeyspace(keyspace); err != nil {
				return fmt.Errorf("--keyspace: %w", err)
			}
			if data != "" {
				cfg.Data = data
			}
			if part < 0 || part >= config.MaxPartitions {
				return fmt.Errorf("--partition %d: allowed values are 0..%d (partitions is %d)", part, config.MaxPartitions-1, cfg.Partitions)
			}
			if _, _, err := net.SplitHostPort(addr); err != nil || addr == "" {
				return fmt.Errorf("--addr %q: give the host:port this node listens on and is reached at, e.g. 127.0.0.1:7101", addr)
			}
			if replAddr == "" {
				host, _, _ := net.SplitHostPort(addr)
				replAddr = net.JoinHostPort(host, "0")
			} else if _, _, err := net.SplitHostPort(replAddr); err != nil {
				return fmt.Errorf("--repl-addr %q: give a host:port for the replicator, e.g. 127.0.0.1:0", replAddr)
			}
			if _, _, err := net.SplitHostPort(replAdvertise); replAdvertise != "" && err != nil {
				return fmt.Errorf("--repl-advertise %q: give the host:port others reach it at, e.g. 127.0.0.1:7201", replAdvertise)
			}
			if advertise, err = nodeAdvertise(addr, advertise); err != nil {
				return err
			}
			level, _ := cmd.Flags().GetString("log-level")
			opts := nodeOptions{part: part, addr: addr, replAddr: replAddr, advertise: advertise, replAdvertise: replAdvertise, unclean: unclean, newPartition: newPartition}
			name := fmt.Sprintf("node.p%d", part)
			if cfg.Keyspace != "" {
				name = fmt.Sprintf("node.%s.p%d", cfg.Keyspace, part)
			}
			return runNode(cmd.Context(), cfg, opts, newLogger(level).Named(name))
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "config file (YAML) overlaying the built-in defaults")
	cmd.Flags().StringVar(&keyspace, "keyspace", config.DefaultKeyspace, "the keyspace whose partition this replica holds (docs/keyspaces.md); it serves no other")
	cmd.Flags().IntVar(&part, "partition", -1, "the partition this replica holds, 0..partitions-1")
	cmd.Flags().StringVar(&addr, "addr", "", "host:port to listen on; also the address the router and other nodes use unless --advertise is given\n(0.0.0.0:PORT or [::]:PORT, every interface, needs --advertise)")
	cmd.Flags().StringVar(&data, "data", "", "this replica's data folder (sets config key data)")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "host:port to serve Prometheus /metrics and /healthz on (sets config key metrics.addr; docs/metrics.md)")
	cmd.Flags().StringVar(&replAddr, "repl-addr", "", "host:port the replicator listens on for its peers (default: --addr's host, any free port; published in ZooKeeper)")
	cmd.Flags().StringVar(&advertise, "advertise", "", "host:port the router and other nodes reach this node at, when not --addr (another machine's view,\na proxy, NAT, a container's service name); also its name in ZooKeeper")
	cmd.Flags().StringVar(&replAdvertise, "repl-advertise", "", "host:port peers reach the replicator at, when not the address it listens on; published in ZooKeeper")
	cmd.Flags().BoolVar(&newPartition, "new-partition", false, "start a node of a partition the keyspace's layout does not have yet, which a reshard will add:\nit joins empty and serves no key until the move flips (docs/resharding.md)")
	cmd.Flags().BoolVar(&unclean, "unclean-election", false, "let this replica lead although it is not in the in-sync set; with ack async, writes the old leader\nacknowledged that this replica never received are lost")
	_ = cmd.MarkFlagRequired("partition")
	_ = cmd.MarkFlagRequired("addr")
	return cmd
}

// clusterKnown returns what a cluster process accepts in its config.
func clusterKnown(l *loader.Loader) config.Known {
	return config.Known{Engines: l.EngineNames(), Partitioners: l.PartitionerNames(), Replicators: l.ReplicatorNames()}
}

// connectZK connects to the config's ZooKeeper and writes or checks the
// cluster metadata: of the config's keyspace (cfg.Keyspace, as
// config.ForKeyspace sets it), whose znodes the client then uses.
func connectZK(ctx context.Context, cfg config.Config, log hclog.Logger) (*coord.Client, error) {
	zcfg, err := coordConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	client, err := coord.Connect(cctx, zcfg)
	if err != nil {
		return nil, connectError(err, "is ZooKeeper running? `plugdb cluster up` starts one; zookeeper.servers sets where")
	}
	if _, err := coord.EnsureMeta(cctx, client, layoutOf(cfg)); err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

// joinCluster is the start of every cluster process, for the keyspace cfg
// describes: load the plugins' names, check the config against them,
// connect to ZooKeeper and check the keyspace's metadata.
func joinCluster(ctx context.Context, cfg config.Config, log hclog.Logger) (*loader.Loader, *coord.Client, error) {
	l, err := newLoader(log)
	if err != nil {
		return nil, nil, err
	}
	// The default keyspace's config is the whole config, every keyspace
	// checked; another keyspace's (config.ForKeyspace's) is checked as the
	// cluster of its own it is.
	own := cfg
	if cfg.Keyspace != "" {
		own.Keyspaces = nil
	}
	if err := own.Validate(clusterKnown(l)); err != nil {
		return nil, nil, err
	}
	client, err := connectZK(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	return l, client, nil
}

// nodeOptions are a node's command-line settings.
type nodeOptions struct {
	part           int
	addr, replAddr string
	// advertise and replAdvertise are the addresses published in ZooKeeper
	// when not addr and the replicator's listening address.
	advertise, replAdvertise string
	unclean                  bool
	// newPartition lets the node hold a partition the layout does not have
	// yet (a reshard will add it).
	newPartition bool
}

func runNode(ctx context.Context, cfg config.Config, o nodeOptions, log hclog.Logger) error {
	p, addr := o.part, o.addr
	if o.advertise != "" {
		addr = o.advertise
	}
	l, client, err := joinCluster(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer client.Close()
	creds, err := cfg.TLS.Creds()
	if err != nil {
		return err
	}
	m, err := newProcessMetrics()
	if err != nil {
		return err
	}
	l.OnRestart = m.plugins.Restarted
	layout, err := nodeLayout(ctx, client, &cfg, p, o.newPartition, log)
	if err != nil {
		return err
	}
	if err := datadir.Relayout(cfg.Data, cfg.Partitions, cfg.Partitioner); err != nil {
		return err
	}
	if err := datadir.Prepare(cfg.Data, cfg.Engine, cfg.Partitions); err != nil {
		return err
	}
	if err := datadir.CheckPartitioner(cfg.Data, cfg.Partitioner); err != nil {
		return err
	}
	dir, replDir := datadir.PartitionDir(cfg.Data, p), datadir.ReplicatorDir(cfg.Data, p)
	for _, d := range []string{dir, replDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
	}
	repl, err := l.OpenReplicator(ctx, cfg.Replicator.Block(), replicators.Options{Dir: replDir, Partition: p, Listen: o.replAddr, Replicas: cfg.Nodes.Replicas,
		TLS: replicators.TLSFiles(cfg.TLS.Files())})
	if err != nil {
		return fmt.Errorf("partition %d: %w", p, err)
	}
	repl = m.plugins.Replicator(repl, cfg.Replicator.Plugin)
	defer func() {
		if err := repl.Close(); err != nil {
			log.Error("close replicator", "error", err)
		}
	}()
	// A replicator that makes copies (it has an address) keeps a durable log
	// and replays it from the engine's applied LSN: the log is the commit
	// point, so the engine need not fsync each write, and a write is
	// answered once committed.
	logIsCommitPoint := repl.Addr() != ""
	openEngine := l.OpenEngine
	if logIsCommitPoint {
		openEngine = l.OpenLogBackedEngine
	}
	eng, err := openEngine(ctx, cfg.Engine.Block(), dir)
	if err != nil {
		return fmt.Errorf("partition %d: %w", p, err)
	}
	eng = m.plugins.Engine(eng, cfg.Engine.Plugin, keyspaceLabel(cfg.Keyspace), p)
	part, err := partition.OpenReplica(ctx, p, eng, repl, partition.ReplicaOptions{Logger: log, AnswerAtCommit: logIsCommitPoint})
	if err != nil {
		eng.Close()
		return err
	}
	defer func() {
		if err := part.Close(); err != nil {
			log.Error("close partition", "error", err)
		}
	}()
	// Every write, point read and scanned chunk asks the partitioner: a
	// bundled one (a pure function of its options) runs in process whatever
	// the config's mode, at no plugin call's cost; a third-party one as the
	// config says.
	placer, err := openLayout(ctx, l, layout, cfg.Partitioner, true)
	if err != nil {
		return fmt.Errorf("partition %d: %w", p, err)
	}
	defer placer.Close()
	n := node.New(part, client, addr, node.Info{
		Cluster: cfg.Cluster, Partitions: max(cfg.Partitions, p+1),
		Engine: pluginInfo(cfg.Engine, cfg.Engine.Mode), Partitioner: pluginInfo(cfg.Partitioner, cfg.Partitioner.Mode),
		Replicator: pluginInfo(cfg.Replicator, cfg.Replicator.Mode),
	}, node.Config{Replicator: repl, Partitioner: placer, Layout: layout,
		OpenLayout: func(ctx context.Context, m coord.Meta) (partitioners.Partitioner, error) {
			return openLayout(ctx, l, m, cfg.Partitioner, true)
		}, ReplAddr: replAdvertise(repl.Addr(), o.replAdvertise, addr), Unclean: o.unclean, Logger: log, TLS: creds})
	// The node serves its keyspace alone: a request naming another one is
	// refused (InvalidArgument, naming this one), never served from this
	// partition.
	ksName := cfg.Keyspace
	if ksName == "" {
		ksName = api.DefaultKeyspace
	}
	kv := m.countedKV(api.NewKeyspaceServer(map[string]api.Backend{ksName: n}))
	nm, err := startNodeMetrics(m, cfg, p, client, n, repl)
	if err != nil {
		return fmt.Errorf("partition %d: %w", p, err)
	}
	defer nm.Stop()
	calls := callstream.NewServer(kv)
	extra := m.extra(nil)
	extra.TLS = creds
	srv, err := server.StartWith(ctx, kv, o.addr, "", extra, n.RegisterServices, calls.Register, m.grpc.Init)
	if err != nil {
		return err
	}
	nm.serving.Store(true)
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- n.Run(runCtx) }()
	ksText := ""
	if cfg.Keyspace != "" {
		ksText = " keyspace " + cfg.Keyspace
	}
	fmt.Printf("plugdb node: cluster %q%s partition %d at %s, replicator %s at %s, data in %s, ZooKeeper %v\n",
		cfg.Cluster, ksText, p, srv.GRPCAddr(), cfg.Replicator.Plugin, repl.Addr(), dir, cfg.ZooKeeper.Servers)
	if a := nm.Addr(); a != "" {
		fmt.Printf("  metrics http://%s/metrics   (health: /healthz)\n", a)
	}
	if replPub := replAdvertise(repl.Addr(), o.replAdvertise, addr); addr != o.addr || replPub != repl.Addr() {
		fmt.Printf("  advertised in ZooKeeper as %s, replicator %s\n", addr, replPub)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping: signal received")
	case err := <-srv.Err():
		runErr = fmt.Errorf("node server stopped: %w", err)
	case err := <-ran:
		runErr = fmt.Errorf("election stopped: %w", err)
	case err := <-nm.Err():
		runErr = err
	}
	nm.stopping.Store(true) // /healthz: 503 while the node withdraws and drains
	// Withdraw first so a follower takes over at once, then drain requests.
	stopRun()
	select {
	case err := <-ran:
		if err != nil && runErr == nil {
			log.Warn("leaving the election", "error", err)
		}
	case <-time.After(cfg.ZooKeeper.SessionTimeout):
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls.Drain() // the router's call streams end: the graceful stop need not wait for it
	srv.Stop(stopCtx)
	calls.Wait()
	if errors.Is(runErr, context.Canceled) {
		return nil
	}
	return runErr
}

// nodeLayout returns the keyspace's layout as ZooKeeper records it and sets
// cfg's partitions and partitioner to it (a resharded keyspace's layout is
// not the config's). A node of a partition the layout does not have (yet)
// joins empty, when a recorded move adds it or newPartition says a move
// will: its partition's znodes are made, and it serves no key until a
// reshard moves keys to it (docs/resharding.md).
func nodeLayout(ctx context.Context, client *coord.Client, cfg *config.Config, p int, newPartition bool, log hclog.Logger) (coord.Meta, error) {
	rctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	meta, err := coord.ReadMeta(rctx, client)
	if err != nil {
		return meta, err
	}
	if p >= meta.Partitions && !newPartition {
		r, moving, err := coord.ReadReshard(rctx, client)
		if err != nil {
			return meta, err
		}
		if !moving || p >= r.To.Partitions {
			return meta, fmt.Errorf("--partition %d: allowed values are 0..%d (the keyspace has %d partitions); to start a node of a partition a reshard will add, give --new-partition",
				p, meta.Partitions-1, meta.Partitions)
		}
	}
	if p >= meta.Partitions {
		if err := coord.EnsurePartition(rctx, client, p); err != nil {
			return meta, err
		}
		log.Warn("this partition is not in the keyspace's layout yet: the node joins empty and serves no key until a reshard moves keys to it",
			"partition", p, "partitions", meta.Partitions)
	}
	if cfg.Partitions != meta.Partitions || cfg.Partitioner.Plugin != meta.Partitioner.Plugin || !maps.Equal(cfg.Partitioner.Options, meta.Partitioner.Options) {
		cfg.Partitions = meta.Partitions
		cfg.Partitioner = config.Plugin{Plugin: meta.Partitioner.Plugin, Mode: cfg.Partitioner.Mode, Options: maps.Clone(meta.Partitioner.Options)}
	}
	return meta, nil
}

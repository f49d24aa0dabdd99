package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
)

// clusterReshardCommand is `plugdb cluster reshard`: `plugdb reshard` for
// the cluster `plugdb cluster up` runs, which also starts the new
// partitions' nodes.
func clusterReshardCommand() *cobra.Command {
	var dir string
	var f reshardFlags
	var ready time.Duration
	cmd := &cobra.Command{
		Use:   "reshard [--dir DIR] --partitions N [--partitioner NAME [--option k=v …]] [--keyspace K]",
		Short: "Move the cluster running from DIR to another partition count, starting or stopping nodes",
		Long: "Move a keyspace of the cluster that `plugdb cluster up --dir DIR` runs to N partitions\n" +
			"(or another partitioner) while it serves (docs/resharding.md): the cluster's supervisor\n" +
			"starts nodes.replicas nodes of each new partition as children of its own (their data in\n" +
			"DIR/data, their logs in DIR/logs, on free loopback ports after the cluster's highest\n" +
			"node port, recorded in DIR/cluster.json: `plugdb cluster down` and Ctrl-C of `cluster up`\n" +
			"stop them with the others); once each new partition has a leader, the move runs as\n" +
			"`plugdb reshard` runs it, with the cluster's config file. A move to fewer partitions (down\n" +
			"to the config's count) then stops the retired partitions' nodes, moves their data to\n" +
			"DIR/retired and removes them from ZooKeeper. Progress goes to stderr. Run again after an\n" +
			"interruption, it resumes the recorded move; a move to another layout already recorded is\n" +
			"refused (`plugdb reshard --config FILE` resumes it, `--abort` rolls it back).",
		Example: "  plugdb cluster reshard --partitions 3\n" +
			"  plugdb cluster reshard --dir /tmp/c --partitions 4 --partitioner ring --option vnodes=128\n" +
			"  plugdb cluster reshard --keyspace events --partitions 3",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runClusterReshard(cmd.Context(), dir, f, ready, cmd.ErrOrStderr(), cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", defaultClusterDir, "cluster folder given to `plugdb cluster up`")
	fl.StringVar(&f.keyspace, "keyspace", "", "the keyspace to move (default: the default keyspace)")
	fl.IntVar(&f.partitions, "partitions", 0, "the new partition count (at least the config's; fewer than now retires partitions: their nodes stop)")
	fl.StringVar(&f.partitioner, "partitioner", "", "the new partitioner (bundled: hash, ring, range; default: the current one)")
	fl.StringArrayVar(&f.options, "option", nil, "an option of the new partitioner, k=v (repeat); with no --partitioner, replaces the current options")
	fl.DurationVar(&ready, "ready-timeout", 2*time.Minute, "how long the new partitions get to elect their leaders")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up the move after this long (it stays recorded: `plugdb reshard --config FILE` resumes it)")
	return cmd
}

// runClusterReshard checks the cluster and the move asked for, has the
// supervisor start the new partitions' nodes, waits for their leaders and
// runs the move (runReshard).
func runClusterReshard(ctx context.Context, dir string, f reshardFlags, ready time.Duration, progress, out io.Writer) error {
	if f.partitions <= 0 {
		return errors.New("--partitions: give the new partition count (at least the config's)")
	}
	rec, err := cluster.ReadRunning(dir)
	if err != nil {
		return err
	}
	// The cluster's processes find ZooKeeper where the supervisor started it
	// (PLUGDB_ZOOKEEPER_SERVERS, the first occurrence counts), with its
	// credentials (PLUGDB_ZOOKEEPER_AUTH_FILE).
	zkEnv := clusterZKEnv(rec)
	env := append(slices.Clone(zkEnv), os.Environ()...)
	if rec.TLS != nil { // `cluster up --tls`: the move reaches the nodes with the clients' certificate
		env = append([]string{config.EnvName("tls.ca") + "=" + rec.TLS.CA, config.EnvName("tls.cert") + "=" + rec.TLS.Cert,
			config.EnvName("tls.key") + "=" + rec.TLS.Key}, env...)
	}
	cfg, err := config.Load(config.Source{File: rec.Config, Env: env})
	if err != nil {
		return fmt.Errorf("the cluster's config: %w", err)
	}
	kcfg, err := cfg.ForKeyspace(f.keyspace)
	if err != nil {
		return fmt.Errorf("--keyspace: %w", err)
	}
	resume := "plugdb reshard --config " + rec.Config
	switch {
	case rec.Config == "":
		resume = strings.Join(zkEnv, " ") + " plugdb reshard"
	case rec.ZooKeeperAuth != "":
		resume = config.EnvName("zookeeper.auth_file") + "=" + rec.ZooKeeperAuth + " " + resume
	}
	if f.keyspace != "" {
		resume += " --keyspace " + f.keyspace
	}

	log := newLogger("warn")
	l, err := newLoader(log)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	zcfg, err := coordConfig(kcfg, log)
	if err != nil {
		return err
	}
	client, err := coord.Connect(cctx, zcfg)
	if err != nil {
		return fmt.Errorf("the cluster's ZooKeeper: %w", err)
	}
	defer client.Close()
	cur, err := coord.ReadMeta(cctx, client)
	if err != nil {
		return err
	}
	r, running, err := coord.ReadReshard(cctx, client)
	if err != nil {
		return err
	}
	cancel()
	if f.partitions < kcfg.Partitions {
		return fmt.Errorf("--partitions %d: allowed values are %d..%d: keyspace %s's config has %d partitions, the fewest a local cluster runs (`plugdb reshard --config FILE` moves other clusters to fewer)",
			f.partitions, kcfg.Partitions, config.MaxPartitions, keyspaceName(f.keyspace), kcfg.Partitions)
	}
	to, err := f.layout(cur, false, l.PartitionerNames())
	if err != nil {
		return err
	}
	switch {
	case running && !coord.SameLayout(r.To, to):
		return fmt.Errorf("a move of keyspace %s is already recorded (%s): resume it with `%s` (or this command with its layout), or roll it back (before its flip) with `%s --abort`",
			keyspaceName(f.keyspace), r, resume, resume)
	case running:
		// The same command again, after it was interrupted: it resumes.
		cur = r.From
	case coord.SameLayout(cur, to):
		return fmt.Errorf("keyspace %s already has %d partitions placed by %s: nothing to move", keyspaceName(f.keyspace), cur.Partitions, cur.Partitioner.Plugin)
	}

	if to.Partitions > max(kcfg.Partitions, cur.Partitions) {
		// The partitions from the config's count on are the supervisor's to
		// start (those an earlier move added run already).
		fmt.Fprintf(progress, "starting the nodes of keyspace %s's partitions %d..%d (%d replicas each) in %s\n",
			keyspaceName(f.keyspace), max(kcfg.Partitions, cur.Partitions), to.Partitions-1, kcfg.Nodes.Replicas, rec.Dir)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		nodes, err := cluster.RequestNodes(rctx, dir, cluster.AddNodesRequest{Keyspace: f.keyspace, Partitions: to.Partitions})
		cancel()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			fmt.Fprintf(progress, "  %s %s (pid %d, log %s)\n", n.Name, n.Addr, n.PID, n.Log)
		}
		if err := waitLeaders(ctx, client, kcfg.Partitions, to.Partitions, nodes, ready, progress); err != nil {
			return err
		}
	}
	if err := runReshard(ctx, cfg, f, progress, out); err != nil {
		return fmt.Errorf("%w\n(resume: `%s`)", err, resume)
	}
	if to.Partitions < cur.Partitions {
		return retireNodes(ctx, client, dir, f.keyspace, to.Partitions, out)
	}
	fmt.Fprintf(out, "  `plugdb status --addr %s` shows the partitions; `plugdb cluster down --dir %s` stops the new nodes with the others\n", rec.GRPC, dir)
	return nil
}

// retireNodes has the supervisor of the cluster in dir stop the nodes of the
// partitions a move to fewer retired (from partitions on), then removes
// those partitions from ZooKeeper (coord.ForgetPartitions), so that a later
// move can add them again.
func retireNodes(ctx context.Context, client *coord.Client, dir, keyspace string, partitions int, out io.Writer) error {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stopped, err := cluster.RequestNodes(rctx, dir, cluster.AddNodesRequest{Keyspace: keyspace, Partitions: partitions, Retire: true})
	for _, n := range stopped {
		fmt.Fprintf(out, "  stopped %s %s (pid %d), a node of a retired partition\n", n.Name, n.Addr, n.PID)
	}
	if err != nil {
		return err
	}
	// A node killed after its grace period leaves its registration until
	// its ZooKeeper session expires.
	var gone []int
	for {
		if gone, err = coord.ForgetPartitions(rctx, client, partitions); !errors.Is(err, coord.ErrPartitionInUse) {
			break
		}
		select {
		case <-rctx.Done():
			return fmt.Errorf("forget the retired partitions: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("forget the retired partitions: %w", err)
	}
	fmt.Fprintf(out, "  retired partitions' nodes stopped, their data moved to %s; partitions removed from ZooKeeper: %v\n", filepath.Join(dir, cluster.RetiredDir), gone)
	return nil
}

// waitLeaders waits, for at most d, until each partition from..to-1 has a
// leader in ZooKeeper; it fails early when one of nodes ends.
func waitLeaders(ctx context.Context, client *coord.Client, from, to int, nodes []cluster.Process, d time.Duration, progress io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	top := coord.WatchTopology(ctx, client, to)
	defer top.Close()
	began := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var waiting []string
		for p := from; p < to; p++ {
			if top.Partition(p).Leader.Addr == "" {
				waiting = append(waiting, fmt.Sprint(p))
			}
		}
		if len(waiting) == 0 {
			fmt.Fprintf(progress, "every new partition has a leader after %v\n", time.Since(began).Round(100*time.Millisecond))
			return nil
		}
		for _, n := range nodes {
			if !n.Alive() {
				return fmt.Errorf("%s exited before its partition had a leader: see its log %s", n, n.Log)
			}
		}
		select {
		case <-ctx.Done():
			var logs []string
			for _, n := range nodes {
				logs = append(logs, n.Log)
			}
			return fmt.Errorf("partition(s) %s have no leader after %v: see the new nodes' logs (%s)", strings.Join(waiting, ", "), d, strings.Join(logs, ", "))
		case <-top.Changed():
		case <-tick.C:
		}
	}
}

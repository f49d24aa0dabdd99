package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/reshard"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/tlsconfig"
)

// reshardFlags are `plugdb reshard`'s settings.
type reshardFlags struct {
	file, keyspace string
	partitions     int
	partitioner    string
	options        []string
	abort          bool
	forget         bool
	timeout        time.Duration
}

// reshardCommand is `plugdb reshard`: move a keyspace of a running cluster
// to another partition count or partitioner.
func reshardCommand() *cobra.Command {
	var f reshardFlags
	cmd := &cobra.Command{
		Use:   "reshard --config FILE --partitions N [--partitioner NAME [--option k=v …]]",
		Short: "Move a running cluster's keyspace to another partition count or partitioner",
		Long: "Move a keyspace of a running cluster to a new layout while it serves (docs/resharding.md):\n" +
			"start the new partitions' nodes first (`plugdb node --partition P --new-partition`, they join empty), then\n" +
			"run this. It records the move in ZooKeeper, copies the rows whose owner changes from each\n" +
			"partition's leader to their new partition, fences the moving keys for a moment while it\n" +
			"copies what changed meanwhile, flips the layout in one ZooKeeper write, and prunes the old\n" +
			"copies. Requests keep flowing through the router; a request for a fenced key waits and is\n" +
			"retried. Interrupted, it resumes where the record says when run again (without\n" +
			"--partitions), or --abort rolls it back until it has flipped. A move to fewer partitions retires\n" +
			"the highest ones: their keys move to the others, and their nodes, which then hold nothing, can be\n" +
			"stopped. Progress goes to stderr.",
		Example: "  plugdb reshard --config configs/cluster.yaml --partitions 3\n" +
			"  plugdb reshard --config configs/cluster.yaml --partitions 3 --partitioner ring --option vnodes=128\n" +
			"  plugdb reshard --config configs/cluster.yaml --abort",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(config.Source{File: f.file, Env: os.Environ()})
			if err != nil {
				return err
			}
			return runReshard(cmd.Context(), cfg, f, cmd.ErrOrStderr(), cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.file, "config", "", "the cluster's config file (YAML): where ZooKeeper is, the cluster's name")
	fl.StringVar(&f.keyspace, "keyspace", "", "the keyspace to move (default: the default keyspace)")
	fl.IntVar(&f.partitions, "partitions", 0, "the new partition count (1 or more; fewer retires the highest partitions); 0: resume the recorded move")
	fl.StringVar(&f.partitioner, "partitioner", "", "the new partitioner (bundled: hash, ring, range; default: the current one)")
	fl.StringArrayVar(&f.options, "option", nil, "an option of the new partitioner, k=v (repeat); with no --partitioner, replaces the current options")
	fl.BoolVar(&f.abort, "abort", false, "roll back the recorded move (before its flip) instead")
	fl.BoolVar(&f.forget, "forget-retired", false, "instead, remove from ZooKeeper the partitions a move to fewer retired, once their nodes are stopped\n(needed before a later move adds them again)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up after this long (the move stays recorded: run again to resume)")
	return cmd
}

func runReshard(ctx context.Context, cfg config.Config, f reshardFlags, progress, out io.Writer) error {
	kcfg, err := cfg.ForKeyspace(f.keyspace)
	if err != nil {
		return fmt.Errorf("--keyspace: %w", err)
	}
	creds, err := kcfg.TLS.Creds()
	if err != nil {
		return err
	}
	log := newLogger("warn")
	l, err := newLoader(log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	zcfg, err := coordConfig(kcfg, log)
	if err != nil {
		return err
	}
	client, err := coord.Connect(ctx, zcfg)
	if err != nil {
		return connectError(err, "is the cluster's ZooKeeper running? zookeeper.servers says where")
	}
	defer client.Close()
	if f.abort {
		if err := reshard.Abort(ctx, client); err != nil {
			return err
		}
		fmt.Fprintln(out, "reshard aborted: the layout is unchanged")
		return nil
	}
	if f.forget {
		return forgetRetired(ctx, client, out)
	}
	cur, err := coord.ReadMeta(ctx, client)
	if err != nil {
		return fmt.Errorf("%w (was the cluster started? plugdb cluster up)", err)
	}
	rec, running, err := coord.ReadReshard(ctx, client)
	if err != nil {
		return err
	}
	to, err := f.layout(cur, running, l.PartitionerNames())
	if err != nil {
		return err
	}
	watch := max(cur.Partitions, to.Partitions)
	if running {
		watch = max(watch, rec.To.Partitions)
	}
	top := coord.WatchTopology(ctx, client, watch)
	defer top.Close()
	nodes := reshard.NewGRPCNodes(top)
	nodes.TLS = creds
	defer nodes.Close()
	bar := newReshardBar(progress)
	m := &reshard.Mover{Client: client, Nodes: nodes, Progress: bar.update,
		Open: func(ctx context.Context, meta coord.Meta) (reshard.Locator, func(), error) {
			p, err := openLayout(ctx, l, meta, kcfg.Partitioner, true)
			if err != nil {
				return nil, nil, err
			}
			return p, func() { p.Close() }, nil
		}}
	if running {
		fmt.Fprintf(progress, "resuming the recorded move: %s\n", rec)
	} else {
		fmt.Fprintf(progress, "moving keyspace %s from %d partitions (%s) to %d (%s)\n", keyspaceName(f.keyspace), cur.Partitions, cur.Partitioner.Plugin, to.Partitions, to.Partitioner.Plugin)
	}
	start := time.Now()
	rep, err := m.Run(ctx, to)
	bar.done()
	if err != nil {
		return fmt.Errorf("%w (the move stays recorded: run plugdb reshard again to resume it, or with --abort to roll it back before it flips)", err)
	}
	after, err := coord.ReadMeta(ctx, client)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "reshard done in %v: keyspace %s now has %d partitions placed by %s (layout v%d)\n",
		time.Since(start).Round(time.Millisecond), keyspaceName(f.keyspace), after.Partitions, after.Partitioner.Plugin, after.LayoutVersion())
	fmt.Fprintf(out, "  keys read %d (%d rows), moved %d (%.1f%%) in %v (%.0f keys/s)\n", rep.Read, rep.Rows, rep.Moved, pct(rep.Moved, rep.Read),
		rep.CopyTime.Round(time.Millisecond), float64(rep.Moved)/max(rep.CopyTime.Seconds(), 1e-9))
	fmt.Fprintf(out, "  under the fence: %d rows copied again, %d copies deleted; moving keys fenced for %v (the longest write pause)\n",
		rep.CaughtUp, rep.Deleted, rep.Fenced.Round(time.Millisecond))
	fmt.Fprintf(out, "  old copies pruned: %d\n", rep.Pruned)
	if rep.Retired > 0 {
		fmt.Fprintf(out, "  partitions %d..%d are retired: they hold no key now; stop their nodes, then run plugdb reshard --forget-retired\n"+
			"  (plugdb cluster reshard does both for a local cluster)\n", after.Partitions, after.Partitions+rep.Retired-1)
	}
	if counts, err := keysPerPartition(ctx, creds, top, after.Partitions, kcfg.Keyspace); err == nil {
		fmt.Fprintf(out, "  keys per partition: %s\n", spread(counts))
	} else {
		fmt.Fprintf(out, "  keys per partition: unknown (%v)\n", err)
	}
	return nil
}

// forgetRetired removes the znodes of the partitions beyond the layout's
// count (coord.ForgetPartitions).
func forgetRetired(ctx context.Context, client *coord.Client, out io.Writer) error {
	cur, err := coord.ReadMeta(ctx, client)
	if err != nil {
		return err
	}
	gone, err := coord.ForgetPartitions(ctx, client, cur.Partitions)
	if len(gone) > 0 {
		fmt.Fprintf(out, "forgot retired partitions %v (the layout has %d)\n", gone, cur.Partitions)
	}
	if err != nil {
		return fmt.Errorf("forget retired partitions: %w", err)
	}
	if len(gone) == 0 {
		fmt.Fprintf(out, "no retired partition to forget (the layout has %d)\n", cur.Partitions)
	}
	return nil
}

// keysPerPartition asks each partition's leader how many keys it holds.
func keysPerPartition(ctx context.Context, creds *tlsconfig.Creds, top *coord.Topology, partitions int, keyspace string) (map[int]int64, error) {
	counts := map[int]int64{}
	for p := range partitions {
		addr := top.Partition(p).Leader.Addr
		if addr == "" {
			return nil, fmt.Errorf("partition %d has no leader", p)
		}
		conn, err := grpc.NewClient(addr, creds.DialOption())
		if err != nil {
			return nil, err
		}
		st, err := plugdbv1.NewKVClient(conn).Status(ctx, &plugdbv1.StatusRequest{Keyspace: keyspaceName(keyspace)})
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		for _, ps := range st.GetPartitions() {
			for _, r := range ps.GetReplicas() {
				if r.GetAddr() == addr {
					counts[p] = r.GetKeys()
				}
			}
		}
	}
	return counts, nil
}

// layout returns the layout the flags ask for; with no --partitions, the
// recorded move's (a resume), which must then exist.
func (f reshardFlags) layout(cur coord.Meta, running bool, bundled []string) (coord.Meta, error) {
	if f.partitions == 0 {
		if f.partitioner != "" || len(f.options) > 0 {
			return coord.Meta{}, fmt.Errorf("--partitioner and --option need --partitions (the new count, 1..%d)", config.MaxPartitions)
		}
		if !running {
			return coord.Meta{}, fmt.Errorf("--partitions: give the new partition count (1..%d); no move is recorded to resume", config.MaxPartitions)
		}
		return coord.Meta{}, nil
	}
	to := coord.Meta{Partitions: f.partitions, Partitioner: coord.PluginMeta{Plugin: cur.Partitioner.Plugin, Options: maps.Clone(cur.Partitioner.Options)}}
	if f.partitioner != "" {
		if !slices.Contains(bundled, f.partitioner) && !strings.ContainsRune(f.partitioner, '/') {
			return to, fmt.Errorf("--partitioner %q: allowed values are %s, or a path to a partitioner plugin", f.partitioner, strings.Join(bundled, ", "))
		}
		to.Partitioner = coord.PluginMeta{Plugin: f.partitioner}
	}
	if len(f.options) > 0 {
		to.Partitioner.Options = map[string]string{}
		for _, o := range f.options {
			k, v, ok := strings.Cut(o, "=")
			if !ok || k == "" {
				return to, fmt.Errorf("--option %q: give k=v, e.g. --option vnodes=128", o)
			}
			to.Partitioner.Options[k] = v
		}
	}
	if f.partitions < 0 || f.partitions > config.MaxPartitions {
		return to, fmt.Errorf("--partitions %d: allowed values are 1..%d", f.partitions, config.MaxPartitions)
	}
	return to, nil
}

func keyspaceName(name string) string {
	if name == "" {
		return config.DefaultKeyspace
	}
	return name
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// reshardBar prints a move's progress on one line of w, at most every
// 200 ms, and each state change on a line of its own.
type reshardBar struct {
	w     io.Writer
	last  time.Time
	pass  string
	start time.Time
}

func newReshardBar(w io.Writer) *reshardBar { return &reshardBar{w: w, start: time.Now()} }

func (b *reshardBar) update(p reshard.Progress) {
	if p.Pass != b.pass {
		if b.pass != "" {
			fmt.Fprintln(b.w)
		}
		b.pass = p.Pass
	} else if time.Since(b.last) < 200*time.Millisecond {
		return
	}
	b.last = time.Now()
	lag := ""
	if p.Lag > 0 {
		lag = fmt.Sprintf("  lag %d statements", p.Lag)
	}
	fmt.Fprintf(b.w, "\r%-8s %-8s rows read %8d  copied %8d  %8.1f MiB%s  %v   ", p.Pass, p.State, p.Rows, p.Copied,
		float64(p.Bytes)/(1<<20), lag, time.Since(b.start).Round(100*time.Millisecond))
}

func (b *reshardBar) done() { fmt.Fprintln(b.w) }

// spread formats keys per partition, for the closing lines.
func spread(counts map[int]int64) string {
	parts := slices.Collect(maps.Keys(counts))
	sort.Ints(parts)
	var out []string
	for _, p := range parts {
		out = append(out, fmt.Sprintf("p%d %d", p, counts[p]))
	}
	return strings.Join(out, ", ")
}

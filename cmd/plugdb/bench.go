package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/bench"
	benchreport "github.com/plugdb/plugdb/core/bench/report"
	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/zkserver"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/keyrange"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/tlsconfig"
)

// The bounds of `plugdb bench`'s flags and its waits.
const (
	benchMaxClients   = 1024
	benchMaxValueSize = 1 << 20
	benchReadyTimeout = 90 * time.Second
	benchStopGrace    = 30 * time.Second
	benchSeed         = 1
	benchMaxLoadBatch = 10000
	benchMaxWarmup    = 10 * time.Minute
	// benchMaxRequestBytes keeps a load batch under gRPC's default 4 MiB
	// message limit, with room for framing.
	benchMaxRequestBytes = 4<<20 - 64<<10
)

// benchFlags are `plugdb bench`'s flags.
type benchFlags struct {
	configs      []string
	workload     string
	distribution string
	keys         int
	valueSize    int
	clients      int
	duration     time.Duration
	ops          int64
	json         string
	report       string
	loadBatch    int
	warmup       time.Duration
	// keyspaces are the keyspaces to measure, in order, on the one config's
	// system (--keyspace); none: the default keyspace of each config.
	keyspaces []string
}

func benchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench --config A.yaml [--config B.yaml …] [flags]",
		Short: "Run the same workload against several configs and compare them in a table",
		Long: "For each --config in turn: start a fresh system in a new temporary folder (`plugdb dev`,\n" +
			"or `plugdb cluster up` with ZooKeeper when the config has a replicator other than none or\n" +
			"nodes.replicas > 1) on free loopback ports, load --keys keys, run the workload from\n" +
			"--clients concurrent gRPC clients for --duration (or --ops operations), sample the\n" +
			"replication lag while it runs, read the status, stop the system and remove the folder.\n" +
			"Then print one table, a row per config (--json FILE writes the same figures as JSON,\n" +
			"--report FILE an HTML page with the table and charts that opens offline).\n\n" +
			"Workloads (YCSB core; names case-insensitive): A 50% read / 50% update, B 95/5, C read\n" +
			"only, E 95% scans of 1..100 keys / 5% inserts, F 50% read / 50% read-modify-write, and\n" +
			"load: inserts of new keys only. Keys are \"user\" + 16 hex digits of a hash of the key's\n" +
			"index, chosen uniformly or by YCSB's scrambled zipfian (0.99). Latencies are HdrHistogram\n" +
			"percentiles (3 significant digits). Bytes on disk and keys per partition are each\n" +
			"partition's leader's (one copy); MOVED is the share of the loaded keys the config's\n" +
			"partitioner places elsewhere with one partition more. Progress goes to stderr, the table\n" +
			"to stdout. A config that fails to start gets a row with its error and the run goes on\n" +
			"(the exit code is then 2, after the table, the JSON and the report are written).\n\n" +
			"--keyspace a,b (or repeated) measures keyspaces of one config: its system is started once\n" +
			"and the workload runs against each keyspace in turn, each with its own load, a row per\n" +
			"keyspace named CONFIG/KEYSPACE. It takes a single --config.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.configs, "config", nil, "a config file (YAML) to measure; repeat for each config (at least one)")
	fl.StringVar(&f.workload, "workload", "A", "workload: "+strings.Join(bench.WorkloadNames(), ", "))
	fl.StringVar(&f.distribution, "distribution", "uniform", "key choice: "+strings.Join(bench.Distributions, ", "))
	fl.IntVar(&f.keys, "keys", 10000, "keys loaded before the workload")
	fl.IntVar(&f.valueSize, "value-size", 100, "bytes per value")
	fl.IntVar(&f.clients, "clients", 16, "concurrent gRPC clients")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long the workload runs (or give --ops)")
	fl.Int64Var(&f.ops, "ops", 0, "run the workload for this many operations instead of --duration")
	fl.StringVar(&f.json, "json", "", "also write the figures as JSON to this file")
	fl.DurationVar(&f.warmup, "warmup", 0, "read loaded keys for this long, unmeasured, before the workload (e.g. 3s)")
	fl.IntVar(&f.loadBatch, "load-batch", 1, "keys per request of the load phase: 1 is a Put per key, more is a Batch")
	fl.StringVar(&f.report, "report", "", "also write an HTML report (table and charts, self-contained) to this file")
	fl.StringSliceVar(&f.keyspaces, "keyspace", nil, "measure these keyspaces (`NAMES`, comma-separated or repeated) of the one --config in turn, a row each; default: the default keyspace")
	return cmd
}

// benchConfig is one --config: its file, name and loaded config.
type benchConfig struct {
	file string // as given on the command line
	abs  string // absolute, for the child process, which runs in its own folder
	name string
	cfg  config.Config
}

// cluster reports whether the config needs a cluster rather than plugdb dev:
// one of its keyspaces has a replicator, or it has several replicas.
func (c benchConfig) cluster() bool {
	if c.cfg.Nodes.Replicas > 1 {
		return true
	}
	for _, name := range c.cfg.KeyspaceNames() {
		if ks, err := c.cfg.ForKeyspace(name); err == nil && ks.Replicator.Plugin != "none" {
			return true
		}
	}
	return false
}

// nodes is how many nodes a cluster of the config runs, every keyspace's.
func (c benchConfig) nodes() int {
	n := 0
	for _, name := range c.cfg.KeyspaceNames() {
		if ks, err := c.cfg.ForKeyspace(name); err == nil {
			n += ks.Partitions * c.cfg.Nodes.Replicas
		}
	}
	return n
}

// checkKeyspaces checks --keyspace against the number of --config files: the
// names must be non-empty and distinct, and they apply to one config.
func (f benchFlags) checkKeyspaces() error {
	if len(f.keyspaces) == 0 {
		return nil
	}
	if len(f.configs) > 1 {
		return fmt.Errorf("--keyspace with %d --config files: --keyspace measures keyspaces of a single config; "+
			"give one --config with --keyspace, or several --config without it (each measured in its default keyspace)", len(f.configs))
	}
	seen := map[string]bool{}
	for _, name := range f.keyspaces {
		switch {
		case strings.TrimSpace(name) == "":
			return fmt.Errorf("--keyspace %q: a keyspace name is empty", strings.Join(f.keyspaces, ","))
		case seen[name]:
			return fmt.Errorf("--keyspace %q: keyspace %q given twice", strings.Join(f.keyspaces, ","), name)
		}
		seen[name] = true
	}
	return nil
}

// benchTarget is one row of a config's measurement: the config as one of its
// keyspaces sees it.
type benchTarget struct {
	keyspace string // "" when --keyspace is not given: the default keyspace
	cfg      config.Config
}

// targets returns what to measure on c's system: each of keyspaces (checked
// against the config), or the default keyspace when none is given.
func (c benchConfig) targets(keyspaces []string) ([]benchTarget, error) {
	if len(keyspaces) == 0 {
		return []benchTarget{{cfg: c.cfg}}, nil
	}
	var out []benchTarget
	for _, name := range keyspaces {
		ks, err := c.cfg.ForKeyspace(name)
		if err != nil {
			return nil, fmt.Errorf("--keyspace: config %s: %w", c.file, err)
		}
		out = append(out, benchTarget{keyspace: name, cfg: ks})
	}
	return out, nil
}

// options checks the flags and returns the runner's options.
func (f benchFlags) options(cmd *cobra.Command) (bench.Options, error) {
	w, err := bench.ParseWorkload(f.workload)
	if err != nil {
		return bench.Options{}, err
	}
	dist, err := bench.ParseDistribution(f.distribution)
	if err != nil {
		return bench.Options{}, err
	}
	o := bench.Options{Workload: w, Distribution: dist, Keys: f.keys, ValueSize: f.valueSize, Clients: f.clients, LoadBatch: f.loadBatch, Warmup: f.warmup, Seed: benchSeed}
	switch {
	case f.warmup < 0 || f.warmup > benchMaxWarmup:
		return o, fmt.Errorf("--warmup %s: allowed values are 0s..%s", f.warmup, benchMaxWarmup)
	case f.loadBatch < 1 || f.loadBatch > benchMaxLoadBatch:
		return o, fmt.Errorf("--load-batch %d: allowed values are 1..%d keys per request", f.loadBatch, benchMaxLoadBatch)
	case f.loadBatch*(bench.KeyLen+f.valueSize+16) > benchMaxRequestBytes:
		return o, fmt.Errorf("--load-batch %d of --value-size %d: a request of about %d bytes exceeds gRPC's %d: use a smaller batch",
			f.loadBatch, f.valueSize, f.loadBatch*(bench.KeyLen+f.valueSize+16), benchMaxRequestBytes)
	case f.keys < 1:
		return o, fmt.Errorf("--keys %d: must be at least 1", f.keys)
	case f.valueSize < 0 || f.valueSize > benchMaxValueSize:
		return o, fmt.Errorf("--value-size %d: allowed values are 0..%d bytes", f.valueSize, benchMaxValueSize)
	case f.clients < 1 || f.clients > benchMaxClients:
		return o, fmt.Errorf("--clients %d: allowed values are 1..%d", f.clients, benchMaxClients)
	case cmd.Flags().Changed("ops") && cmd.Flags().Changed("duration"):
		return o, errors.New("--ops and --duration: give one of them (the workload runs for --duration, default 10s, or for --ops operations)")
	case cmd.Flags().Changed("ops"):
		if f.ops < 1 {
			return o, fmt.Errorf("--ops %d: must be at least 1", f.ops)
		}
		o.Ops = f.ops
	default:
		if f.duration <= 0 {
			return o, fmt.Errorf("--duration %s: must be positive, e.g. 10s", f.duration)
		}
		o.Duration = f.duration
	}
	return o, nil
}

// loadConfigs loads and validates every --config.
func loadConfigs(files []string) ([]benchConfig, error) {
	if len(files) == 0 {
		return nil, errors.New("--config: give at least one config file to measure, e.g. --config configs/compare/engine-memory.yaml")
	}
	l, err := newLoader(newLogger("error"))
	if err != nil {
		return nil, err
	}
	var out []benchConfig
	for _, file := range files {
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("--config %s: %w", file, err)
		}
		cfg, err := config.Load(config.Source{File: file, Env: os.Environ()})
		if err != nil {
			return nil, fmt.Errorf("--config %s: %w", file, err)
		}
		if err := cfg.Validate(clusterKnown(l)); err != nil {
			return nil, fmt.Errorf("--config %s: %w", file, err)
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, fmt.Errorf("--config %s: %w", file, err)
		}
		out = append(out, benchConfig{file: file, abs: abs, name: strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)), cfg: cfg})
	}
	return out, nil
}

func runBench(cmd *cobra.Command, f benchFlags) error {
	opts, err := f.options(cmd)
	if err != nil {
		return err
	}
	if err := f.checkKeyspaces(); err != nil {
		return err
	}
	configs, err := loadConfigs(f.configs)
	if err != nil {
		return err
	}
	targets := make([][]benchTarget, len(configs))
	for i, c := range configs {
		if targets[i], err = c.targets(f.keyspaces); err != nil {
			return err
		}
	}
	// Both files are created before the run, so a bad path fails at once.
	jsonOut, err := createOutput("--json", f.json)
	if err != nil {
		return err
	}
	defer jsonOut.Close()
	reportOut, err := createOutput("--report", f.report)
	if err != nil {
		return err
	}
	defer reportOut.Close()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	stderr := cmd.ErrOrStderr()
	progress := bench.NewProgressPrinter(stderr, isTerminal(stderr), opts.Workload.Name)
	opts.Progress = progress.Show

	host, _ := os.Hostname()
	report := bench.Report{Settings: bench.Settings{
		Workload: opts.Workload.Name, Distribution: opts.Distribution, Keys: opts.Keys, ValueSize: opts.ValueSize,
		Clients: opts.Clients, DurationS: opts.Duration.Seconds(), Ops: opts.Ops, LoadBatch: opts.LoadBatch, WarmupS: opts.Warmup.Seconds(),
		Started: time.Now().UTC().Format(time.RFC3339), Host: host, CPUs: runtime.NumCPU(),
	}}
	ctx := cmd.Context()
	for i, c := range configs {
		report.Rows = append(report.Rows, benchOne(ctx, self, c, targets[i], opts, progress)...)
		if ctx.Err() != nil {
			break
		}
	}
	if err := bench.WriteTable(cmd.OutOrStdout(), report); err != nil {
		return err
	}
	if err := jsonOut.write(func(w io.Writer) error {
		b, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}); err != nil {
		return err
	}
	if err := reportOut.write(func(w io.Writer) error { return benchreport.WriteHTML(w, report) }); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	failed := 0
	for _, row := range report.Rows {
		if row.Error != "" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d configs could not be measured: see the errors under the table", failed, len(report.Rows))
	}
	return nil
}

// output is a file a flag names, or nothing when the flag is not given.
type output struct {
	flag, path string
	f          *os.File
}

func createOutput(flag, path string) (*output, error) {
	o := &output{flag: flag, path: path}
	if path == "" {
		return o, nil
	}
	var err error
	if o.f, err = os.Create(path); err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return o, nil
}

// write writes the file with fn and closes it; nothing when no file was asked for.
func (o *output) write(fn func(io.Writer) error) error {
	if o.f == nil {
		return nil
	}
	if err := fn(o.f); err != nil {
		return fmt.Errorf("%s %s: %w", o.flag, o.path, err)
	}
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("%s %s: %w", o.flag, o.path, err)
	}
	o.f = nil
	return nil
}

// Close closes the file if write did not.
func (o *output) Close() error {
	if o.f == nil {
		return nil
	}
	return o.f.Close()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// benchOne measures one config: a fresh system in a temporary folder, the
// runner against each target (keyspace) in turn, a row each, then the keys
// moved through each target's partitioner.
func benchOne(ctx context.Context, self string, c benchConfig, targets []benchTarget, opts bench.Options, progress *bench.ProgressPrinter) []bench.Row {
	rows := make([]bench.Row, len(targets))
	for i, t := range targets {
		rows[i] = describeRow(c, t)
	}
	fail := func(err error) []bench.Row {
		for i := range rows {
			rows[i].Error = joinErr(rows[i].Error, err.Error())
		}
		return rows
	}
	progress.Config(c.name)
	dir, err := os.MkdirTemp("", "plugdb-bench-"+c.name+"-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)

	sys, err := startSystem(ctx, self, c, targets, dir, func(p bench.Progress) { progress.Show(p) })
	if err != nil {
		return fail(err)
	}
	var errs []error
	for i, t := range targets {
		if i > 0 && ctx.Err() != nil {
			rows = rows[:i]
			break
		}
		if t.keyspace != "" {
			progress.Config(rows[i].Config)
		}
		o := opts
		o.Keyspace = t.keyspace
		measured, err := measure(ctx, sys.addr, sys.creds, o)
		row := rows[i]
		measured.Config, measured.ConfigFile, measured.Engine, measured.Partitioner = row.Config, row.ConfigFile, row.Engine, row.Partitioner
		measured.Replicator, measured.System, measured.Partitions, measured.Keyspace = row.Replicator, row.System, row.Partitions, row.Keyspace
		rows[i] = measured
		errs = append(errs, err)
	}
	stopErr := sys.stop()
	for i, t := range targets[:len(rows)] {
		row := &rows[i]
		if err := errs[i]; err != nil {
			row.Error = joinErr(row.Error, err.Error())
		}
		if stopErr != nil {
			row.Error = joinErr(row.Error, stopErr.Error())
		}
		if row.Error == "" {
			moved, err := keysMoved(ctx, t.cfg, opts.Keys)
			if err != nil {
				row.Error = joinErr(row.Error, "keys moved: "+err.Error())
			}
			row.KeysMoved = moved
		}
	}
	return rows
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// describeRow is a row naming what c is, as target t sees it: named
// CONFIG/KEYSPACE when t names a keyspace.
func describeRow(c benchConfig, t benchTarget) bench.Row {
	cfg := t.cfg
	name := c.name
	if t.keyspace != "" {
		name += "/" + t.keyspace
	}
	system := "dev"
	if c.cluster() {
		system = "cluster"
	}
	replicator := cfg.Replicator.Plugin
	if len(cfg.Replicator.Options) > 0 {
		replicator += " " + formatOptions(cfg.Replicator.Options)
	}
	return bench.Row{
		Config: name, Keyspace: t.keyspace, ConfigFile: c.file, System: system, Partitions: cfg.Partitions,
		Engine:      describePlugin(cfg.Engine),
		Partitioner: describePlugin(cfg.Partitioner),
		Replicator:  replicator,
	}
}

// describePlugin is "rowfile (process) {sync: batch}".
func describePlugin(p config.Plugin) string {
	mode := p.Mode
	if mode == "" {
		mode = "process"
	}
	s := fmt.Sprintf("%s (%s)", p.Plugin, mode)
	if len(p.Options) > 0 {
		s += " " + formatOptions(p.Options)
	}
	return s
}

// measure dials the system once per client (with creds: nil, plaintext)
// and runs the workload.
func measure(ctx context.Context, addr string, creds *tlsconfig.Creds, opts bench.Options) (bench.Row, error) {
	clients := make([]plugdbv1.KVClient, opts.Clients)
	for i := range clients {
		conn, err := grpc.NewClient(addr, creds.DialOption())
		if err != nil {
			return bench.Row{}, fmt.Errorf("dial %s: %w", addr, err)
		}
		defer conn.Close()
		clients[i] = plugdbv1.NewKVClient(conn)
	}
	return bench.Run(ctx, clients, opts), nil
}

// keysMoved returns the share of keys 0..n-1 that move when the config's
// partitioner, loaded as the router loads it, goes to one partition more. Hash
// and ring are configured with the same options and N+1 partitions. The range
// partitioner grows as range stores do: its fullest range is cut at the median
// of the keys in it (keyrange.SplitFullest), and the ranges above the cut are
// renumbered, not moved.
func keysMoved(ctx context.Context, cfg config.Config, n int) (float64, error) {
	if cfg.Partitions+1 > partitioners.MaxPartitions {
		return 0, nil
	}
	l, err := newLoader(newLogger("error"))
	if err != nil {
		return 0, err
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = bench.Key(uint64(i))
	}
	before, err := l.OpenPartitioner(ctx, cfg.Partitioner.Block(), cfg.Partitions)
	if err != nil {
		return 0, err
	}
	defer before.Close()
	grownBlock, renumber := cfg.Partitioner.Block(), func(p int) int { return p }
	if cfg.Partitioner.Plugin == "range" {
		points := keyrange.DefaultSplits(cfg.Partitions)
		if text, ok := cfg.Partitioner.Options[keyrange.OptionSplits]; ok {
			if points, err = keyrange.ParseSplits(text, cfg.Partitions); err != nil {
				return 0, fmt.Errorf("option %s: %w", keyrange.OptionSplits, err)
			}
		}
		grown, fullest := keyrange.SplitFullest(points, keys)
		if grown == nil {
			return 0, fmt.Errorf("range partitioner: the fullest range holds fewer than two distinct keys; nothing to split")
		}
		if grownBlock.Options == nil {
			grownBlock.Options = map[string]string{}
		}
		grownBlock.Options[keyrange.OptionSplits] = keyrange.FormatSplits(grown)
		renumber = keyrange.Renumber(fullest)
	}
	after, err := l.OpenPartitioner(ctx, grownBlock, cfg.Partitions+1)
	if err != nil {
		return 0, err
	}
	defer after.Close()
	moved, err := partitioners.MovedRenumbered(ctx, before, after, keys, renumber)
	if err != nil {
		return 0, err
	}
	return float64(moved) / float64(n), nil
}

// benchSystem is a system `plugdb bench` started: a `plugdb dev` or a
// `plugdb cluster up` child process.
type benchSystem struct {
	cmd     *exec.Cmd
	addr    string           // the router's gRPC address
	creds   *tlsconfig.Creds // the config's TLS, which the system serves: nil, plaintext
	log     *os.File
	dir     string // the cluster folder, for a cluster
	done    chan struct{}
	waitErr error
}

// startSystem starts c's system in dir on free loopback ports and waits until
// every partition of each target's keyspace has a leader (and, in a cluster,
// its in-sync followers).
func startSystem(ctx context.Context, self string, c benchConfig, targets []benchTarget, dir string, progress func(bench.Progress)) (*benchSystem, error) {
	grpcAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	creds, err := c.cfg.TLS.Creds()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "system.log"))
	if err != nil {
		return nil, err
	}
	s := &benchSystem{addr: grpcAddr, creds: creds, log: log, done: make(chan struct{})}
	followers := 0
	if c.cluster() {
		if _, err := zkserver.Find(); err != nil {
			log.Close()
			return nil, fmt.Errorf("the config needs a cluster (replicator %s, %d replicas), and `plugdb cluster up` runs ZooKeeper from the system's install: %w",
				c.cfg.Replicator.Plugin, c.cfg.Nodes.Replicas, err)
		}
		zkAddr, err := freeLoopbackAddr()
		if err != nil {
			log.Close()
			return nil, err
		}
		base, err := freePortRange(c.nodes())
		if err != nil {
			log.Close()
			return nil, err
		}
		s.dir = filepath.Join(dir, "cluster")
		s.cmd = exec.Command(self, "cluster", "up", "--dir", s.dir, "--config", c.abs)
		s.cmd.Env = withEnv(os.Environ(), map[string]string{
			"router.grpc": grpcAddr, "router.http": httpAddr,
			"zookeeper.servers": zkAddr, "nodes.base_port": strconv.Itoa(base),
		})
		followers = c.cfg.Nodes.Replicas - 1
	} else {
		s.cmd = exec.Command(self, "dev", "--config", c.abs, "--data", filepath.Join(dir, "data"),
			"--grpc", grpcAddr, "--http", httpAddr)
		s.cmd.Env = os.Environ()
	}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = log, log
	// Its own process group: a Ctrl-C on the terminal reaches plugdb bench,
	// which stops the system itself.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", s.cmd.Args[1], err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx, targets, followers, progress); err != nil {
		if stopErr := s.stop(); stopErr != nil {
			err = fmt.Errorf("%w; %v", err, stopErr)
		}
		return nil, err
	}
	return s, nil
}

// waitReady polls the router's status of each target's keyspace until Ready.
func (s *benchSystem) waitReady(ctx context.Context, targets []benchTarget, followers int, progress func(bench.Progress)) error {
	conn, err := grpc.NewClient(s.addr, s.creds.DialOption())
	if err != nil {
		return fmt.Errorf("dial %s: %w", s.addr, err)
	}
	defer conn.Close()
	kv := plugdbv1.NewKVClient(conn)
	began := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// ready reports whether every target is; an error when the system refuses
	// a target's keyspace (it does not serve it).
	ready := func() (bool, error) {
		for _, t := range targets {
			callCtx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := kv.Status(callCtx, &plugdbv1.StatusRequest{Keyspace: t.keyspace})
			cancel()
			if status.Code(err) == codes.InvalidArgument {
				return false, fmt.Errorf("%s refuses keyspace %q: %s", s.cmd.Args[1], t.keyspace, status.Convert(err).Message())
			}
			if err != nil || !bench.Ready(st, t.cfg.Partitions, followers) {
				return false, nil
			}
		}
		return true, nil
	}
	for {
		ok, err := ready()
		if err != nil {
			return err
		}
		if ok {
			progress(bench.Progress{Phase: bench.PhaseStart, Elapsed: time.Since(began), Limit: benchReadyTimeout, Final: true})
			return nil
		}
		progress(bench.Progress{Phase: bench.PhaseStart, Elapsed: time.Since(began), Limit: benchReadyTimeout})
		what := fmt.Sprintf("every partition with a leader and %d in-sync followers", followers)
		if followers == 0 {
			what = "every partition with a leader"
		}
		select {
		case <-s.done:
			return fmt.Errorf("%s exited before it was ready (%v); its output ends with:\n%s", s.cmd.Args[1], s.waitErr, s.tail(15))
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s", what)
		case <-tick.C:
		}
		if time.Since(began) > benchReadyTimeout {
			return fmt.Errorf("not ready after %v (waiting for %s); its output ends with:\n%s", benchReadyTimeout, what, s.tail(15))
		}
	}
}

// stop signals the system's process to stop (SIGTERM), waits for it, and
// after benchStopGrace kills its process group (SIGKILL); a cluster's
// leftover children are then stopped from its record (cluster down).
func (s *benchSystem) stop() error {
	defer s.log.Close()
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(benchStopGrace):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // the group is the one this process started
	<-s.done
	if s.dir != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = cluster.Down(ctx, s.dir, io.Discard, 5*time.Second)
	}
	return fmt.Errorf("%s did not stop within %v of SIGTERM: killed", s.cmd.Args[1], benchStopGrace)
}

// tail is the last n lines of the system's output.
func (s *benchSystem) tail(n int) string {
	b, err := os.ReadFile(s.log.Name())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// withEnv is env with the variables of the config keys set (replacing any
// given), since the first of repeated variables counts.
func withEnv(env []string, keys map[string]string) []string {
	set := map[string]string{}
	for k, v := range keys {
		set[config.EnvName(k)] = v
	}
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := set[name]; !ok {
			out = append(out, kv)
		}
	}
	for name, v := range set {
		out = append(out, name+"="+v)
	}
	return out
}

// freeLoopbackAddr is a 127.0.0.1 address whose port was free a moment ago.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// freePortRange returns the first of n consecutive loopback ports that were
// all free a moment ago.
func freePortRange(n int) (int, error) {
	for range 100 {
		base := 20000 + rand.IntN(40000-n)
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free loopback ports found", n)
}

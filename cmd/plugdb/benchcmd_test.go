package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/color"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/core/bench"
	benchreport "github.com/plugdb/plugdb/core/bench/report"
	"github.com/plugdb/plugdb/core/bench/report/headless"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/plugins"
)

// benchRun is one run of `plugdb bench` with its own TMPDIR, so the test can
// check that every system's folder is gone afterwards.
type benchRun struct {
	runResult
	tmp string
}

func runBenchCmd(t *testing.T, timeout time.Duration, args ...string) benchRun {
	t.Helper()
	return runBenchCmdIn(t, t.TempDir(), timeout, args...)
}

// runBenchCmdIn is runBenchCmd with the working folder wd, for relative paths.
func runBenchCmdIn(t *testing.T, wd string, timeout time.Duration, args ...string) benchRun {
	t.Helper()
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, plugdbBin, append([]string{"bench"}, args...)...)
	cmd.Env = append(devEnv(), "TMPDIR="+tmp)
	for _, kv := range cmd.Env {
		if strings.HasPrefix(kv, plugins.Handshake.MagicCookieKey+"=") {
			t.Fatal("magic cookie in the environment")
		}
	}
	cmd.Dir = wd
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	_ = cmd.Run()
	res := runResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("plugdb bench: still running after %v\n%s", timeout, res)
	}
	t.Logf("plugdb bench %s: exit %d in %v", strings.Join(args, " "), res.code, time.Since(start).Round(time.Millisecond))
	return benchRun{runResult: res, tmp: tmp}
}

// wantCleanedUp checks that the run removed its systems' folders and left no
// process running from them.
func (r benchRun) wantCleanedUp(t *testing.T) {
	t.Helper()
	if left, _ := os.ReadDir(r.tmp); len(left) > 0 {
		t.Errorf("plugdb bench left %v in its TMPDIR", left)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(r.tmp)) {
			t.Errorf("a process of the run still runs: %s: %s", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

func writeConfig(t *testing.T, dir, name, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readReport(t *testing.T, path string) bench.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r bench.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, b)
	}
	return r
}

// wantMeasured checks a row's figures for workload w over keys keys and ops
// operations.
func wantMeasured(t *testing.T, row bench.Row, w string, keys int, ops int64, valueSize int) {
	t.Helper()
	if row.Error != "" {
		t.Fatalf("%s: error %s", row.Config, row.Error)
	}
	workload, _ := bench.ParseWorkload(w)
	if row.Workload != workload.Name || row.ThroughputOps <= 0 || row.LoadThroughputOps <= 0 || row.LoadOps != int64(keys) ||
		row.Operations != ops || row.Errors != 0 || row.P50US <= 0 || row.P999US < row.P50US {
		t.Errorf("%s: workload %s, throughput %v, load %v (%d ops), operations %d (want %d), errors %d, p50 %v p999 %v",
			row.Config, row.Workload, row.ThroughputOps, row.LoadThroughputOps, row.LoadOps, row.Operations, ops, row.Errors, row.P50US, row.P999US)
	}
	var types []string
	var sum int64
	for op, s := range row.Ops {
		types = append(types, op)
		sum += s.Count
		if s.Errors != 0 || s.P50US <= 0 {
			t.Errorf("%s: %s: %+v", row.Config, op, s)
		}
	}
	slices.Sort(types)
	want := workload.Ops()
	slices.Sort(want)
	if !slices.Equal(types, want) || sum != ops {
		t.Errorf("%s: op types %v summing to %d, want %v summing to %d", row.Config, types, sum, want, ops)
	}
	for _, s := range workload.Mix {
		if share := float64(row.Ops[s.Op].Count) / float64(ops); math.Abs(share-s.Share) > 0.05 {
			t.Errorf("%s: %s share %.3f, want %.2f", row.Config, s.Op, share, s.Share)
		}
	}
	var keysSum int64
	for _, k := range row.PartitionKeys {
		keysSum += k
	}
	if len(row.PartitionKeys) != row.Partitions || keysSum != int64(keys) {
		t.Errorf("%s: partition keys %v, want %d partitions summing to %d", row.Config, row.PartitionKeys, row.Partitions, keys)
	}
	if row.PartitionSkew < 1 || row.PartitionSkew > 1.15 {
		t.Errorf("%s: partition skew %v, want about 1 for hashed keys", row.Config, row.PartitionSkew)
	}
	if row.LogicalBytes != int64(keys*(bench.KeyLen+valueSize)) {
		t.Errorf("%s: logical bytes %d, want %d", row.Config, row.LogicalBytes, keys*(bench.KeyLen+valueSize))
	}
	// hash over 2 → 3 partitions moves about 2/3 of the keys.
	if row.KeysMoved < 0.6 || row.KeysMoved > 0.72 {
		t.Errorf("%s: keys moved %v, want about 2/3 for hash 2→3", row.Config, row.KeysMoved)
	}
}

func TestBenchTwoConfigs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	memory := writeConfig(t, dir, "memory.yaml", "engine: {plugin: memory}\n")
	rowfile := writeConfig(t, dir, "rowfile.yaml", "engine: {plugin: rowfile, options: {sync: batch, index: btree}}\n")
	out, page := filepath.Join(dir, "out.json"), filepath.Join(dir, "report.html")
	res := runBenchCmd(t, 3*time.Minute, "--config", memory, "--config", rowfile,
		"--keys", "2000", "--ops", "4000", "--clients", "4", "--json", out, "--report", page)
	if res.code != 0 {
		t.Fatalf("plugdb bench failed\n%s", res)
	}
	res.wantCleanedUp(t)

	// The table: a header and a row per config, in order.
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CONFIG") || !strings.HasPrefix(lines[1], "memory ") ||
		!strings.HasPrefix(lines[2], "rowfile ") {
		t.Fatalf("want a table of 2 rows on stdout\n%s", res)
	}
	for _, h := range []string{"OPS/S", "READ µs p50/p99/p999", "UPDATE µs p50/p99/p999", "LOAD OPS/S", "DISK", "SPACE AMP", "SKEW", "MOVED"} {
		if !strings.Contains(lines[0], h) {
			t.Errorf("header lacks %q: %s", h, lines[0])
		}
	}
	// Progress went to stderr as plain lines (not a terminal).
	for _, s := range []string{"bench memory: start: ready in", "bench memory: load 2000/2000 keys", "bench rowfile: workload A 4000/4000 ops"} {
		if !strings.Contains(res.stderr, s) {
			t.Errorf("stderr lacks %q\n%s", s, res.stderr)
		}
	}

	r := readReport(t, out)
	if len(r.Rows) != 2 || r.Rows[0].Config != "memory" || r.Rows[1].Config != "rowfile" {
		t.Fatalf("--json rows: %+v", r.Rows)
	}
	if s := r.Settings; s.Workload != "A" || s.Distribution != "uniform" || s.Keys != 2000 || s.Clients != 4 || s.Ops != 4000 || s.ValueSize != 100 {
		t.Errorf("settings %+v", s)
	}
	for _, row := range r.Rows {
		wantMeasured(t, row, "A", 2000, 4000, 100)
		if row.System != "dev" || row.Partitions != 2 || row.ReplicationLag != nil {
			t.Errorf("%s: system %s, %d partitions, lag %v: want dev, 2, none", row.Config, row.System, row.Partitions, row.ReplicationLag)
		}
	}
	if m := r.Rows[0]; m.BytesOnDisk != 0 || m.SpaceAmplification != 0 || !strings.HasPrefix(m.Engine, "memory") {
		t.Errorf("memory: %d bytes on disk, space amp %v, engine %q", m.BytesOnDisk, m.SpaceAmplification, m.Engine)
	}
	if f := r.Rows[1]; f.BytesOnDisk < f.LogicalBytes || f.SpaceAmplification < 1 || f.Engine != "rowfile (process) {index: btree, sync: batch}" {
		t.Errorf("rowfile: %d bytes on disk for %d logical, space amp %v, engine %q", f.BytesOnDisk, f.LogicalBytes, f.SpaceAmplification, f.Engine)
	}
	wantReportRenders(t, page, 2, 2)
}

// TestBenchKeyspaceDefault: --keyspace default measures the default keyspace
// of a config without keyspaces, in a row named CONFIG/default.
func TestBenchKeyspaceDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	memory := writeConfig(t, dir, "memory.yaml", "engine: {plugin: memory}\n")
	out := filepath.Join(dir, "out.json")
	res := runBenchCmd(t, 3*time.Minute, "--config", memory, "--keyspace", "default", "--keys", "500", "--ops", "1000", "--clients", "2", "--json", out)
	if res.code != 0 {
		t.Fatalf("plugdb bench failed\n%s", res)
	}
	res.wantCleanedUp(t)
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "memory/default ") {
		t.Errorf("want a row memory/default\n%s", res)
	}
	r := readReport(t, out)
	if len(r.Rows) != 1 || r.Rows[0].Config != "memory/default" || r.Rows[0].Keyspace != "default" || r.Rows[0].Operations != 1000 || r.Rows[0].Error != "" {
		t.Errorf("rows: %+v", r.Rows)
	}
	if !strings.Contains(res.stderr, "bench memory: start: ready in") || !strings.Contains(res.stderr, "bench memory/default: workload A 1000/1000 ops") {
		t.Errorf("progress lines\n%s", res.stderr)
	}
}

// wantReportRenders loads the --report page in headless Chromium and checks
// that every chart is in the DOM with its bars for rows measured configs of
// partitions partitions each, and that the screenshot shows the bars' colours.
func wantReportRenders(t *testing.T, page string, rows, partitions int) {
	t.Helper()
	browser, err := headless.Find()
	if err != nil {
		t.Fatalf("%v (make test-deps installs Debian's chromium)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dom, err := browser.DumpDOM(ctx, page)
	if err != nil {
		t.Fatal(err)
	}
	got, err := benchreport.Bars(dom)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"throughput": rows, "load-throughput": rows, "latency": 3 * rows, "partition-keys": partitions * rows, "keys-moved": rows}
	for _, chart := range benchreport.Charts() {
		if n, ok := got[chart]; !ok || n != want[chart] {
			t.Errorf("rendered chart %s: %d bars (present %v), want %d", chart, n, ok, want[chart])
		}
	}
	shot := filepath.Join(t.TempDir(), "report.png")
	if err := browser.Screenshot(ctx, page, shot, 1100, 1800); err != nil {
		t.Fatal(err)
	}
	inked, counts, err := headless.Ink(shot, color.RGBA{0x4e, 0x79, 0xa7, 0xff}, color.RGBA{0xf2, 0x8e, 0x2b, 0xff})
	if err != nil {
		t.Fatal(err)
	}
	if inked < 0.02 || counts[0] < 200 || counts[1] < 200 {
		t.Errorf("screenshot: %.1f%% inked, %v pixels of the first two series colours: want charts drawn", 100*inked, counts)
	}
}

// The partitioners on growth, from config files named relative to the working
// folder: range cuts its fuller range (a quarter of the keys move), ring moves
// about 1/3 (2→3); scans (workload E) run against both.
func TestBenchPartitionersOnGrowth(t *testing.T) {
	t.Parallel()
	wd := t.TempDir()
	writeConfig(t, wd, "range.yaml", "partitioner: {plugin: range, options: {splits: user8}}\n")
	writeConfig(t, wd, "ring.yaml", "partitioner: {plugin: ring}\n")
	res := runBenchCmdIn(t, wd, 3*time.Minute, "--config", "range.yaml", "--config", "ring.yaml",
		"--workload", "E", "--keys", "4000", "--load-batch", "64", "--warmup", "500ms", "--ops", "1000", "--clients", "2", "--json", "out.json")
	if res.code != 0 {
		t.Fatalf("plugdb bench failed\n%s", res)
	}
	r := readReport(t, filepath.Join(wd, "out.json"))
	if r.Settings.LoadBatch != 64 || r.Settings.WarmupS != 0.5 {
		t.Errorf("settings: load batch %d, warm-up %vs: want 64, 0.5", r.Settings.LoadBatch, r.Settings.WarmupS)
	}
	if !strings.Contains(res.stderr, "reads (not measured)") {
		t.Errorf("stderr lacks the warm-up's progress\n%s", res.stderr)
	}
	if len(r.Rows) != 2 {
		t.Fatalf("--json rows: %+v", r.Rows)
	}
	for _, row := range r.Rows {
		if row.Ops["scan"].Count == 0 || row.Errors != 0 {
			t.Errorf("%s: %d scans, %d errors: want scans and no errors", row.Config, row.Ops["scan"].Count, row.Errors)
		}
		// E inserts new keys (5% of its operations) beside the loaded ones.
		if want := 4000 + row.Ops["insert"].Count; len(row.PartitionKeys) != 2 || row.PartitionKeys[0]+row.PartitionKeys[1] != want {
			t.Errorf("%s: partition keys %v, want 2 partitions holding %d", row.Config, row.PartitionKeys, want)
		}
	}
	if got := r.Rows[0].KeysMoved; got < 0.2 || got > 0.3 {
		t.Errorf("range: keys moved %v, want about 1/4 (half of the fuller of two halves)", got)
	}
	if got := r.Rows[1].KeysMoved; got < 0.2 || got > 0.45 {
		t.Errorf("ring: keys moved %v, want about 1/3", got)
	}
}

func TestBenchCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	semi := writeConfig(t, dir, "semi-sync.yaml", "replicator: {plugin: statement, options: {ack: semi-sync}}\nnodes: {replicas: 2}\n")
	out := filepath.Join(dir, "out.json")
	res := runBenchCmd(t, 4*time.Minute, "--config", semi, "--workload", "f", "--keys", "2000", "--ops", "4000", "--clients", "4", "--json", out)
	if res.code != 0 {
		t.Fatalf("plugdb bench failed\n%s", res)
	}
	res.wantCleanedUp(t)
	r := readReport(t, out)
	if len(r.Rows) != 1 {
		t.Fatalf("--json rows: %+v", r.Rows)
	}
	row := r.Rows[0]
	wantMeasured(t, row, "F", 2000, 4000, 100)
	if row.System != "cluster" || row.ReplicationLag == nil || row.Replicator != "statement {ack: semi-sync}" {
		t.Errorf("system %s, lag %v, replicator %q: want a cluster with a replication lag", row.System, row.ReplicationLag, row.Replicator)
	}
	if !strings.Contains(res.stdout, "READ_MODIFY_WRITE µs") || !strings.Contains(res.stdout, " stmts / ") {
		t.Errorf("the table lacks the read-modify-write group or the lag\n%s", res.stdout)
	}
}

// A config that cannot start gets a row with its error; the next is measured.
func TestBenchConfigThatFailsToStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPlugin := writeConfig(t, dir, "not-a-plugin.yaml", "engine: {plugin: /bin/true}\n")
	memory := writeConfig(t, dir, "memory.yaml", "engine: {plugin: memory}\n")
	out := filepath.Join(dir, "out.json")
	res := runBenchCmd(t, 3*time.Minute, "--config", notPlugin, "--config", memory, "--keys", "500", "--ops", "1000", "--clients", "2", "--json", out)
	if res.code != 2 || !strings.Contains(res.stderr, "1 of 2 configs could not be measured") {
		t.Fatalf("want exit 2 naming the failed config\n%s", res)
	}
	res.wantCleanedUp(t)
	r := readReport(t, out)
	if len(r.Rows) != 2 || r.Rows[0].Error == "" || r.Rows[0].Operations != 0 || r.Rows[1].Error != "" || r.Rows[1].Operations != 1000 {
		t.Fatalf("rows: %+v", r.Rows)
	}
	if !strings.Contains(res.stdout, "not-a-plugin: error: ") || !strings.Contains(res.stdout, "failed") {
		t.Errorf("the table does not show the failed row and its error\n%s", res.stdout)
	}
}

func TestBenchBadInput(t *testing.T) {
	dir := t.TempDir()
	ok := writeConfig(t, dir, "memory.yaml", "engine: {plugin: memory}\n")
	badKey := writeConfig(t, dir, "bad-key.yaml", "engine: {plugin: memory}\npartitons: 3\n")
	badPlugin := writeConfig(t, dir, "bad-plugin.yaml", "engine: {plugin: leveldb}\n")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown workload", []string{"--config", ok, "--workload", "D"}, []string{`--workload "D"`, "A, B, C, E, F, load"}},
		{"unknown distribution", []string{"--config", ok, "--distribution", "latest"}, []string{`--distribution "latest"`, "uniform, zipfian"}},
		{"ops and duration", []string{"--config", ok, "--ops", "10", "--duration", "1s"}, []string{"--ops and --duration", "give one of them"}},
		{"missing config", []string{"--config", ok, "--config", filepath.Join(dir, "nope.yaml")}, []string{"--config " + filepath.Join(dir, "nope.yaml"), "no such file"}},
		{"no config", []string{"--keys", "10"}, []string{"--config", "at least one"}},
		{"bad key", []string{"--config", ok, "--config", badKey}, []string{"--config " + badKey, "partitons"}},
		{"unknown plugin", []string{"--config", badPlugin}, []string{`engine.plugin "leveldb"`, "bbolt, memory, pebble, rowfile"}},
		{"clients", []string{"--config", ok, "--clients", "0"}, []string{"--clients 0", "1..1024"}},
		{"keys", []string{"--config", ok, "--keys", "0"}, []string{"--keys 0", "at least 1"}},
		{"load batch", []string{"--config", ok, "--load-batch", "0"}, []string{"--load-batch 0", "1..10000"}},
		{"warmup", []string{"--config", ok, "--warmup", "-1s"}, []string{"--warmup -1s", "0s..10m0s"}},
		{"load batch too big", []string{"--config", ok, "--load-batch", "100", "--value-size", "65536"}, []string{"--load-batch 100 of --value-size 65536", "exceeds gRPC's"}},
		{"keyspace with two configs", []string{"--config", ok, "--config", ok, "--keyspace", "events"},
			[]string{"--keyspace with 2 --config files", "give one --config with --keyspace, or several --config without it"}},
		{"keyspace empty", []string{"--config", ok, "--keyspace", "a,,b"}, []string{`--keyspace "a,,b": a keyspace name is empty`}},
		{"keyspace twice", []string{"--config", ok, "--keyspace", "a,b", "--keyspace", "a"}, []string{`--keyspace "a,b,a": keyspace "a" given twice`}},
		{"unknown keyspace", []string{"--config", ok, "--keyspace", "default,events"}, []string{"--keyspace: config " + ok, `keyspace "events": allowed values are default`}},
		{"report folder missing", []string{"--config", ok, "--report", filepath.Join(dir, "no", "r.html")}, []string{"--report: open " + filepath.Join(dir, "no", "r.html"), "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runBenchCmd(t, 30*time.Second, tc.args...)
			if res.code != 2 || res.stdout != "" {
				t.Fatalf("want exit 2 and nothing on stdout\n%s", res)
			}
			for _, s := range tc.want {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q\n%s", s, res.stderr)
				}
			}
			if strings.Contains(res.stderr, "bench ") {
				t.Errorf("something started before the input was checked\n%s", res.stderr)
			}
			res.wantCleanedUp(t)
		})
	}
}

// Every file of configs/compare loads (plugin names are checked by Validate,
// against the bundled plugins of the merged binary), has a top comment, and
// sets what its name says.
func TestCompareConfigsLoad(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "configs", "compare", "*.yaml"))
	l, err := newLoader(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]func(config.Config) bool{
		"engine-rowfile-hash": func(c config.Config) bool { return c.Engine.Plugin == "rowfile" && c.Engine.Options["index"] == "hash" },
		"engine-rowfile-btree": func(c config.Config) bool {
			return c.Engine.Plugin == "rowfile" && c.Engine.Options["index"] == "btree"
		},
		"engine-bbolt": func(c config.Config) bool { return c.Engine.Plugin == "bbolt" },
		"engine-rowfile-unsynced": func(c config.Config) bool {
			return c.Engine.Plugin == "rowfile" && c.Engine.Options["sync"] == "none"
		},
		"engine-bbolt-unsynced":  func(c config.Config) bool { return c.Engine.Plugin == "bbolt" && c.Engine.Options["sync"] == "none" },
		"engine-pebble-unsynced": func(c config.Config) bool { return c.Engine.Plugin == "pebble" && c.Engine.Options["sync"] == "none" },
		"engine-pebble":          func(c config.Config) bool { return c.Engine.Plugin == "pebble" },
		"engine-memory":          func(c config.Config) bool { return c.Engine.Plugin == "memory" },
		"partitioner-hash":       func(c config.Config) bool { return c.Partitioner.Plugin == "hash" && btree(c) },
		"partitioner-ring": func(c config.Config) bool {
			return c.Partitioner.Plugin == "ring" && c.Partitioner.Options["vnodes"] != "" && btree(c)
		},
		"partitioner-range": func(c config.Config) bool {
			return c.Partitioner.Plugin == "range" && c.Partitioner.Options["splits"] == "user8" && btree(c)
		},
		"replication-none":      func(c config.Config) bool { return c.Replicator.Plugin == "none" && c.Nodes.Replicas == 1 },
		"replication-async":     ackIs("async"),
		"replication-semi-sync": ackIs("semi-sync"),
		"replication-sync":      ackIs("sync"),
		"plugin-process":        func(c config.Config) bool { return c.Engine.Mode == "process" },
		"plugin-inprocess":      func(c config.Config) bool { return c.Engine.Mode == "inprocess" },
	}
	if len(files) != len(want) {
		t.Errorf("configs/compare has %d files, want %d", len(files), len(want))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		cfg, err := config.Load(config.Source{File: f})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if err := cfg.Validate(clusterKnown(l)); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		// The bundled plugins accept the options (checked in process: an engine
		// opened on a fresh folder, the partitioner configured).
		ctx := context.Background()
		e, err := bundledEngines()[cfg.Engine.Plugin](ctx, engines.Options{Dir: t.TempDir(), Params: cfg.Engine.Options, Logger: hclog.NewNullLogger()})
		if err != nil {
			t.Errorf("%s: engine %s refuses the options: %v", name, cfg.Engine.Plugin, err)
		} else if err := e.Close(); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
		p, err := bundledPartitioners()[cfg.Partitioner.Plugin](ctx, hclog.NewNullLogger())
		if err == nil {
			err = p.Configure(ctx, cfg.Partitions, cfg.Partitioner.Options)
		}
		if err != nil {
			t.Errorf("%s: partitioner %s refuses the options: %v", name, cfg.Partitioner.Plugin, err)
		}
		b, _ := os.ReadFile(f)
		if !strings.HasPrefix(string(b), "# ") {
			t.Errorf("%s: no top comment saying what it compares", name)
		}
		if check, ok := want[name]; !ok || !check(cfg) {
			t.Errorf("%s: unexpected file, or it does not set what its name says: %+v", name, cfg)
		}
	}
}

// btree: the partitioner comparisons scan, so their rowfile keeps keys ordered.
func btree(c config.Config) bool {
	return c.Engine.Plugin == "rowfile" && c.Engine.Options["index"] == "btree"
}

func ackIs(ack string) func(config.Config) bool {
	return func(c config.Config) bool {
		return c.Replicator.Plugin == "statement" && c.Replicator.Options["ack"] == ack && c.Nodes.Replicas == 3
	}
}

package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchKeyspaces: with --keyspace, one config's system is started once and
// the workload runs against each keyspace in turn, a row each, every row with
// its own keyspace's partitions and plugins.
func TestBenchKeyspaces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "ks.yaml", "engine: {plugin: memory}\n"+
		"keyspaces:\n"+
		"  events:\n"+
		"    partitions: 3\n"+
		"    partitioner: {plugin: range}\n")
	out := filepath.Join(dir, "out.json")
	const keys, ops = 1000, 2000
	res := runBenchCmd(t, 3*time.Minute, "--config", cfg, "--keyspace", "default,events",
		"--keys", "1000", "--ops", "2000", "--clients", "2", "--json", out)
	if res.code != 0 {
		t.Fatalf("plugdb bench failed\n%s", res)
	}
	res.wantCleanedUp(t)

	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "ks/default ") || !strings.HasPrefix(lines[2], "ks/events ") {
		t.Fatalf("want a table of 2 rows, ks/default and ks/events\n%s", res)
	}
	// The system started once.
	if n := strings.Count(res.stderr, "start: ready in"); n != 1 {
		t.Errorf("the system started %d times, want once\n%s", n, res.stderr)
	}
	for _, s := range []string{"bench ks/default: workload A 2000/2000 ops", "bench ks/events: workload A 2000/2000 ops"} {
		if !strings.Contains(res.stderr, s) {
			t.Errorf("stderr lacks %q\n%s", s, res.stderr)
		}
	}

	r := readReport(t, out)
	if len(r.Rows) != 2 {
		t.Fatalf("--json rows: %+v", r.Rows)
	}
	for i, want := range []struct {
		name, keyspace, partitioner string
		partitions                  int
	}{{"ks/default", "default", "hash (process)", 2}, {"ks/events", "events", "range (process)", 3}} {
		row := r.Rows[i]
		if row.Error != "" {
			t.Errorf("%s: error %s", row.Config, row.Error)
			continue
		}
		if row.Config != want.name || row.Keyspace != want.keyspace || row.Partitioner != want.partitioner || row.Partitions != want.partitions ||
			!strings.HasPrefix(row.Engine, "memory") || row.System != "dev" {
			t.Errorf("row %d: %s keyspace %q, partitioner %q, %d partitions, engine %q, system %s; want %s, %q, %q, %d, memory, dev",
				i, row.Config, row.Keyspace, row.Partitioner, row.Partitions, row.Engine, row.System, want.name, want.keyspace, want.partitioner, want.partitions)
		}
		// The status read after the workload is the keyspace's own: its
		// partitions, holding the keys loaded into it.
		var sum int64
		for _, k := range row.PartitionKeys {
			sum += k
		}
		if len(row.PartitionKeys) != want.partitions || sum != keys || row.LoadOps != keys || row.Operations != ops || row.Errors != 0 {
			t.Errorf("%s: partition keys %v (want %d partitions summing to %d), load %d, operations %d, errors %d",
				row.Config, row.PartitionKeys, want.partitions, keys, row.LoadOps, row.Operations, row.Errors)
		}
	}
}

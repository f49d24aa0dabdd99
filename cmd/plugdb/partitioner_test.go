package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	customPartitionerOnce sync.Once
	customPartitionerBin  string
	customPartitionerErr  error
)

// customPartitioner builds examples/custompartitioner once, beside plugdb.
func customPartitioner(t *testing.T) string {
	t.Helper()
	customPartitionerOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			customPartitionerErr = err
			return
		}
		out := filepath.Join(filepath.Dir(plugdbBin), "custompartitioner")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./examples/custompartitioner")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			customPartitionerErr = err
			t.Logf("%s", b)
			return
		}
		customPartitionerBin = out
	})
	if customPartitionerErr != nil {
		t.Fatalf("build examples/custompartitioner: %v", customPartitionerErr)
	}
	return customPartitionerBin
}

func TestPluginCheckPartitioners(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    func(t *testing.T) []string
		skipped int // MatchesReference, for a binary that has no reference
	}{
		{"hash by name", func(*testing.T) []string { return []string{"hash"} }, 0},
		{"hash inprocess", func(*testing.T) []string { return []string{"hash", "--mode", "inprocess"} }, 0},
		{"ring by name", func(*testing.T) []string { return []string{"ring"} }, 0},
		{"ring inprocess", func(*testing.T) []string { return []string{"ring", "--mode", "inprocess"} }, 0},
		{"range by name", func(*testing.T) []string { return []string{"range"} }, 0},
		{"range inprocess", func(*testing.T) []string { return []string{"range", "--mode", "inprocess"} }, 0},
		{"binary found out", func(t *testing.T) []string { return []string{customPartitioner(t)} }, 1},
		{"binary with --kind", func(t *testing.T) []string { return []string{"--kind", "partitioner", customPartitioner(t)} }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"plugin", "check"}, tc.args(t)...)
			res := runPlugdb(t, 5*time.Minute, args...)
			if res.code != 0 {
				t.Fatalf("plugdb %s: want exit 0\n%s", strings.Join(args, " "), res)
			}
			m := summaryLine.FindStringSubmatch(res.lastLine())
			if m == nil {
				t.Fatalf("last line %q, want %q\n%s", res.lastLine(), summaryLine, res)
			}
			passed, _ := strconv.Atoi(m[1])
			skipped, _ := strconv.Atoi(m[3])
			if passed < 8 || skipped != tc.skipped {
				t.Fatalf("last line %q: want at least 8 passed and %d skipped\n%s", res.lastLine(), tc.skipped, res)
			}
			for _, c := range []string{"ConfigureRejectsBadArguments", "Balance", "MatchesReference"} {
				if !strings.Contains(res.stdout, ": "+c+" (") {
					t.Errorf("no line for case %s\n%s", c, res)
				}
			}
		})
	}
}

func TestPluginCheckPartitionerRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
		want []string
	}{
		{"an engine as partitioner", func(*testing.T) []string { return []string{"--kind", "partitioner", customBin} }, []string{"is not a partitioner plugin"}},
		{"a partitioner as engine", func(t *testing.T) []string { return []string{"--kind", "engine", customPartitioner(t)} }, []string{"is not an engine plugin"}},
		{"engine name as partitioner", func(*testing.T) []string { return []string{"--kind", "partitioner", "memory"} }, []string{`partitioner.plugin "memory": no such bundled partitioner (bundled: hash, range, ring)`}},
		{"unknown name", func(*testing.T) []string { return []string{"nosuch"} }, []string{`"nosuch": no such bundled engine (bundled: bbolt, memory, pebble, rowfile), partitioner (bundled: hash, range, ring) or replicator (bundled: `}},
		{"bad kind", func(*testing.T) []string { return []string{"--kind", "router", "hash"} }, []string{`--kind "router": allowed values are engine, partitioner, replicator`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"plugin", "check"}, tc.args(t)...)
			res := runPlugdb(t, time.Minute, args...)
			if res.code != 2 {
				t.Fatalf("plugdb %s: want exit 2\n%s", strings.Join(args, " "), res)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("stderr does not say %q\n%s", w, res)
				}
			}
			if strings.Contains(res.stdout, "passed") {
				t.Errorf("ran cases although the plugin cannot be loaded\n%s", res)
			}
		})
	}
}

func TestPluginServePartitionerByHandExits(t *testing.T) {
	res := runPlugdb(t, time.Minute, "plugin", "serve", "partitioner", "hash")
	if res.code == 0 || strings.TrimSpace(res.stdout+res.stderr) == "" {
		t.Fatalf("plugin serve partitioner run by hand: want a message and a non-zero exit\n%s", res)
	}
	res = runPlugdb(t, time.Minute, "plugin", "serve", "partitioner", "nosuch")
	if res.code != 2 || !strings.Contains(res.stderr, `no bundled partitioner "nosuch" (bundled: hash, range, ring)`) {
		t.Fatalf("plugin serve of an unknown partitioner\n%s", res)
	}
}

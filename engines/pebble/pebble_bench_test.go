package pebble_test

import (
	"os"
	"testing"

	"github.com/plugdb/plugdb/engines/enginebench"
	"github.com/plugdb/plugdb/engines/pebble"
)

// The shared engine benchmarks (engines/enginebench), so pebble's figures
// compare with rowfile's:
//
//	go test -run '^$' -bench . ./engines/pebble ./engines/rowfile
//
// pebble has no sync: batch; its sync: always shares one WAL fsync among
// concurrent commits, so GroupCommit64 runs with it. GetRandom runs with
// pebble's default 8MiB block cache (smaller than the 100000 keys' tables) and
// with one that holds them all. Recovery measures Open (pebble replays the WAL
// tail into a memtable; tables are not read).
var bench = &enginebench.Suite{
	Open:            pebble.Open,
	GroupCommitSync: "always",
	Reads: []enginebench.Variant{
		{Name: "cache=8MiB", Params: map[string]string{"cache_size": "8MiB"}},
		{Name: "cache=64MiB", Params: map[string]string{"cache_size": "64MiB"}},
	},
}

func TestMain(m *testing.M) {
	code := m.Run()
	bench.Cleanup()
	os.Exit(code)
}

func BenchmarkLoad(b *testing.B)          { bench.Load(b) }
func BenchmarkGetRandom(b *testing.B)     { bench.GetRandom(b) }
func BenchmarkGroupCommit64(b *testing.B) { bench.GroupCommit64(b) }
func BenchmarkSyncAlways1(b *testing.B)   { bench.SyncAlways1(b) }
func BenchmarkRecovery(b *testing.B)      { bench.Recovery(b) }

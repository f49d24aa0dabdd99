package rowfile_test

import (
	"os"
	"testing"

	"github.com/plugdb/plugdb/engines/enginebench"
	"github.com/plugdb/plugdb/engines/rowfile"
)

// The shared engine benchmarks (engines/enginebench), with both indexes:
//
//	go test -run '^$' -bench . ./engines/rowfile
//	PLUGDB_BENCH_KEYS=1000000 go test -run '^$' -bench 'Recovery|GetRandom' ./engines/rowfile
var bench = &enginebench.Suite{
	Open:            rowfile.Open,
	Base:            map[string]string{rowfile.OptCompactInterval: "0"},
	GroupCommitSync: "batch", // one fsync per group
	Reads:           indexes,
	Recoveries:      indexes,
}

var indexes = []enginebench.Variant{
	{Name: "hash", Params: map[string]string{rowfile.OptIndex: "hash"}},
	{Name: "btree", Params: map[string]string{rowfile.OptIndex: "btree"}},
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

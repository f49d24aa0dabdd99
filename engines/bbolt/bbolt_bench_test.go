package bbolt_test

import (
	"os"
	"testing"

	"github.com/plugdb/plugdb/engines/bbolt"
	"github.com/plugdb/plugdb/engines/enginebench"
)

// The shared engine benchmarks (engines/enginebench), so bbolt's figures
// compare with rowfile's:
//
//	go test -run '^$' -bench . ./engines/bbolt ./engines/rowfile
//
// bbolt has no index choice, so GetRandom and Recovery have one variant, named
// like rowfile's btree one; its sync: always groups concurrent Applies into one
// commit, as rowfile's sync: batch does, so GroupCommit64 runs with it. Its
// Recovery reads the meta pages and freelist; nothing is replayed.
var bench = &enginebench.Suite{
	Open:            bbolt.Open,
	GroupCommitSync: "always",
	Reads:           btree,
	Recoveries:      btree,
}

var btree = []enginebench.Variant{{Name: "btree"}}

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

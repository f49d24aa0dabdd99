package pebble

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plugdb/plugdb/engines"
)

// The benchmarks have the names and shapes of engines/rowfile's, so their
// figures compare: 16-byte keys, 100-byte values; BenchmarkGetRandom and
// BenchmarkRecovery work on a pre-loaded set of PLUGDB_BENCH_KEYS keys (default
// 100000), built once per run and kept in a temporary folder:
//
//	go test -run '^$' -bench . ./engines/pebble ./engines/rowfile
//
// pebble has no sync: batch; its sync: always shares one WAL fsync among
// concurrent commits, so BenchmarkGroupCommit64 runs with sync: always where
// rowfile's runs with sync: batch. BenchmarkRecovery measures Open (pebble
// replays the WAL tail into a memtable; tables are not read) and counts the keys
// with Stats outside the timer.

const benchValueSize = 100

var benchValue = func() []byte {
	v := make([]byte, benchValueSize)
	for i := range v {
		v[i] = byte('a' + i%26)
	}
	return v
}()

// benchKey returns the 16-byte key of i (the same keys as rowfile's benchmarks).
func benchKey(i uint64) []byte {
	k := make([]byte, 16)
	copy(k, "key:")
	binary.BigEndian.PutUint64(k[8:], i*0x9e3779b97f4a7c15) // spread over the key space
	binary.BigEndian.PutUint32(k[4:], uint32(i>>32))
	return k
}

func benchKeys(b *testing.B) int {
	s := os.Getenv("PLUGDB_BENCH_KEYS")
	if s == "" {
		return 100_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("PLUGDB_BENCH_KEYS=%q: want a positive integer", s)
	}
	return n
}

func openBench(b *testing.B, dir string, params map[string]string) *Engine {
	b.Helper()
	e, err := open(context.Background(), engines.Options{Dir: dir, Params: params})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

var loaded struct {
	sync.Mutex
	dirs map[int]string // key count → folder holding them
}

// loadedDir returns a folder holding n keys (LSNs 1..n), built once per run.
func loadedDir(b *testing.B, n int) string {
	loaded.Lock()
	defer loaded.Unlock()
	if d, ok := loaded.dirs[n]; ok {
		return d
	}
	dir, err := os.MkdirTemp("", "pebble-bench-")
	if err != nil {
		b.Fatal(err)
	}
	e := openBench(b, dir, map[string]string{"sync": "none"})
	const per = 1000
	batch := make([]engines.Mutation, 0, per)
	for i := 1; i <= n; i++ {
		batch = append(batch, engines.Mutation{Op: engines.OpPut, Key: benchKey(uint64(i)), Value: benchValue, LSN: uint64(i)})
		if len(batch) == per || i == n {
			if err := e.Apply(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
	if loaded.dirs == nil {
		loaded.dirs = map[int]string{}
	}
	loaded.dirs[n] = dir
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range loaded.dirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// BenchmarkLoad: sequential load, one put per Apply, sync: none.
func BenchmarkLoad(b *testing.B) {
	e := openBench(b, b.TempDir(), map[string]string{"sync": "none"})
	defer e.Close()
	ctx := context.Background()
	b.SetBytes(16 + benchValueSize)
	b.ResetTimer()
	for i := range b.N {
		lsn := uint64(i + 1)
		if err := e.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: benchKey(lsn), Value: benchValue, LSN: lsn}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetRandom: random point reads of the pre-loaded keys, with pebble's
// default 8MiB block cache (smaller than the 100000 keys' tables) and with one
// that holds them all.
func BenchmarkGetRandom(b *testing.B) {
	n := benchKeys(b)
	dir := loadedDir(b, n)
	for _, cache := range []string{"8MiB", "64MiB"} {
		b.Run(fmt.Sprintf("cache=%s/keys=%d", cache, n), func(b *testing.B) {
			e := openBench(b, dir, map[string]string{"cache_size": cache})
			defer e.Close()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for range b.N {
				k := benchKey(1 + rng.Uint64N(uint64(n)))
				if _, err := e.Get(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchWriters runs b.N single-put Applies spread over writers goroutines.
func benchWriters(b *testing.B, writers int, mode string) {
	e := openBench(b, b.TempDir(), map[string]string{"sync": mode})
	defer e.Close()
	ctx := context.Background()
	var lsn, done atomic.Uint64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			for done.Add(1) <= uint64(b.N) {
				l := lsn.Add(1)
				if err := e.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: benchKey(l), Value: benchValue, LSN: l}}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "applies/s")
}

// BenchmarkGroupCommit64: 64 concurrent writers, sync: always (pebble's WAL
// shares one fsync among the commits waiting for it).
func BenchmarkGroupCommit64(b *testing.B) { benchWriters(b, 64, "always") }

// BenchmarkSyncAlways1: one writer, sync: always (one fsync per Apply).
func BenchmarkSyncAlways1(b *testing.B) { benchWriters(b, 1, "always") }

// BenchmarkRecovery: Open (recovery) of the pre-loaded keys.
func BenchmarkRecovery(b *testing.B) {
	n := benchKeys(b)
	dir := loadedDir(b, n)
	b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
		for range b.N {
			e := openBench(b, dir, nil)
			b.StopTimer()
			if st, _ := e.Stats(context.Background()); st.Keys != int64(n) {
				b.Fatalf("recovered %d keys, want %d", st.Keys, n)
			}
			e.Close()
			b.StartTimer()
		}
	})
}

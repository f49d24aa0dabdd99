// Package enginebench holds the benchmarks every bundled engine runs, with the
// same names, keys and values, so that their figures compare (16-byte keys,
// 100-byte values). GetRandom and Recovery work on a pre-loaded set of
// PLUGDB_BENCH_KEYS keys (default 100000), built once per run in a temporary
// folder. From an engine's tests:
//
//	var bench = &enginebench.Suite{Open: myengine.Open, GroupCommitSync: "always"}
//
//	func TestMain(m *testing.M) { code := m.Run(); bench.Cleanup(); os.Exit(code) }
//	func BenchmarkLoad(b *testing.B) { bench.Load(b) }
//
// Concurrent writers take LSNs from an atomic counter and call Apply without
// further coordination (the contract lets concurrent batches carry LSNs in any
// order, never two on one key at once); each writes its own keys.
package enginebench

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
)

// ValueSize is the bytes of every benchmark value.
const ValueSize = 100

var value = func() []byte {
	v := make([]byte, ValueSize)
	for i := range v {
		v[i] = byte('a' + i%26)
	}
	return v
}()

// Key returns the 16-byte key of i, spread over the key space.
func Key(i uint64) []byte {
	k := make([]byte, 16)
	copy(k, "key:")
	binary.BigEndian.PutUint64(k[8:], i*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint32(k[4:], uint32(i>>32))
	return k
}

// Variant is a sub-benchmark of GetRandom or Recovery: the engine opened with
// Params, named Name ("" for none).
type Variant struct {
	Name   string
	Params map[string]string
}

// Suite is one engine's benchmarks.
type Suite struct {
	Open engines.OpenFunc
	// Base are the params of every open (rowfile: no background compaction).
	Base map[string]string
	// GroupCommitSync is the sync mode of GroupCommit64: the engine's mode
	// that shares one fsync among concurrent Applies.
	GroupCommitSync string
	// Reads and Recoveries are the variants of GetRandom and Recovery (nil:
	// one, unnamed).
	Reads, Recoveries []Variant

	mu     sync.Mutex
	loaded map[int]string // key count → folder holding them
}

func (s *Suite) open(b *testing.B, dir string, params map[string]string) engines.Engine {
	b.Helper()
	p := maps.Clone(s.Base)
	if p == nil {
		p = map[string]string{}
	}
	maps.Copy(p, params)
	e, err := s.Open(context.Background(), engines.Options{Dir: dir, Params: p, Logger: hclog.NewNullLogger()})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// Keys is PLUGDB_BENCH_KEYS, default 100000.
func Keys(b *testing.B) int {
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

// loadedDir returns a folder holding n keys (LSNs 1..n), built once per run.
func (s *Suite) loadedDir(b *testing.B, n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.loaded[n]; ok {
		return d
	}
	dir, err := os.MkdirTemp("", "plugdb-enginebench-")
	if err != nil {
		b.Fatal(err)
	}
	e := s.open(b, dir, map[string]string{"sync": "none"})
	const per = 1000
	batch := make([]engines.Mutation, 0, per)
	for i := 1; i <= n; i++ {
		batch = append(batch, engines.Mutation{Op: engines.OpPut, Key: Key(uint64(i)), Value: value, LSN: uint64(i)})
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
	if s.loaded == nil {
		s.loaded = map[int]string{}
	}
	s.loaded[n] = dir
	return dir
}

// Cleanup removes the pre-loaded folders; call it from TestMain after m.Run.
func (s *Suite) Cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.loaded {
		os.RemoveAll(d)
	}
	s.loaded = nil
}

// Load is a sequential load, one put per Apply, sync: none.
func (s *Suite) Load(b *testing.B) {
	e := s.open(b, b.TempDir(), map[string]string{"sync": "none"})
	defer e.Close()
	ctx := context.Background()
	b.SetBytes(16 + ValueSize)
	b.ResetTimer()
	for i := range b.N {
		lsn := uint64(i + 1)
		if err := e.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: Key(lsn), Value: value, LSN: lsn}}); err != nil {
			b.Fatal(err)
		}
	}
}

// GetRandom is random point reads of the pre-loaded keys, per read variant.
func (s *Suite) GetRandom(b *testing.B) {
	n := Keys(b)
	dir := s.loadedDir(b, n)
	for _, v := range variants(s.Reads) {
		b.Run(subName(v, n), func(b *testing.B) {
			e := s.open(b, dir, v.Params)
			defer e.Close()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for range b.N {
				if _, err := e.Get(ctx, Key(1+rng.Uint64N(uint64(n)))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// GroupCommit64 is 64 concurrent writers in the GroupCommitSync mode.
func (s *Suite) GroupCommit64(b *testing.B) { s.writers(b, 64, s.GroupCommitSync) }

// SyncAlways1 is one writer with sync: always (one fsync per Apply).
func (s *Suite) SyncAlways1(b *testing.B) { s.writers(b, 1, "always") }

// writers runs b.N single-put Applies spread over n goroutines.
func (s *Suite) writers(b *testing.B, n int, mode string) {
	e := s.open(b, b.TempDir(), map[string]string{"sync": mode})
	defer e.Close()
	ctx := context.Background()
	var lsn, done atomic.Uint64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range n {
		wg.Go(func() {
			for done.Add(1) <= uint64(b.N) {
				l := lsn.Add(1)
				if err := e.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: Key(l), Value: value, LSN: l}}); err != nil {
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

// Recovery is Open of the pre-loaded keys, per recovery variant; the keys are
// counted with Stats outside the timer.
func (s *Suite) Recovery(b *testing.B) {
	n := Keys(b)
	dir := s.loadedDir(b, n)
	for _, v := range variants(s.Recoveries) {
		b.Run(subName(v, n), func(b *testing.B) {
			for range b.N {
				e := s.open(b, dir, v.Params)
				b.StopTimer()
				if st, err := engines.StatsOf(context.Background(), e); err == nil && st.Keys != int64(n) {
					b.Fatalf("recovered %d keys, want %d", st.Keys, n)
				}
				e.Close()
				b.StartTimer()
			}
		})
	}
}

func variants(v []Variant) []Variant {
	if len(v) == 0 {
		return []Variant{{}}
	}
	return v
}

func subName(v Variant, keys int) string {
	if v.Name == "" {
		return fmt.Sprintf("keys=%d", keys)
	}
	return fmt.Sprintf("%s/keys=%d", v.Name, keys)
}

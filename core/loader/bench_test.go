package loader

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plugdb/plugdb/engines"
)

// Benchmarks of the plugin boundary: the rowfile engine (sync none, hash index)
// linked in process and served by a plugin process (this test binary, see
// TestMain), with 16-byte keys and 100-byte values. scripts/bench-ratios.sh runs
// them with plugins' BenchmarkRawStream and prints the ratios the README quotes:
//
//	go test -run '^$' -bench . -benchtime 2s ./core/loader ./plugins
//
// Each benchmark reports ops/s; throughput with 64 callers is what the shim's
// call multiplexing is for, BenchmarkUnaryCall is the baseline of one unary
// go-plugin call per operation.

const (
	benchPreload   = 100_000 // keys loaded before BenchmarkGet
	benchValueSize = 100
	benchBatch     = 100 // mutations per Apply in BenchmarkApplyBatch100
)

var benchModes = []string{ModeInProcess, ModeProcess}

// benchModeName is the sub-benchmark name of a mode.
func benchModeName(mode string) string {
	if mode == ModeProcess {
		return "plugin"
	}
	return mode
}

var benchValue = func() []byte {
	v := make([]byte, benchValueSize)
	for i := range v {
		v[i] = byte('a' + i%26)
	}
	return v
}()

// benchKey returns the 16-byte key of i, spread over the key space.
func benchKey(i uint64) []byte {
	k := make([]byte, 16)
	copy(k, "key:")
	binary.BigEndian.PutUint32(k[4:], uint32(i>>32))
	binary.BigEndian.PutUint64(k[8:], i*0x9e3779b97f4a7c15)
	return k
}

// openBenchEngine opens rowfile with sync none in mode on a fresh folder.
func openBenchEngine(b *testing.B, mode string) engines.Engine {
	b.Helper()
	eng, err := testLoader(nil).OpenEngine(context.Background(),
		Block{Plugin: "rowfile", Mode: mode, Options: map[string]string{"sync": "none", "index": "hash"}}, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = eng.Close() })
	return eng
}

// preload puts keys[i] for every i, in batches of 1000.
func preload(b *testing.B, eng engines.Engine, keys [][]byte) {
	b.Helper()
	ctx := context.Background()
	batch := make([]engines.Mutation, 0, 1000)
	for i, k := range keys {
		batch = append(batch, engines.Mutation{Op: engines.OpPut, Key: k, Value: benchValue, LSN: uint64(i + 1)})
		if len(batch) == cap(batch) || i == len(keys)-1 {
			if err := eng.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// runCallers runs op b.N times in total over n goroutines (splitting b.N), each
// with its own random source, and reports ops/s.
func runCallers(b *testing.B, n int, op func(r *rand.Rand) error) {
	b.Helper()
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	for g := range n {
		count := b.N / n
		if g < b.N%n {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 0x5eed))
			for range count {
				if err := op(r); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkGet: point gets of random preloaded keys, by 1 and 64 callers.
func BenchmarkGet(b *testing.B) {
	keys := make([][]byte, benchPreload)
	for i := range keys {
		keys[i] = benchKey(uint64(i))
	}
	ctx := context.Background()
	for _, mode := range benchModes {
		b.Run(benchModeName(mode), func(b *testing.B) {
			eng := openBenchEngine(b, mode)
			preload(b, eng, keys)
			for _, callers := range []int{1, 64} {
				b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
					runCallers(b, callers, func(r *rand.Rand) error {
						k := keys[r.IntN(len(keys))]
						row, err := eng.Get(ctx, k)
						if err != nil {
							return fmt.Errorf("get %x: %w", k, err)
						}
						if len(row.Value) != benchValueSize {
							return fmt.Errorf("get %x: %d-byte value, want %d", k, len(row.Value), benchValueSize)
						}
						return nil
					})
				})
			}
		})
	}
}

// BenchmarkApplyBatch100: one Apply of 100 puts per op (sync none), one caller,
// over a key space of benchPreload keys, so the index stays the same size.
func BenchmarkApplyBatch100(b *testing.B) {
	ctx := context.Background()
	for _, mode := range benchModes {
		b.Run(benchModeName(mode), func(b *testing.B) {
			eng := openBenchEngine(b, mode)
			keys := make([][]byte, benchPreload)
			for i := range keys {
				keys[i] = benchKey(uint64(i))
			}
			batch := make([]engines.Mutation, benchBatch)
			var lsn uint64
			b.ResetTimer()
			for i := range b.N {
				for j := range batch {
					lsn++
					batch[j] = engines.Mutation{Op: engines.OpPut, Key: keys[(i*benchBatch+j)%len(keys)], Value: benchValue, LSN: lsn}
				}
				if err := eng.Apply(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/row")
		})
	}
}

// BenchmarkUnaryCall: 64 callers each making plain unary go-plugin calls
// (AppliedLSN) to the plugin: the rate of one unary call per operation.
func BenchmarkUnaryCall(b *testing.B) {
	ctx := context.Background()
	eng := openBenchEngine(b, ModeProcess)
	for _, callers := range []int{64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			runCallers(b, callers, func(*rand.Rand) error {
				_, err := eng.AppliedLSN(ctx)
				return err
			})
		})
	}
}

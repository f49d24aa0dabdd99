package loader

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugdb/plugdb/engines"
)

// Benchmarks of the plugin boundary: the rowfile engine (sync none, hash index)
// linked in process and served by a plugin process (this test binary, see
// TestMain), with 16-byte keys and 100-byte values. scripts/bench-ratios.sh runs
// them with plugins' BenchmarkRawStream and prints the ratios docs/benchmarks.md quotes:
//
//	go test -run '^$' -bench . -benchtime 2s ./core/loader ./plugins
//
// Each benchmark reports ops/s; throughput with 64 callers is what the shim's
// call multiplexing is for, BenchmarkUnaryCall is the baseline of one unary
// go-plugin call per operation. Where /proc is readable they also report
// cpu-ns/op, the CPU time of the host and plugin processes together per
// operation, which stays comparable on a machine busy with other work.

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
	return openBenchEngineSync(b, mode, "none")
}

// openBenchEngineSync opens rowfile with sync mode syncMode in mode on a fresh folder.
func openBenchEngineSync(b *testing.B, mode, syncMode string) engines.Engine {
	b.Helper()
	eng, err := testLoader(nil).OpenEngine(context.Background(),
		Block{Plugin: "rowfile", Mode: mode, Options: map[string]string{"sync": syncMode, "index": "hash"}}, b.TempDir())
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
// with its own random source, and reports ops/s and cpu-ns/op.
func runCallers(b *testing.B, eng engines.Engine, n int, op func(r *rand.Rand) error) {
	b.Helper()
	var failed atomic.Value
	var wg sync.WaitGroup
	cpu := startCPU(eng)
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
	cpu.report(b, 1)
}

// cpuMeter measures the CPU time of this process and of eng's plugin process.
type cpuMeter struct {
	pids  []int
	start time.Duration
	ok    bool
}

// startCPU starts measuring the CPU time of this process, plus the plugin
// process's when eng runs in one.
func startCPU(eng engines.Engine) *cpuMeter {
	m := &cpuMeter{pids: []int{os.Getpid()}}
	if p, ok := eng.(*processEngine); ok {
		m.pids = append(m.pids, p.PID())
	}
	m.start, m.ok = m.total()
	return m
}

func (m *cpuMeter) total() (time.Duration, bool) {
	var sum time.Duration
	for _, pid := range m.pids {
		d, ok := procCPU(pid)
		if !ok {
			return 0, false
		}
		sum += d
	}
	return sum, true
}

// report reports cpu-ns per operation, where an operation is perOp of b.N.
func (m *cpuMeter) report(b *testing.B, perOp int) {
	end, ok := m.total()
	if !m.ok || !ok || b.N == 0 {
		return
	}
	b.ReportMetric(float64((end-m.start).Nanoseconds())/float64(b.N*perOp), "cpu-ns/op")
}

// procCPU returns the user and system CPU time of process pid from
// /proc/PID/stat (Linux; false elsewhere).
func procCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:])) // f[0] is field 3 (state); utime and stime are fields 14 and 15
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	return time.Duration(utime+stime) * time.Second / clockTicks, true
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
					runCallers(b, eng, callers, func(r *rand.Rand) error {
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
func BenchmarkApplyBatch100(b *testing.B) { benchApplyBatch100(b, "none") }

// BenchmarkApplyBatch100SyncBatch: BenchmarkApplyBatch100 with rowfile's
// default, durable sync mode (batch: one fsync per group commit), so each Apply
// waits for an fsync in both modes.
func BenchmarkApplyBatch100SyncBatch(b *testing.B) { benchApplyBatch100(b, "batch") }

func benchApplyBatch100(b *testing.B, syncMode string) {
	ctx := context.Background()
	for _, mode := range benchModes {
		b.Run(benchModeName(mode), func(b *testing.B) {
			eng := openBenchEngineSync(b, mode, syncMode)
			keys := make([][]byte, benchPreload)
			for i := range keys {
				keys[i] = benchKey(uint64(i))
			}
			batch := make([]engines.Mutation, benchBatch)
			var lsn uint64
			cpu := startCPU(eng)
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
			cpu.report(b, 1)
		})
	}
}

// BenchmarkUnaryCall: callers making plain unary go-plugin calls (AppliedLSN)
// to the plugin: with 1 caller the latency of one unary call, with 64 the rate
// of one unary call per operation.
func BenchmarkUnaryCall(b *testing.B) {
	ctx := context.Background()
	eng := openBenchEngine(b, ModeProcess)
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			runCallers(b, eng, callers, func(*rand.Rand) error {
				_, err := eng.AppliedLSN(ctx)
				return err
			})
		})
	}
}

package loader

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/plugdb/plugdb/partitioners"
)

// BenchmarkPartitionerLocate is the cost of what a router does per request:
// one Locate of one key, with the hash partitioner linked in and served by a
// plugin process, from 1 and from 64 goroutines (b.RunParallel with
// SetParallelism; concurrent calls to the plugin share one stream and travel
// in batches). ns/op is wall time per call; cpu-ns/op adds the CPU time of
// both processes per call.
//
//	go test -run '^$' -bench PartitionerLocate -benchtime 2s ./core/loader
func BenchmarkPartitionerLocate(b *testing.B) {
	for _, mode := range benchModes {
		for _, goroutines := range []int{1, 64} {
			b.Run(benchModeName(mode)+"/goroutines="+strconv.Itoa(goroutines), func(b *testing.B) {
				l := testLoader(nil)
				p, err := l.OpenPartitioner(context.Background(), Block{Plugin: "hash", Mode: mode}, 16)
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				keys := make([][]byte, 4096)
				for i := range keys {
					keys[i] = benchKey(uint64(i) * 0x9e3779b97f4a7c15)
				}
				cpu := partitionerCPU(p)
				var next atomic.Uint64
				b.ResetTimer()
				if goroutines == 1 {
					out := make([]int, 1)
					for i := 0; b.Loop(); i++ {
						if err := p.Locate(context.Background(), keys[i%len(keys):i%len(keys)+1], out); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
					b.RunParallel(func(pb *testing.PB) {
						out := make([]int, 1)
						i := int(next.Add(1000))
						for pb.Next() {
							i++
							if err := p.Locate(context.Background(), keys[i%len(keys):i%len(keys)+1], out); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
				cpu.report(b, 1)
			})
		}
	}
}

// partitionerCPU measures the CPU time of this process, plus the plugin
// process's when p runs in one.
func partitionerCPU(p partitioners.Partitioner) *cpuMeter {
	m := &cpuMeter{pids: []int{os.Getpid()}}
	if pp, ok := p.(*processPartitioner); ok {
		m.pids = append(m.pids, pp.PID())
	}
	m.start, m.ok = m.total()
	return m
}

package ring_test

import (
	"fmt"
	"testing"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/ring"
)

// BenchmarkLocate locates batches of 1,000 keys of 10 to 12 bytes with the ring
// and, for comparison, with hash mod N, linked in; ns/key is the cost per key.
//
//	go test -run '^$' -bench Locate ./partitioners/ring
func BenchmarkLocate(b *testing.B) {
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user:%06d", i*7919)
	}
	out := make([]int, len(keys))
	for _, pc := range []struct {
		name string
		open partitioners.OpenFunc
	}{{"hash", hash.Open}, {"ring", ring.Open}} {
		for _, n := range []int{16, 1024} {
			b.Run(fmt.Sprintf("%s/partitions=%d", pc.name, n), func(b *testing.B) {
				p, err := pc.open(b.Context(), nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Configure(b.Context(), n, nil); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if err := p.Locate(b.Context(), keys, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
			})
		}
	}
}

// BenchmarkConfigure builds the ring of 16 and of 1024 partitions at the
// default vnodes: the one-time cost of a router or dev process starting.
func BenchmarkConfigure(b *testing.B) {
	for _, n := range []int{16, 1024} {
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			for b.Loop() {
				p, _ := ring.Open(b.Context(), nil)
				if err := p.Configure(b.Context(), n, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

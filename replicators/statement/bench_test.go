package statement

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/replicators"
)

// BenchmarkReplicateSemiSync: 16 concurrent semi-sync writes at a time to a
// leader with one follower (both must persist each write), on real logs.
func BenchmarkReplicateSemiSync(b *testing.B) {
	l, f := newHost(b, nil), newHost(b, nil)
	ctx := context.Background()
	l.lead(1, f)
	var next atomic.Uint64
	next.Store(l.next)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lsn := next.Add(1)
			m := engines.Mutation{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), LSN: lsn}
			if err := l.r.Replicate(ctx, replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{m}}, replicators.AckSemiSync); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

package plugins

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plugdb/plugdb/engines"
)

// BenchmarkPluginCalls: EngineClient's Get and Apply through a plugin process
// serving rowfile (hash index), by 1 and 64 callers. get: gets of 10,000
// preloaded keys (sync none); apply: one put of a new key per Apply with sync batch, where
// concurrent applies share an fsync (group commit) if the plugin runs them
// concurrently. Reports calls per second.
func BenchmarkPluginCalls(b *testing.B) {
	const preloaded = 10_000
	key := func(i int) []byte { return binary.BigEndian.AppendUint64([]byte("key:"), uint64(i)*0x9e3779b97f4a7c15) }
	value := make([]byte, 100)
	ctx := context.Background()
	run := func(b *testing.B, callers int, op func(i int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		b.ResetTimer()
		for g := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < b.N; i += callers {
					if err := op(i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	}
	b.Run("get", func(b *testing.B) {
		c := startEnginePlugin(b, "rowfile", map[string]string{"sync": "none", "index": "hash"})
		batch := make([]engines.Mutation, 0, preloaded)
		for i := range preloaded {
			batch = append(batch, engines.Mutation{Op: engines.OpPut, Key: key(i), Value: value, LSN: uint64(i + 1)})
		}
		if err := c.Apply(ctx, batch); err != nil {
			b.Fatal(err)
		}
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
				run(b, callers, func(i int) error {
					row, err := c.Get(ctx, key(i%preloaded))
					if err == nil && len(row.Value) != len(value) {
						err = fmt.Errorf("get: %d-byte value", len(row.Value))
					}
					return err
				})
			})
		}
	})
	b.Run("apply", func(b *testing.B) {
		c := startEnginePlugin(b, "rowfile", map[string]string{"sync": "batch", "index": "hash"})
		var lsn atomic.Uint64
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
				run(b, callers, func(i int) error {
					// A key of its own: no two applies of one key at once.
					return c.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: key(i), Value: value, LSN: lsn.Add(1)}})
				})
			})
		}
	})
}

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// BenchmarkRouterVsDev measures put and get throughput with 64 concurrent
// gRPC clients (over 4 connections) against real processes: `plugdb dev`
// (2 partitions in one process) and the cluster (a router, 2 partitions ×
// leader and follower, ZooKeeper), both on rowfile plugins with sync: batch.
// Each sub-benchmark starts its system once; run it with a fixed count, e.g.
// -benchtime 20000x.
func BenchmarkRouterVsDev(b *testing.B) {
	for _, system := range []string{"dev", "cluster"} {
		for _, op := range []string{"put", "get"} {
			b.Run(fmt.Sprintf("%s/%s/clients=64", system, op), func(b *testing.B) {
				var addr string
				if system == "dev" {
					addr = startDev(b, b.TempDir(), nil).grpcAddr
				} else {
					addr = newTestCluster(b, 2, 2).grpc
				}
				benchKV(b, addr, op)
			})
		}
	}
}

func benchKV(b *testing.B, addr, op string) {
	ctx := context.Background()
	var clients []plugdbv1.KVClient
	for range 4 {
		clients = append(clients, plugdbv1.NewKVClient(dial(b, addr)))
	}
	const keys = 10000
	key := func(i int) []byte { return fmt.Appendf(nil, "key%013d", i) } // 16 bytes
	value := make([]byte, 100)
	var ops []*plugdbv1.BatchOp
	for i := range keys {
		ops = append(ops, &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_PUT, Key: key(i), Value: value})
		if len(ops) == 1000 {
			if _, err := clients[0].Batch(ctx, &plugdbv1.BatchRequest{Ops: ops}); err != nil {
				b.Fatal(err)
			}
			ops = nil
		}
	}
	const workers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			kv := clients[w%len(clients)]
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for next.Add(1) <= int64(b.N) {
				k := key(rnd.IntN(keys))
				var err error
				if op == "get" {
					_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: k})
				} else {
					_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: k, Value: value})
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

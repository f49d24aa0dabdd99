package api_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/core/local"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/engines/rowfile"
	"github.com/plugdb/plugdb/plugins"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// TestMain lets the test binary serve the bundled engines as plugins
// (`api.test plugin serve engine NAME`), as the plugdb binary does.
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "plugin" && os.Args[2] == "serve" {
		plugins.Serve(plugins.ServeConfig{Engine: benchEngines[os.Args[4]]})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var benchEngines = map[string]engines.OpenFunc{"memory": memory.Open, "rowfile": rowfile.Open}

// BenchmarkDev measures what `plugdb dev` serves end to end: 64 concurrent gRPC
// clients (over 4 connections) doing point gets or puts against 2 rowfile
// partitions (sync: batch), with the engine in process or as a plugin process.
func BenchmarkDev(b *testing.B) {
	for _, mode := range []string{loader.ModeInProcess, loader.ModeProcess} {
		for _, op := range []string{"get", "put"} {
			b.Run(fmt.Sprintf("%s/%s/clients=64", mode, op), func(b *testing.B) { benchDev(b, mode, op) })
		}
	}
}

func benchDev(b *testing.B, mode, op string) {
	ctx := context.Background()
	l := &loader.Loader{Self: os.Args[0], Engines: benchEngines}
	block := loader.Block{Plugin: "rowfile", Mode: mode, Options: map[string]string{"sync": "batch", "compact_interval": "0"}}
	backend, err := local.Open(ctx, l, block, b.TempDir(), 2, local.Info{})
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	plugdbv1.RegisterKVServer(srv, api.NewServer(backend))
	go srv.Serve(lis)
	defer srv.Stop()
	var clients []plugdbv1.KVClient
	for i := 0; i < 4; i++ {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		clients = append(clients, plugdbv1.NewKVClient(conn))
	}
	const keys = 10000
	key := func(i int) []byte { return fmt.Appendf(nil, "key%013d", i) } // 16 bytes
	value := make([]byte, 100)
	var ops []*plugdbv1.BatchOp
	for i := 0; i < keys; i++ {
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
	for w := 0; w < workers; w++ {
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

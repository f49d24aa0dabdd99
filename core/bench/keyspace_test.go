package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// keyspaceKV is a fakeKV that records the keyspace of every request, by method.
type keyspaceKV struct {
	*fakeKV
	mu   sync.Mutex
	seen map[string]map[string]int // method -> keyspace -> calls
}

func (k *keyspaceKV) saw(method, keyspace string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen[method] == nil {
		k.seen[method] = map[string]int{}
	}
	k.seen[method][keyspace]++
}

func (k *keyspaceKV) Get(ctx context.Context, in *plugdbv1.GetRequest, opts ...grpc.CallOption) (*plugdbv1.GetResponse, error) {
	k.saw("get", in.GetKeyspace())
	return k.fakeKV.Get(ctx, in, opts...)
}

func (k *keyspaceKV) Put(ctx context.Context, in *plugdbv1.PutRequest, opts ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
	k.saw("put", in.GetKeyspace())
	return k.fakeKV.Put(ctx, in, opts...)
}

func (k *keyspaceKV) Batch(ctx context.Context, in *plugdbv1.BatchRequest, opts ...grpc.CallOption) (*plugdbv1.BatchResponse, error) {
	k.saw("batch", in.GetKeyspace())
	return k.fakeKV.Batch(ctx, in, opts...)
}

func (k *keyspaceKV) Scan(ctx context.Context, in *plugdbv1.ScanRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[plugdbv1.KeyValue], error) {
	k.saw("scan", in.GetKeyspace())
	return k.fakeKV.Scan(ctx, in, opts...)
}

func (k *keyspaceKV) Status(ctx context.Context, in *plugdbv1.StatusRequest, opts ...grpc.CallOption) (*plugdbv1.StatusResponse, error) {
	k.saw("status", in.GetKeyspace())
	return k.fakeKV.Status(ctx, in, opts...)
}

// TestRunKeyspace: Options.Keyspace is on every request of the run — the load
// (puts and batches), the warm-up, the workload's reads, updates, inserts and
// scans, the lag samples and the final status.
func TestRunKeyspace(t *testing.T) {
	for _, tc := range []struct {
		workload  string
		loadBatch int
		methods   []string
	}{
		{"A", 1, []string{"put", "get", "status"}},
		{"E", 10, []string{"batch", "put", "get", "scan", "status"}},
		{"F", 0, []string{"put", "get", "status"}},
	} {
		t.Run(fmt.Sprintf("%s batch %d", tc.workload, tc.loadBatch), func(t *testing.T) {
			kv := &keyspaceKV{fakeKV: newFakeKV(), seen: map[string]map[string]int{}}
			kv.lag = 1 // followers: the lag is sampled while the workload runs
			w := mustWorkload(t, tc.workload)
			row := Run(context.Background(), clientsOf(kv, 2), Options{
				Workload: w, Distribution: "uniform", Keys: 100, ValueSize: 8, Clients: 2, Ops: 300, Seed: 1,
				Warmup: 50 * time.Millisecond, LoadBatch: tc.loadBatch, Duration: 300 * time.Millisecond, Keyspace: "events",
			})
			if row.Error != "" {
				t.Fatal(row.Error)
			}
			kv.mu.Lock()
			defer kv.mu.Unlock()
			for _, m := range tc.methods {
				if kv.seen[m]["events"] == 0 {
					t.Errorf("no %s request in keyspace events: %v", m, kv.seen)
				}
			}
			for m, byKeyspace := range kv.seen {
				for ks, n := range byKeyspace {
					if ks != "events" {
						t.Errorf("%d %s requests in keyspace %q", n, m, ks)
					}
				}
			}
		})
	}
}

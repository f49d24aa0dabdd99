package bench

import (
	"context"
	"io"
	"math"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// fakeKV is an in-memory plugdbv1.KVClient for the runner's unit tests: two
// partitions split at "user8", counting the calls it gets.
type fakeKV struct {
	plugdbv1.KVClient // the methods the runner must not call panic

	mu        sync.Mutex
	rows      map[string][]byte
	calls     map[string]int
	reads     map[string]int // gets per key
	maxLimit  int64
	failEvery int // every failEvery-th put fails (0: none)
	puts      int
	lag       uint64 // a follower's lag in statements, if > 0
}

func newFakeKV() *fakeKV {
	return &fakeKV{rows: map[string][]byte{}, calls: map[string]int{}, reads: map[string]int{}}
}

func (f *fakeKV) Get(_ context.Context, in *plugdbv1.GetRequest, _ ...grpc.CallOption) (*plugdbv1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["get"]++
	f.reads[string(in.Key)]++
	v, ok := f.rows[string(in.Key)]
	if !ok {
		return nil, status.Error(codes.NotFound, "not found")
	}
	return &plugdbv1.GetResponse{Key: in.Key, Value: v}, nil
}

func (f *fakeKV) Put(_ context.Context, in *plugdbv1.PutRequest, _ ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["put"]++
	f.puts++
	if f.failEvery > 0 && f.puts%f.failEvery == 0 {
		return nil, status.Error(codes.Unavailable, "injected failure")
	}
	f.rows[string(in.Key)] = append([]byte(nil), in.Value...)
	return &plugdbv1.WriteResponse{}, nil
}

func (f *fakeKV) Batch(_ context.Context, in *plugdbv1.BatchRequest, _ ...grpc.CallOption) (*plugdbv1.BatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["batch"]++
	for _, op := range in.Ops {
		if op.Op != plugdbv1.BatchOp_OP_PUT {
			return nil, status.Error(codes.InvalidArgument, "only puts expected")
		}
		f.rows[string(op.Key)] = append([]byte(nil), op.Value...)
	}
	return &plugdbv1.BatchResponse{Lsns: make([]uint64, len(in.Ops))}, nil
}

func (f *fakeKV) Scan(_ context.Context, in *plugdbv1.ScanRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[plugdbv1.KeyValue], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["scan"]++
	f.maxLimit = max(f.maxLimit, in.Limit)
	if _, ok := f.rows[string(in.Start)]; !ok {
		return nil, status.Error(codes.InvalidArgument, "scan starts at a key never written")
	}
	var keys []string
	for k := range f.rows {
		if k >= string(in.Start) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	keys = keys[:min(int64(len(keys)), in.Limit)]
	return &fakeStream{keys: keys}, nil
}

func (f *fakeKV) Status(context.Context, *plugdbv1.StatusRequest, ...grpc.CallOption) (*plugdbv1.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var low, high int64
	for k := range f.rows {
		if k < "user8" {
			low++
		} else {
			high++
		}
	}
	st := &plugdbv1.StatusResponse{}
	for p, n := range []int64{low, high} {
		ps := &plugdbv1.PartitionStatus{Partition: uint32(p), Replicas: []*plugdbv1.Replica{
			{Partition: uint32(p), Role: "leader", Keys: n, Bytes: n * 1000},
		}}
		if f.lag > 0 {
			ps.Replicas = append(ps.Replicas, &plugdbv1.Replica{Partition: uint32(p), Role: "follower", LagStatements: f.lag * uint64(p+1), LagMs: 7})
		}
		st.Partitions = append(st.Partitions, ps)
	}
	return st, nil
}

type fakeStream struct {
	grpc.ClientStream
	keys []string
}

func (s *fakeStream) Recv() (*plugdbv1.KeyValue, error) {
	if len(s.keys) == 0 {
		return nil, io.EOF
	}
	k := s.keys[0]
	s.keys = s.keys[1:]
	return &plugdbv1.KeyValue{Key: []byte(k)}, nil
}

func clientsOf(kv plugdbv1.KVClient, n int) []plugdbv1.KVClient {
	out := make([]plugdbv1.KVClient, n)
	for i := range out {
		out[i] = kv
	}
	return out
}

func TestRunMixes(t *testing.T) {
	const keys, ops, clients, valueSize = 500, 6000, 4, 10
	for _, name := range WorkloadNames() {
		t.Run(name, func(t *testing.T) {
			w, err := ParseWorkload(name)
			if err != nil {
				t.Fatal(err)
			}
			kv := newFakeKV()
			row := Run(context.Background(), clientsOf(kv, clients), Options{
				Workload: w, Distribution: "uniform", Keys: keys, ValueSize: valueSize, Clients: clients, Ops: ops, Seed: 1,
			})
			if row.Error != "" {
				t.Fatal(row.Error)
			}
			if row.LoadOps != keys || row.Operations != ops || row.Errors != 0 {
				t.Fatalf("load ops %d (want %d), operations %d (want %d), errors %d", row.LoadOps, keys, row.Operations, ops, row.Errors)
			}
			if row.ThroughputOps <= 0 || row.LoadThroughputOps <= 0 || row.P50US <= 0 || row.P999US < row.P50US {
				t.Errorf("throughput %v, load %v, p50 %v, p999 %v", row.ThroughputOps, row.LoadThroughputOps, row.P50US, row.P999US)
			}
			var total int64
			for _, s := range w.Mix {
				got := row.Ops[s.Op].Count
				total += got
				if share := float64(got) / ops; math.Abs(share-s.Share) > 0.03 {
					t.Errorf("%s: %d of %d operations (%.3f), want a share of %.2f", s.Op, got, ops, share, s.Share)
				}
			}
			if total != ops || len(row.Ops) != len(w.Mix) {
				t.Errorf("ops per type %v: want only %v, summing to %d", row.Ops, w.Ops(), ops)
			}
			// The calls the system got match the operations.
			gets := row.Ops[OpRead].Count + row.Ops[OpReadModifyWrite].Count
			puts := keys + row.Ops[OpUpdate].Count + row.Ops[OpInsert].Count + row.Ops[OpReadModifyWrite].Count
			if kv.calls["get"] != int(gets) || kv.calls["put"] != int(puts) || kv.calls["scan"] != int(row.Ops[OpScan].Count) {
				t.Errorf("calls %v: want %d gets, %d puts, %d scans", kv.calls, gets, puts, row.Ops[OpScan].Count)
			}
			if row.Ops[OpScan].Count > 0 && (kv.maxLimit < MaxScanLength-10 || kv.maxLimit > MaxScanLength) {
				t.Errorf("longest scan limit %d, want up to %d", kv.maxLimit, MaxScanLength)
			}
			live := int64(keys) + row.Ops[OpInsert].Count
			if row.LogicalBytes != live*(KeyLen+valueSize) || int64(len(kv.rows)) != live {
				t.Errorf("logical bytes %d for %d live rows (store holds %d)", row.LogicalBytes, live, len(kv.rows))
			}
			if row.PartitionKeys[0]+row.PartitionKeys[1] != live || row.BytesOnDisk != live*1000 {
				t.Errorf("partition keys %v, bytes %d: want %d keys", row.PartitionKeys, row.BytesOnDisk, live)
			}
			if row.PartitionSkew < 1 || row.PartitionSkew > 1.2 || row.ReplicationLag != nil {
				t.Errorf("skew %v (want about 1), lag %v (want none: no followers)", row.PartitionSkew, row.ReplicationLag)
			}
		})
	}
}

// With LoadBatch the load inserts every key once, in Batch calls of at most
// LoadBatch keys (the last one short), and no Put.
func TestRunLoadsInBatches(t *testing.T) {
	const keys, batch = 1005, 100
	kv := newFakeKV()
	row := Run(context.Background(), clientsOf(kv, 3), Options{
		Workload: mustWorkload(t, "C"), Distribution: "uniform", Keys: keys, ValueSize: 8, Clients: 3, Ops: 10, LoadBatch: batch, Seed: 1,
	})
	if row.Error != "" {
		t.Fatal(row.Error)
	}
	if row.LoadOps != keys || kv.calls["batch"] != (keys+batch-1)/batch || kv.calls["put"] != 0 {
		t.Errorf("load ops %d, calls %v: want %d keys in %d batches and no put", row.LoadOps, kv.calls, keys, (keys+batch-1)/batch)
	}
	for i := range keys {
		if v := kv.rows[string(Key(uint64(i)))]; len(v) != 8 {
			t.Fatalf("key %d: value %q after the load", i, v)
		}
	}
}

// A warm-up reads loaded keys before the workload and is not measured: a
// load workload's figures hold only its inserts.
func TestRunWarmsUpUnmeasured(t *testing.T) {
	kv := newFakeKV()
	var mu sync.Mutex
	var phases []string
	row := Run(context.Background(), clientsOf(kv, 2), Options{
		Workload: mustWorkload(t, "load"), Distribution: "uniform", Keys: 100, ValueSize: 8, Clients: 2, Ops: 50,
		Warmup: 200 * time.Millisecond, Seed: 1,
		Progress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			if p.Final {
				phases = append(phases, p.Phase)
			}
		},
	})
	if row.Error != "" {
		t.Fatal(row.Error)
	}
	if kv.calls["get"] == 0 {
		t.Error("no read during the warm-up")
	}
	if row.Operations != 50 || len(row.Ops) != 1 || row.Ops[OpInsert].Count != 50 {
		t.Errorf("operations %d, ops %v: want only the 50 inserts measured", row.Operations, row.Ops)
	}
	if want := []string{"load", PhaseWarmup, "workload"}; !slices.Equal(phases, want) {
		t.Errorf("phases ended %v, want %v", phases, want)
	}
}

func TestRunCountsErrorsPerOpType(t *testing.T) {
	kv := newFakeKV()
	w, _ := ParseWorkload("a")
	kv.failEvery = 0
	o := Options{Workload: w, Distribution: "uniform", Keys: 200, ValueSize: 4, Clients: 2, Ops: 2000}
	// Fail every 10th put once the load is done.
	o.Progress = func(p Progress) {
		if p.Phase == "load" && p.Final {
			kv.mu.Lock()
			kv.failEvery, kv.puts = 10, 0
			kv.mu.Unlock()
		}
	}
	row := Run(context.Background(), clientsOf(kv, 2), o)
	if row.Error != "" {
		t.Fatal(row.Error)
	}
	up := row.Ops[OpUpdate]
	if up.Errors == 0 || math.Abs(float64(up.Errors)/float64(up.Errors+up.Count)-0.1) > 0.02 {
		t.Errorf("update errors %d of %d: want about 10%%", up.Errors, up.Errors+up.Count)
	}
	if row.Ops[OpRead].Errors != 0 || row.Errors != up.Errors || row.Operations+row.Errors != 2000 {
		t.Errorf("read errors %d, errors %d, operations %d: want errors only in updates", row.Ops[OpRead].Errors, row.Errors, row.Operations)
	}
}

func TestRunFailedLoadIsTheRowsError(t *testing.T) {
	kv := newFakeKV()
	kv.failEvery = 50
	w, _ := ParseWorkload("C")
	row := Run(context.Background(), clientsOf(kv, 2), Options{Workload: w, Distribution: "uniform", Keys: 200, Clients: 2, Ops: 10})
	if row.Error == "" || row.Operations != 0 {
		t.Fatalf("error %q, operations %d: want the load's failure and no workload", row.Error, row.Operations)
	}
	t.Log(row.Error)
}

func TestRunBoundedByDuration(t *testing.T) {
	w, _ := ParseWorkload("B")
	began := time.Now()
	row := Run(context.Background(), clientsOf(newFakeKV(), 2), Options{
		Workload: w, Distribution: "zipfian", Keys: 100, Clients: 2, Duration: 300 * time.Millisecond,
	})
	if row.Error != "" {
		t.Fatal(row.Error)
	}
	if took := time.Since(began); took > 5*time.Second || row.DurationS < 0.3 || row.DurationS > 2 || row.Operations == 0 {
		t.Errorf("took %v, duration %.2fs, %d operations: want about 0.3s of work", took, row.DurationS, row.Operations)
	}
}

func TestRunZipfianSkewsReads(t *testing.T) {
	w, _ := ParseWorkload("C")
	share := func(dist string) float64 {
		kv := newFakeKV()
		row := Run(context.Background(), clientsOf(kv, 2), Options{Workload: w, Distribution: dist, Keys: 1000, Clients: 2, Ops: 20000})
		if row.Error != "" {
			t.Fatal(row.Error)
		}
		top := 0
		for _, n := range kv.reads {
			top = max(top, n)
		}
		return float64(top) / 20000
	}
	if u, z := share("uniform"), share("zipfian"); u > 0.01 || z < 0.1 {
		t.Errorf("hottest key's share of reads: uniform %.4f (want < 0.01), zipfian %.4f (want about 0.13)", u, z)
	}
}

func TestRunSamplesFollowerLag(t *testing.T) {
	kv := newFakeKV()
	kv.lag = 3
	w, _ := ParseWorkload("A")
	row := Run(context.Background(), clientsOf(kv, 1), Options{Workload: w, Distribution: "uniform", Keys: 10, Clients: 1, Duration: 350 * time.Millisecond})
	if row.ReplicationLag == nil || row.ReplicationLag.Statements != 6 || row.ReplicationLag.MS != 7 {
		t.Fatalf("lag %+v: want the largest follower's, 6 statements and 7 ms", row.ReplicationLag)
	}
}

func TestParseWorkloadAndDistribution(t *testing.T) {
	for _, name := range []string{"a", "A", "e", "LOAD", "Load"} {
		if _, err := ParseWorkload(name); err != nil {
			t.Errorf("ParseWorkload(%q): %v", name, err)
		}
	}
	_, err := ParseWorkload("D")
	if err == nil || !contains(err.Error(), "--workload \"D\"", "A, B, C, E, F, load") {
		t.Errorf("ParseWorkload(D): %v: want the allowed values", err)
	}
	if d, err := ParseDistribution("Zipfian"); err != nil || d != "zipfian" {
		t.Errorf("ParseDistribution(Zipfian) = %q, %v", d, err)
	}
	if _, err := ParseDistribution("latest"); err == nil || !contains(err.Error(), "uniform, zipfian") {
		t.Errorf("ParseDistribution(latest): %v: want the allowed values", err)
	}
	if got := fmtOps(mustWorkload(t, "F").Ops()); got != "read,read_modify_write" {
		t.Errorf("F's ops %s", got)
	}
}

func mustWorkload(t *testing.T, name string) Workload {
	w, err := ParseWorkload(name)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func fmtOps(ops []string) string {
	s := ""
	for i, op := range ops {
		if i > 0 {
			s += ","
		}
		s += op
	}
	return s
}

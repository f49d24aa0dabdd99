package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// reshardCluster is a router and one replica per partition on the shared
// ZooKeeper, with a node for a partition the layout does not have yet.
type reshardCluster struct {
	cfg   string
	grpc  string
	procs map[string]*proc
	addrs map[int]string
}

func (c *reshardCluster) logs() string {
	var b strings.Builder
	for name, p := range c.procs {
		fmt.Fprintf(&b, "--- %s:\n%s", name, p.out.String())
	}
	return b.String()
}

func startReshardCluster(t *testing.T, partitions, nodes int) *reshardCluster {
	zk := zktest.Shared(t)
	dir := t.TempDir()
	c := &reshardCluster{grpc: testutil.FreeAddr(t), procs: map[string]*proc{}, addrs: map[int]string{}}
	servers, _ := json.Marshal(zk.Servers())
	yaml := fmt.Sprintf(`cluster: reshard
partitions: %d
zookeeper: {servers: %s, session_timeout: 2s, root: /e2e-%d}
engine: {plugin: rowfile, options: {sync: batch}}
partitioner: {plugin: hash, mode: inprocess}
replicator: {plugin: statement, options: {ack: semi-sync, min_insync: "1"}}
router: {grpc: %q, http: %q}
nodes: {replicas: 1}
`, partitions, servers, clusterRoots.Add(1), c.grpc, testutil.FreeAddr(t))
	c.cfg = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(c.cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c.procs["router"] = startProc(t, "router", "router", "--config", c.cfg)
	for p := range nodes {
		c.addrs[p] = testutil.FreeAddr(t)
		c.procs[fmt.Sprint("node ", p)] = startProc(t, fmt.Sprint("node ", p), "node", "--config", c.cfg, "--partition", fmt.Sprint(p),
			"--addr", c.addrs[p], "--data", filepath.Join(dir, fmt.Sprint("p", p)))
	}
	kv := plugdbv1.NewKVClient(dial(t, c.grpc))
	ready := testutil.Eventually(t.Context(), 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := kv.Status(ctx, &plugdbv1.StatusRequest{})
		if err != nil || len(st.GetPartitions()) != partitions {
			return false
		}
		for _, p := range st.GetPartitions() {
			if len(p.GetReplicas()) == 0 || p.GetReplicas()[0].GetRole() != "leader" {
				return false
			}
		}
		return true
	})
	if !ready {
		t.Fatalf("no leader in every partition after 60s\n%s", c.logs())
	}
	return c
}

// TestReshardUnderLoad moves a running cluster from 2 to 3 hash partitions
// while writers and readers run through the router: every write is
// acknowledged, no request fails (they may wait), every acknowledged value
// is read back after the move, every partition holds keys, the old owners
// hold only their own, and an old owner refuses a key that moved.
func TestReshardUnderLoad(t *testing.T) {
	t.Parallel()
	c := startReshardCluster(t, 2, 3)
	kv := plugdbv1.NewKVClient(dial(t, c.grpc))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const loaded = 3000
	for i := range loaded {
		if _, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte(fmt.Sprintf("k%05d", i)), Value: []byte("v0")}); err != nil {
			t.Fatalf("load: %v", err)
		}
	}

	// Writers overwrite their own keys with increasing values; readers read
	// the loaded keys. Bounded in count and by stop.
	const writers, readers, perWriter = 8, 4, 100000
	stop := make(chan struct{})
	var failed atomic.Int64
	var firstErr atomic.Value
	acked := make([]map[string]int, writers)
	var wg sync.WaitGroup
	for w := range writers {
		acked[w] = map[string]int{}
		wg.Go(func() {
			for i := 1; i <= perWriter; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k%05d", (w*373+i*7)%loaded)
				if w%2 == 1 {
					key = fmt.Sprintf("w%d-%04d", w, i%500) // keys of their own, some new
				}
				wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := kv.Put(wctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(fmt.Sprintf("w%d-%d", w, i))})
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("put %s: %v", key, err))
					continue
				}
				acked[w][key] = i
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			for i := 0; i < perWriter; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k%05d", (r*991+i*13)%loaded)
				rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := kv.Get(rctx, &plugdbv1.GetRequest{Key: []byte(key)})
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("get %s: %v", key, err))
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // load pacing: the move starts with writers running
	res := runPlugdb(t, 2*time.Minute, "reshard", "--config", c.cfg, "--partitions", "3")
	time.Sleep(500 * time.Millisecond) // load pacing: writers run on the new layout too
	close(stop)
	wg.Wait()
	if res.code != 0 || !strings.Contains(res.stdout, "now has 3 partitions placed by hash (layout v2)") {
		t.Fatalf("plugdb reshard:\n%s\n%s", res, c.logs())
	}
	t.Logf("plugdb reshard:\n%s", res.stdout)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed during the move; first: %v", n, firstErr.Load())
	}

	// Every acknowledged write reads back with its value (or a later one of
	// the same writer: a key of the even writers is shared).
	want := map[string]string{}
	for w := range writers {
		for k, i := range acked[w] {
			if w%2 == 1 {
				want[k] = fmt.Sprintf("w%d-%d", w, i)
			}
		}
	}
	for k, v := range want {
		got, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(k)})
		if err != nil || string(got.GetValue()) != v {
			t.Fatalf("after the move, %s = %q, %v; want %q", k, got.GetValue(), err, v)
		}
	}
	for i := range loaded {
		if _, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(fmt.Sprintf("k%05d", i))}); err != nil {
			t.Fatalf("after the move, k%05d: %v", i, err)
		}
	}
	st, err := kv.Status(ctx, &plugdbv1.StatusRequest{})
	if err != nil || len(st.GetPartitions()) != 3 {
		t.Fatalf("status after the move: %d partitions, %v", len(st.GetPartitions()), err)
	}
	var total int64
	for _, p := range st.GetPartitions() {
		keys := p.GetReplicas()[0].GetKeys()
		if keys == 0 {
			t.Errorf("partition %d holds no key after the move", p.GetPartition())
		}
		total += keys
	}
	if min := int64(loaded + len(want)); total < min || total > min+int64(writers) {
		t.Errorf("the partitions hold %d keys in all, want about %d (old copies pruned)", total, min)
	}
	// An old owner refuses a key that moved to the new partition.
	for i := range loaded {
		key := []byte(fmt.Sprintf("k%05d", i))
		wp, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: key, Value: []byte("x")})
		if err != nil || wp.GetPartition() != 2 {
			continue
		}
		for p := range 2 {
			node := plugdbv1.NewKVClient(dial(t, c.addrs[p]))
			_, err := node.Get(ctx, &plugdbv1.GetRequest{Key: key})
			if owner, ok := api.WrongPartition(err); !ok || owner != 2 || status.Code(err) != codes.FailedPrecondition {
				t.Errorf("node of partition %d, get %s (moved to 2): %v", p, key, err)
			}
		}
		break
	}
	if t.Failed() {
		t.Logf("logs:\n%s", c.logs())
	}
}

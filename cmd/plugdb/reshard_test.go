package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/zkserver"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/partitioners"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// reshardCluster is a router and one replica per partition on the shared
// ZooKeeper, with a node for a partition the layout does not have yet.
type reshardCluster struct {
	cfg   string
	grpc  string
	procs map[string]*proc
	addrs map[int]string
	// configFor writes the cluster's config with another ZooKeeper address
	// (a fault proxy's) and returns its path.
	configFor func(name, zkAddr string) string
}

func (c *reshardCluster) logs() string {
	var b strings.Builder
	for name, p := range c.procs {
		fmt.Fprintf(&b, "--- %s:\n%s", name, p.out.String())
	}
	return b.String()
}

func startReshardCluster(t *testing.T, partitions, nodes int) *reshardCluster {
	return startReshardClusterWith(t, reshardSetup{partitions: partitions, nodes: nodes})
}

// reshardSetup is the shape of a reshardCluster.
type reshardSetup struct {
	partitions, nodes int
	// zk is the cluster's ZooKeeper; nil: the package's shared one.
	zk *zkserver.Ensemble
	// nodeZK gives a node its own ZooKeeper address (a fault proxy's); the
	// others use zk's.
	nodeZK map[int]string
}

func startReshardClusterWith(t *testing.T, s reshardSetup) *reshardCluster {
	zk := s.zk
	if zk == nil {
		zk = zktest.Shared(t)
	}
	dir := t.TempDir()
	c := &reshardCluster{grpc: testutil.FreeAddr(t), procs: map[string]*proc{}, addrs: map[int]string{}}
	root, http := clusterRoots.Add(1), testutil.FreeAddr(t)
	// config writes the cluster's config for ZooKeeper servers to path.
	config := func(path string, servers []string) string {
		js, _ := json.Marshal(servers)
		yaml := fmt.Sprintf(`cluster: reshard
partitions: %d
zookeeper: {servers: %s, session_timeout: 2s, root: /e2e-%d}
engine: {plugin: rowfile, options: {sync: batch}}
partitioner: {plugin: hash, mode: inprocess}
replicator: {plugin: statement, options: {ack: semi-sync, min_insync: "1"}}
router: {grpc: %q, http: %q}
nodes: {replicas: 1}
`, s.partitions, js, root, c.grpc, http)
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	c.cfg = config(filepath.Join(dir, "cluster.yaml"), zk.Servers())
	c.configFor = func(name, zkAddr string) string {
		return config(filepath.Join(dir, name+".yaml"), []string{zkAddr})
	}
	c.procs["router"] = startProc(t, "router", "router", "--config", c.cfg)
	for p := range s.nodes {
		c.addrs[p] = testutil.FreeAddr(t)
		cfg := c.cfg
		if addr, ok := s.nodeZK[p]; ok {
			cfg = c.configFor(fmt.Sprint("node", p), addr)
		}
		args := []string{"node", "--config", cfg, "--partition", fmt.Sprint(p), "--addr", c.addrs[p], "--data", filepath.Join(dir, fmt.Sprint("p", p))}
		if p >= s.partitions {
			args = append(args, "--new-partition") // joins empty: the moves add it
		}
		c.procs[fmt.Sprint("node ", p)] = startProc(t, fmt.Sprint("node ", p), args...)
	}
	kv := plugdbv1.NewKVClient(dial(t, c.grpc))
	ready := testutil.Eventually(t.Context(), 60*time.Second, func() bool {
		return everyPartitionLed(kv, map[string]int{"": s.partitions})
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
	runReaders(&wg, ctx, kv, readers, perWriter, loaded, "k%05d", stop, &failed, &firstErr, nil)
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
	// A scan through the router sees every key once, on the new layout.
	stream, err := kv.Scan(ctx, &plugdbv1.ScanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	scanned := 0
	for {
		if _, err := stream.Recv(); err != nil {
			if err != io.EOF {
				t.Fatalf("scan after the move: %v", err)
			}
			break
		}
		scanned++
	}
	if scanned != loaded+len(want) {
		t.Errorf("a scan after the move reads %d rows, want %d", scanned, loaded+len(want))
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

// TestReshardLinearizable checks with porcupine that a history of puts,
// strong gets, creates and deletes through the router, on 12 keys (most of
// which move) from 8 clients, stays linearizable across a move from 2 hash
// partitions to 3 ring partitions.
func TestReshardLinearizable(t *testing.T) {
	t.Parallel()
	c := startReshardCluster(t, 2, 3)
	kv := plugdbv1.NewKVClient(dial(t, c.grpc))
	var keys []string
	for i := range 12 {
		keys = append(keys, fmt.Sprintf("lin-%02d", i))
	}
	h := &linHistory{start: time.Now()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := range 8 {
		wg.Go(func() { runLinClient(kv, h, id, keys, stop) })
	}
	time.Sleep(time.Second) // the history's planned shape: a second before the move
	res := runPlugdb(t, 2*time.Minute, "reshard", "--config", c.cfg, "--partitions", "3", "--partitioner", "ring", "--option", "vnodes=64")
	time.Sleep(time.Second) // and a second after it
	close(stop)
	wg.Wait()
	if res.code != 0 {
		t.Fatalf("plugdb reshard:\n%s\n%s", res, c.logs())
	}
	ops := h.finish()
	t.Logf("%d operations by 8 clients on %d keys across the move (%d with unknown outcome): %v", len(ops), len(keys), len(h.open), h.summary())
	if len(h.open) > 0 {
		t.Errorf("%d operations had no answer: a move must only make requests wait", len(h.open))
	}
	checkHistory(t, "reshard", ops, c.logs)
}

// TestReshardSeries is the measured series of docs/resharding.md: 2 → 3 → 4
// hash partitions, then hash → range, then back to 3 hash partitions
// (retiring one), on 100k keys with 16 writers and 8
// readers running through the router. It asserts what must hold (no request
// fails, every acknowledged write reads back, the keys moved are the ones the
// partitioners place elsewhere) and logs the figures: rows moved against the
// prediction, copy rate, the fence's length, and the writes' latency during
// each move (max and p99). Long: make test-long.
func TestReshardSeries(t *testing.T) {
	requireLong(t)
	c := startReshardCluster(t, 2, 4)
	kv := plugdbv1.NewKVClient(dial(t, c.grpc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const keys = 100_000
	loadKeys(t, ctx, kv, keys)
	splits := map[string]string{"splits": "k025000,k050000,k075000"}
	moves := []struct {
		name     string
		args     []string
		from, to coord.Meta
	}{
		{"hash 2→3", []string{"--partitions", "3"}, metaOf(2, "hash", nil), metaOf(3, "hash", nil)},
		{"hash 3→4", []string{"--partitions", "4"}, metaOf(3, "hash", nil), metaOf(4, "hash", nil)},
		{"hash→range 4", []string{"--partitions", "4", "--partitioner", "range", "--option", "splits=k025000,k050000,k075000"},
			metaOf(4, "hash", nil), metaOf(4, "range", splits)},
		{"range 4→hash 3 (fewer)", []string{"--partitions", "3", "--partitioner", "hash"}, metaOf(4, "range", splits), metaOf(3, "hash", nil)},
	}
	loadedKeys := make([][]byte, keys)
	for i := range loadedKeys {
		loadedKeys[i] = []byte(fmt.Sprintf("k%06d", i))
	}
	acked := make([]map[string]int, 16)
	for w := range acked {
		acked[w] = map[string]int{}
	}
	for _, mv := range moves {
		predicted := predictMoved(t, mv.from, mv.to, loadedKeys)
		stop := make(chan struct{})
		var failed atomic.Int64
		var firstErr atomic.Value
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := 1; i <= 1_000_000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("e%02d-%07d", w, i) // new keys
					if w%2 == 1 {
						key = fmt.Sprintf("k%06d", (w*keys/16+i)%keys) // a writer's own stretch
					}
					start := time.Now()
					wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					_, err := kv.Put(wctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(fmt.Sprintf("w%d-%d", w, i))})
					cancel()
					d := time.Since(start)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("put %s: %v", key, err))
						continue
					}
					if w%2 == 1 {
						acked[w][key] = i
					}
				}
			})
		}
		for r := range 8 {
			wg.Go(func() {
				for i := 0; i < 1_000_000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					_, err := kv.Get(rctx, &plugdbv1.GetRequest{Key: []byte(fmt.Sprintf("k%06d", (r*12289+i*31)%keys))})
					cancel()
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("get: %v", err))
					}
				}
			})
		}
		time.Sleep(time.Second) // load pacing: the move starts under load
		mu.Lock()
		lat = lat[:0] // latency during the move only
		mu.Unlock()
		res := runPlugdb(t, 5*time.Minute, append([]string{"reshard", "--config", c.cfg}, mv.args...)...)
		mu.Lock()
		during := slices.Clone(lat)
		mu.Unlock()
		close(stop)
		wg.Wait()
		if res.code != 0 {
			t.Fatalf("%s: plugdb reshard:\n%s\n%s", mv.name, res, c.logs())
		}
		slices.Sort(during)
		p99, worst := time.Duration(0), time.Duration(0)
		if len(during) > 0 {
			p99, worst = during[len(during)*99/100], during[len(during)-1]
		}
		t.Logf("%s: %s\n  the partitioners predict %.1f%% of the loaded keys move\n  writes during the move: %d, p99 %v, max %v; failed requests %d",
			mv.name, strings.TrimSpace(res.stdout), 100*predicted, len(during), p99.Round(time.Millisecond), worst.Round(time.Millisecond), failed.Load())
		if n := failed.Load(); n > 0 {
			t.Errorf("%s: %d requests failed; first: %v", mv.name, n, firstErr.Load())
		}
	}
	lost := 0
	for w, m := range acked {
		for k, i := range m {
			got, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(k)})
			if err != nil || string(got.GetValue()) != fmt.Sprintf("w%d-%d", w, i) {
				lost++
				if lost < 5 {
					t.Errorf("%s: %q, %v; want w%d-%d", k, got.GetValue(), err, w, i)
				}
			}
		}
	}
	t.Logf("acknowledged writes lost: %d", lost)
}

func metaOf(partitions int, partitioner string, options map[string]string) coord.Meta {
	return coord.Meta{Partitions: partitions, Partitioner: coord.PluginMeta{Plugin: partitioner, Options: options}}
}

// predictMoved is the share of keys the partitioners of from and to place
// in different partitions (partitioners.Moved), with the bundled ones in
// process.
func predictMoved(t *testing.T, from, to coord.Meta, keys [][]byte) float64 {
	t.Helper()
	l, err := newLoader(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := openLayout(ctx, l, from, config.Plugin{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := openLayout(ctx, l, to, config.Plugin{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n, err := partitioners.Moved(ctx, a, b, keys)
	if err != nil {
		t.Fatal(err)
	}
	return float64(n) / float64(len(keys))
}

// loadKeys writes keys k000000… (n of them, value v0) through kv in batches.
func loadKeys(t *testing.T, ctx context.Context, kv plugdbv1.KVClient, n int) {
	t.Helper()
	for i := 0; i < n; i += 500 {
		var ops []*plugdbv1.BatchOp
		for j := i; j < min(i+500, n); j++ {
			ops = append(ops, &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte(fmt.Sprintf("k%06d", j)), Value: []byte("v0")})
		}
		if _, err := kv.Batch(ctx, &plugdbv1.BatchRequest{Ops: ops}); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
}

// runReaders starts readers (on wg) that get keys fmt.Sprintf(format, i) of
// the loaded ones through kv until stop, at most perReader each; a failed
// get counts in failed (the first kept in firstErr), an answered one in gets
// (if not nil).
func runReaders(wg *sync.WaitGroup, ctx context.Context, kv plugdbv1.KVClient, readers, perReader, loaded int, format string,
	stop <-chan struct{}, failed *atomic.Int64, firstErr *atomic.Value, gets *atomic.Int64) {
	for r := range readers {
		wg.Go(func() {
			for i := range perReader {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf(format, (r*991+i*13)%loaded)
				rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := kv.Get(rctx, &plugdbv1.GetRequest{Key: []byte(key)})
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("get %s: %v", key, err))
					continue
				}
				if gets != nil {
					gets.Add(1)
				}
			}
		})
	}
}

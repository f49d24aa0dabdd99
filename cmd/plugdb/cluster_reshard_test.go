package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// TestClusterReshard is issue 16's done criterion on the local cluster: on
// a fresh `plugdb cluster up` (2 partitions × 3 replicas, semi-sync), with
// writers and readers running through the router, `plugdb cluster reshard
// --partitions 3` starts partition 2's nodes and moves the keyspace: 3
// partitions serve, each holds keys, every acknowledged write reads back
// with its last acknowledged value, and no request failed. A move already
// recorded is refused with how to resume it; a second move (3 → 4) runs
// too. `plugdb cluster down` then
// stops every process, the new nodes too, and `plugdb cluster up` on the
// same folder starts them again.
func TestClusterReshard(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cluster")
	// Twelve node ports handed out: the six of cluster up and the six after
	// them, where the new nodes go (after the highest recorded node port), so
	// that no parallel test takes them meanwhile.
	nodes := testutil.FreePortRun(t, 12)
	grpcAddr := testutil.FreeAddr(t)
	cfg := writeClusterUpConfig(t, "e2e", nodes, grpcAddr)
	up := startClusterUp(t, dir, cfg, 1)

	// Refused before anything starts: fewer partitions than the config's,
	// the same layout.
	for _, c := range []struct{ n, want string }{
		{"1", "allowed values are 2..1024: keyspace default's config has 2 partitions, the fewest a local cluster runs"},
		{"2", "already has 2 partitions placed by hash: nothing to move"},
	} {
		res := runPlugdb(t, 30*time.Second, "cluster", "reshard", "--dir", dir, "--partitions", c.n)
		if res.code == 0 || !strings.Contains(res.stderr, c.want) {
			t.Errorf("cluster reshard --partitions %s: want an error saying %q\n%s", c.n, c.want, res)
		}
	}

	kv := plugdbv1.NewKVClient(dial(t, grpcAddr))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const loaded = 1000
	for i := range loaded {
		if _, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("v0")}); err != nil {
			t.Fatalf("load: %v\n%s", err, up.output())
		}
	}

	// Writers overwrite keys of their own with increasing values (some new
	// keys), readers read the loaded keys; bounded in count and by stop.
	const writers, readers, perWorker = 8, 4, 20000
	stop := make(chan struct{})
	var failed, puts, gets atomic.Int64
	var firstErr atomic.Value
	acked := make([]map[string]int, writers)
	var wg sync.WaitGroup
	for w := range writers {
		acked[w] = map[string]int{}
		wg.Go(func() {
			for i := 1; i <= perWorker; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k%05d", w+writers*(i%(loaded/writers)))
				if w%2 == 1 {
					key = fmt.Sprintf("w%d-%04d", w, i%300)
				}
				wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := kv.Put(wctx, &plugdbv1.PutRequest{Key: []byte(key), Value: fmt.Appendf(nil, "w%d-%d", w, i)})
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("put %s: %v", key, err))
					continue
				}
				puts.Add(1)
				acked[w][key] = i
			}
		})
	}
	runReaders(&wg, ctx, kv, readers, perWorker, loaded, "k%05d", stop, &failed, &firstErr, &gets)
	time.Sleep(500 * time.Millisecond) // load pacing: the move starts with writers running
	res := runPlugdb(t, 2*time.Minute, "cluster", "reshard", "--dir", dir, "--partitions", "3")
	time.Sleep(500 * time.Millisecond) // load pacing: writers run on the new layout too
	close(stop)
	wg.Wait()
	if res.code != 0 || !strings.Contains(res.stdout, "now has 3 partitions placed by hash (layout v2)") {
		t.Fatalf("plugdb cluster reshard:\n%s\n%s", res, up.output())
	}
	t.Logf("plugdb cluster reshard (%d puts, %d gets meanwhile):\n%s%s", puts.Load(), gets.Load(), res.stderr, res.stdout)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed during the move; first: %v", n, firstErr.Load())
	}

	// The new nodes are the supervisor's children, recorded after the others
	// on the ports after them.
	rec, err := cluster.ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range rec.Children {
		names = append(names, p.Name+"@"+p.Addr)
	}
	for r := range 3 {
		want := fmt.Sprintf("node-p2-r%d@127.0.0.1:%d", r, nodes+6+r)
		if !slices.Contains(names, want) {
			t.Errorf("recorded children %q: no %s", names, want)
		}
	}
	if !strings.Contains(up.stdout.String(), "plugdb cluster: started for keyspace default's partitions 2..2: node-p2-r0") {
		t.Errorf("cluster up did not report the new nodes\n%s", up.output())
	}

	// Every acknowledged write reads back with its last value (a key of the
	// odd writers is theirs alone; the even ones share theirs with none
	// either: writer w writes keys ≡ w mod writers).
	want := map[string]string{}
	for w := range writers {
		for k, i := range acked[w] {
			want[k] = fmt.Sprintf("w%d-%d", w, i)
		}
	}
	for k, v := range want {
		got, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(k)})
		if err != nil || string(got.GetValue()) != v {
			t.Fatalf("after the move, %s = %q, %v; want %q", k, got.GetValue(), err, v)
		}
	}
	for i := range loaded {
		if _, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: fmt.Appendf(nil, "k%05d", i)}); err != nil {
			t.Fatalf("after the move, k%05d: %v", i, err)
		}
	}
	st, err := kv.Status(ctx, &plugdbv1.StatusRequest{})
	if err != nil || len(st.GetPartitions()) != 3 {
		t.Fatalf("router status after the move: %d partitions, %v; want 3", len(st.GetPartitions()), err)
	}
	for _, p := range st.GetPartitions() {
		var keys int64 = -1
		for _, r := range p.GetReplicas() {
			if r.GetRole() == "leader" {
				keys = r.GetKeys()
			}
		}
		if keys <= 0 {
			t.Errorf("partition %d: leader's keys %d after the move, want > 0", p.GetPartition(), keys)
		}
	}
	status := runPlugdb(t, 30*time.Second, "status", "--addr", grpcAddr)
	if !strings.Contains(status.stdout, "\n2 ") || !strings.Contains(status.stdout, "leader") {
		t.Errorf("plugdb status does not show partition 2\n%s", status)
	}

	// A second move, 3 → 4: partition 3's nodes start, partition 2's run on
	// (every leader fences again, in the same epoch).
	second := runPlugdb(t, 2*time.Minute, "cluster", "reshard", "--dir", dir, "--partitions", "4")
	if second.code != 0 || !strings.Contains(second.stdout, "now has 4 partitions placed by hash (layout v3)") ||
		!strings.Contains(second.stderr, "partitions 3..3") {
		t.Fatalf("plugdb cluster reshard --partitions 4:\n%s\n%s", second, up.output())
	}
	if st, err := kv.Status(ctx, &plugdbv1.StatusRequest{}); err != nil || len(st.GetPartitions()) != 4 {
		t.Errorf("router status after the second move: %d partitions, %v; want 4", len(st.GetPartitions()), err)
	}

	// A move already recorded: refused, saying how to resume or abort it.
	user, password, err := config.ReadAuthFile(rec.ZooKeeperAuth)
	if err != nil {
		t.Fatal(err)
	}
	client, err := coord.Connect(ctx, coord.Config{Servers: rec.ZooKeeper, SessionTimeout: 2 * time.Second, Root: "/plugdb", Cluster: "e2e",
		Auth: coord.Credentials{User: user, Password: password}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := coord.BeginReshard(ctx, client, coord.Meta{Partitions: 5, Partitioner: coord.PluginMeta{Plugin: "hash"}}); err != nil {
		t.Fatal(err)
	}
	again := runPlugdb(t, 30*time.Second, "cluster", "reshard", "--dir", dir, "--partitions", "6")
	if again.code == 0 || !strings.Contains(again.stderr, "is already recorded") || !strings.Contains(again.stderr, "plugdb reshard --config "+cfg) {
		t.Errorf("cluster reshard with a move recorded: want a refusal naming `plugdb reshard --config %s`\n%s", cfg, again)
	}
	if abort := runPlugdbEnv(t, 30*time.Second, []string{"PLUGDB_ZOOKEEPER_AUTH_FILE=" + rec.ZooKeeperAuth}, "reshard", "--config", cfg, "--abort"); abort.code != 0 {
		t.Errorf("plugdb reshard --abort\n%s", abort)
	}

	procs := recorded(t, dir)
	down := runPlugdb(t, 2*time.Minute, "cluster", "down", "--dir", dir)
	if down.code != 0 || !strings.Contains(down.stdout, "node-p2-r2 (pid") || !strings.Contains(down.stdout, "node-p3-r2 (pid") {
		t.Fatalf("cluster down\n%s", down)
	}
	if code := up.waitExit(t, time.Minute); code != 0 {
		t.Fatalf("cluster up exited %d after down\n%s", code, up.output())
	}
	assertAllGone(t, procs, dir, rec.ZooKeeper)

	// Up again on the same folder: partitions 2 and 3's nodes start too
	// (their data folders say a move added them), and the keys are where they were.
	up2 := startClusterUp(t, dir, cfg, 1)
	if !strings.Contains(up2.stdout.String(), "keyspace default: partitions 2..3, which a move added, have data in") {
		t.Errorf("cluster up again did not start partition 2's nodes\n%s", up2.output())
	}
	kv2 := plugdbv1.NewKVClient(dial(t, grpcAddr))
	for k, v := range want {
		got, err := kv2.Get(ctx, &plugdbv1.GetRequest{Key: []byte(k)})
		if err != nil || string(got.GetValue()) != v {
			t.Fatalf("after a restart, %s = %q, %v; want %q", k, got.GetValue(), err, v)
		}
	}

	// A move to fewer partitions, 4 → 3: partition 3's keys move to the
	// others, its nodes stop, its data goes to DIR/retired, and ZooKeeper
	// forgets it (and partition 4, which the aborted move made); every key
	// reads back.
	procs = recorded(t, dir)
	shrink := runPlugdb(t, 2*time.Minute, "cluster", "reshard", "--dir", dir, "--partitions", "3")
	if shrink.code != 0 || !strings.Contains(shrink.stdout, "now has 3 partitions placed by hash") ||
		!strings.Contains(shrink.stdout, "stopped node-p3-r2") || !strings.Contains(shrink.stdout, "partitions removed from ZooKeeper: [3") {
		t.Fatalf("plugdb cluster reshard --partitions 3 (fewer):\n%s\n%s", shrink, up2.output())
	}
	for _, p := range procs {
		if strings.HasPrefix(p.Name, "node-p3-") && p.Alive() {
			t.Errorf("%s still runs after its partition was retired", p)
		}
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "retired", "p3-r*")); len(old) != 3 {
		t.Errorf("retired data folders %q, want partition 3's three", old)
	}
	if st, err := kv2.Status(ctx, &plugdbv1.StatusRequest{}); err != nil || len(st.GetPartitions()) != 3 {
		t.Errorf("router status after the move to fewer: %d partitions, %v; want 3", len(st.GetPartitions()), err)
	}
	for k, v := range want {
		got, err := kv2.Get(ctx, &plugdbv1.GetRequest{Key: []byte(k)})
		if err != nil || string(got.GetValue()) != v {
			t.Fatalf("after the move to fewer, %s = %q, %v; want %q", k, got.GetValue(), err, v)
		}
	}

	procs = recorded(t, dir)
	if down := runPlugdb(t, 2*time.Minute, "cluster", "down", "--dir", dir); down.code != 0 || !strings.Contains(down.stdout, "node-p2-r2 (pid") ||
		strings.Contains(down.stdout, "node-p3-") {
		t.Fatalf("cluster down after the move to fewer\n%s", down)
	}
	up2.waitExit(t, time.Minute)
	assertAllGone(t, procs, dir, rec.ZooKeeper)
}

// TestClusterReshardNoCluster: with no cluster running from --dir, `plugdb
// cluster reshard` says so and how to start one.
func TestClusterReshardNoCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res := runPlugdb(t, 30*time.Second, "cluster", "reshard", "--dir", dir, "--partitions", "3")
	if res.code == 0 || !strings.Contains(res.stderr, "no cluster is running from "+dir) || !strings.Contains(res.stderr, "plugdb cluster up --dir "+dir) {
		t.Errorf("want: no cluster is running, start one with plugdb cluster up\n%s", res)
	}
	res = runPlugdb(t, 30*time.Second, "cluster", "reshard", "--dir", dir)
	if res.code == 0 || !strings.Contains(res.stderr, "--partitions") {
		t.Errorf("want: --partitions is needed\n%s", res)
	}
}

// writeClusterUpConfig writes the config of a local cluster named name (2
// hash partitions × 3 replicas, semi-sync, rowfile) for `plugdb cluster up`:
// its nodes from port nodes on, its router's gRPC at grpcAddr; it returns
// the file's path.
func writeClusterUpConfig(t *testing.T, name string, nodes int, grpcAddr string) string {
	t.Helper()
	text := fmt.Sprintf(`cluster: %s
partitions: 2
zookeeper: {servers: ["127.0.0.1:%d"], session_timeout: 2s}
engine: {plugin: rowfile, options: {sync: batch}}
partitioner: {plugin: hash, mode: inprocess}
replicator: {plugin: statement, options: {ack: semi-sync}}
router: {grpc: "%s", http: "%s"}
nodes: {replicas: 3, base_port: %d}
`, name, testutil.FreePortRun(t, 1), grpcAddr, testutil.FreeAddr(t), nodes)
	cfg := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

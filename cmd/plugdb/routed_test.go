package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/zkserver"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// End-to-end tests of the cluster: a real ZooKeeper, a `plugdb router` and
// `plugdb node` processes, driven through the router and the nodes' API.

// proc is a running plugdb child process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *syncBuffer
	done    chan struct{}
	waitErr error
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProc runs plugdb args in its own process group; cleanup kills it if
// the test did not.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(plugdbBin, args...)
	p.cmd.Env = devEnv()
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// kill ends the process group with SIGKILL and waits.
func (p *proc) kill() {
	if !p.exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// testCluster is a router and partitions × replicas nodes on ZooKeeper (the
// package's shared one, under a root of its own, unless the test stops it).
type testCluster struct {
	t          testing.TB
	dir, cfg   string
	zk         *zkserver.Ensemble
	grpc, http string
	router     *proc
	nodes      map[string]*proc  // by address
	dataOf     map[string]string // node address -> data folder
	partOf     map[string]int
	kv         plugdbv1.KVClient
	// nodeFlags, if set, are more flags for the node at an address.
	nodeFlags func(addr string) []string
}

func newTestCluster(t testing.TB, partitions, replicas int) *testCluster {
	t.Helper()
	return newReplicatedCluster(t, partitions, replicas, "{plugin: none}")
}

// newReplicatedCluster starts a cluster whose config's replicator block is
// replicator (YAML flow style, e.g. `{plugin: statement, options: {ack: sync}}`).
func newReplicatedCluster(t testing.TB, partitions, replicas int, replicator string) *testCluster {
	t.Helper()
	return startCluster(t, partitions, replicas, "{plugin: hash}", replicator)
}

// startCluster starts a cluster whose config's partitioner and replicator
// blocks are partitioner and replicator (YAML flow style), on the package's
// shared ZooKeeper under a root znode of its own.
func startCluster(t testing.TB, partitions, replicas int, partitioner, replicator string) *testCluster {
	t.Helper()
	return startClusterOn(t, zktest.Shared(t), partitions, replicas, partitioner, replicator)
}

// clusterRoots numbers the clusters' root znodes on the shared ZooKeeper.
var clusterRoots atomic.Int64

// startClusterOn is startCluster on ZooKeeper zk: zktest.Shared's, or a
// private one (zktest.Start) for a test that stops ZooKeeper.
func startClusterOn(t testing.TB, zk *zkserver.Ensemble, partitions, replicas int, partitioner, replicator string) *testCluster {
	t.Helper()
	return startClusterWith(t, zk, partitions, replicas, partitioner, replicator, nil)
}

// startClusterWith is startClusterOn whose nodes get nodeFlags(addr) too.
func startClusterWith(t testing.TB, zk *zkserver.Ensemble, partitions, replicas int, partitioner, replicator string, nodeFlags func(addr string) []string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir(), zk: zk, grpc: testutil.FreeAddr(t), http: testutil.FreeAddr(t),
		nodes: map[string]*proc{}, dataOf: map[string]string{}, partOf: map[string]int{}, nodeFlags: nodeFlags}
	c.cfg = filepath.Join(c.dir, "cluster.yaml")
	servers, _ := json.Marshal(zk.Servers())
	yaml := fmt.Sprintf(`cluster: e2e
partitions: %d
zookeeper: {servers: %s, session_timeout: 2s, root: /e2e-%d}
engine: {plugin: rowfile, options: {sync: batch}}
partitioner: %s
replicator: %s
router: {grpc: %q, http: %q}
nodes: {replicas: %d}
`, partitions, servers, clusterRoots.Add(1), partitioner, replicator, c.grpc, c.http, replicas)
	if err := os.WriteFile(c.cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c.router = startProc(t, "router", "router", "--config", c.cfg)
	for p := range partitions {
		for r := range replicas {
			addr := testutil.FreeAddr(t)
			c.dataOf[addr] = filepath.Join(c.dir, fmt.Sprintf("p%d-r%d", p, r))
			c.partOf[addr] = p
			c.startNode(addr)
		}
	}
	c.kv = plugdbv1.NewKVClient(dial(t, c.grpc))
	c.waitReady()
	return c
}

func (c *testCluster) startNode(addr string, flags ...string) {
	args := append([]string{"node", "--config", c.cfg, "--partition", fmt.Sprint(c.partOf[addr]),
		"--addr", addr, "--data", c.dataOf[addr]}, flags...)
	if c.nodeFlags != nil {
		args = append(args, c.nodeFlags(addr)...)
	}
	c.nodes[addr] = startProc(c.t, "node "+addr, args...)
}

func (c *testCluster) logs() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- router:\n%s", c.router.out.String())
	addrs := slices.Sorted(func(yield func(string) bool) {
		for a := range c.nodes {
			if !yield(a) {
				return
			}
		}
	})
	for _, a := range addrs {
		fmt.Fprintf(&b, "--- node %s (partition %d):\n%s", a, c.partOf[a], c.nodes[a].out.String())
	}
	return b.String()
}

// status asks the router.
func (c *testCluster) status() (*plugdbv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.kv.Status(ctx, &plugdbv1.StatusRequest{})
}

// leaderOf returns partition p's leader and epoch as the router reports them.
func (c *testCluster) leaderOf(st *plugdbv1.StatusResponse, p int) (string, uint64) {
	for _, ps := range st.GetPartitions() {
		if int(ps.GetPartition()) != p {
			continue
		}
		for _, r := range ps.GetReplicas() {
			if r.GetRole() == "leader" {
				return r.GetAddr(), r.GetEpoch()
			}
		}
	}
	return "", 0
}

// waitFor polls cond with a generous deadline, failing with the logs.
func (c *testCluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	if !testutil.Eventually(c.t.Context(), 60*time.Second, cond) {
		c.t.Fatalf("timed out waiting for %s\n%s", what, c.logs())
	}
}

// waitReady waits until every node is registered and every partition has a leader.
func (c *testCluster) waitReady() {
	c.t.Helper()
	c.waitFor("a leader per partition and every node registered", func() bool {
		st, err := c.status()
		if err != nil {
			return false
		}
		n := 0
		for p, ps := range st.GetPartitions() {
			if l, _ := c.leaderOf(st, p); l == "" {
				return false
			}
			for _, r := range ps.GetReplicas() {
				if r.GetRole() == "leader" || r.GetRole() == "follower" {
					n++
				}
			}
		}
		return n == len(c.nodes)
	})
}

func (c *testCluster) put(key, value string, timeout time.Duration) (*plugdbv1.WriteResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(value)})
}

// keyOn returns a key the router places in partition p.
func (c *testCluster) keyOn(p int, prefix string) string {
	c.t.Helper()
	for i := range 1000 {
		k := fmt.Sprintf("%s-%d", prefix, i)
		resp, err := c.put(k, "probe", 10*time.Second)
		if err != nil {
			c.t.Fatalf("put %s: %v\n%s", k, err, c.logs())
		}
		if int(resp.GetPartition()) == p {
			return k
		}
	}
	c.t.Fatalf("no key for partition %d", p)
	return ""
}

func TestClusterRoutesReadsAndWrites(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 2, 2)
	parts := map[uint32]int{}
	for i := range 200 {
		k := fmt.Sprintf("user:%03d", i)
		resp, err := c.put(k, "v"+k, 10*time.Second)
		if err != nil {
			t.Fatalf("put %s: %v\n%s", k, err, c.logs())
		}
		parts[resp.GetPartition()]++
	}
	if len(parts) != 2 {
		t.Fatalf("writes landed on partitions %v, want both", parts)
	}
	ctx := context.Background()
	for i := range 200 {
		k := fmt.Sprintf("user:%03d", i)
		resp, err := c.kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(k)})
		if err != nil || string(resp.GetValue()) != "v"+k {
			t.Fatalf("get %s: %v %v", k, resp, err)
		}
	}
	// A scan through the router merges both partitions in key order.
	res := runPlugdb(t, 30*time.Second, "scan", "--addr", c.grpc, "--prefix", "user:")
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if res.code != 0 || len(lines) != 200 || !slices.IsSorted(lines) || lines[0] != "user:000\tvuser:000" {
		t.Fatalf("scan: code %d, %d lines, first %q\n%s", res.code, len(lines), lines[0], res.stderr)
	}
	// Status: each partition has a leader and a follower, with epochs and LSNs.
	res = runPlugdb(t, 30*time.Second, "status", "--addr", c.grpc, "-o", "json")
	var st struct {
		Cluster    string `json:"cluster"`
		Partitions []struct {
			Partition int `json:"partition"`
			Replicas  []struct {
				Addr       string `json:"addr"`
				Role       string `json:"role"`
				Epoch      uint64 `json:"epoch"`
				AppliedLSN uint64 `json:"applied_lsn"`
			} `json:"replicas"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || st.Cluster != "e2e" || len(st.Partitions) != 2 {
		t.Fatalf("status -o json: %v\n%s%s", err, res.stdout, res.stderr)
	}
	for _, ps := range st.Partitions {
		if len(ps.Replicas) != 2 || ps.Replicas[0].Role != "leader" || ps.Replicas[1].Role != "follower" || ps.Replicas[0].Epoch < 1 {
			t.Fatalf("partition %d replicas: %+v", ps.Partition, ps.Replicas)
		}
		if ps.Replicas[0].AppliedLSN < 90 {
			t.Fatalf("partition %d leader applied LSN %d, want the ~100 writes", ps.Partition, ps.Replicas[0].AppliedLSN)
		}
	}
	// Reads straight from nodes: the leader has the key; the follower (no
	// replicator yet) serves a stale read of what it has: nothing.
	key := "user:007"
	p := -1
	for addr := range c.nodes {
		r := runPlugdb(t, 30*time.Second, "get", "--node", addr, key)
		if r.code == 0 {
			if r.stdout != "vuser:007\n" {
				t.Fatalf("get --node %s: %q", addr, r.stdout)
			}
			p = c.partOf[addr]
		}
	}
	if p < 0 {
		t.Fatal("no node holds user:007")
	}
	stAll, _ := c.status()
	leader, _ := c.leaderOf(stAll, p)
	for addr := range c.nodes {
		if c.partOf[addr] != p || addr == leader {
			continue
		}
		r := runPlugdb(t, 30*time.Second, "get", "--node", addr, key)
		if r.code != 1 || r.stderr != "not found: user:007\n" {
			t.Fatalf("stale get from follower %s: code %d %q %q", addr, r.code, r.stdout, r.stderr)
		}
		r = runPlugdb(t, 30*time.Second, "get", "--node", addr, "--consistency", "strong", key)
		if r.code != 2 || !strings.Contains(r.stderr, "is not the leader of partition") || !strings.Contains(r.stderr, "a follower") {
			t.Fatalf("strong get from follower %s: code %d %q", addr, r.code, r.stderr)
		}
		r = runPlugdb(t, 30*time.Second, "put", "--addr", addr, key, "x")
		if r.code != 2 || !strings.Contains(r.stderr, "is not the leader") {
			t.Fatalf("put to follower %s: code %d %q", addr, r.code, r.stderr)
		}
	}
	// A stale read through the router goes to a follower: it misses the key.
	r := runPlugdb(t, 30*time.Second, "get", "--addr", c.grpc, "--consistency", "stale", key)
	if r.code != 1 {
		t.Fatalf("stale get through the router: code %d %q %q, want the follower's not found", r.code, r.stdout, r.stderr)
	}
	// REST through the router, strong and stale.
	code, body, _ := httpGet(t, "http://"+c.http+"/v1/kv/"+key)
	if code != 200 || !strings.Contains(body, `"value":"vuser:007"`) {
		t.Fatalf("REST get: %d %s", code, body)
	}
	if code, body, _ := httpGet(t, "http://"+c.http+"/v1/kv/"+key+"?consistency=stale"); code != 404 {
		t.Fatalf("REST stale get: %d %s, want the follower's 404", code, body)
	}
}

func httpGet(t *testing.T, url string) (int, string, error) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

// failover kills partition p's leader with SIGKILL and returns how long it
// took until a write to p through the router succeeded, the new leader and
// its epoch.
func (c *testCluster) failover(p int, key string) (time.Duration, string, uint64, string) {
	c.t.Helper()
	st, err := c.status()
	if err != nil {
		c.t.Fatal(err)
	}
	old, oldEpoch := c.leaderOf(st, p)
	if old == "" {
		c.t.Fatalf("partition %d has no leader", p)
	}
	killed := time.Now()
	if err := syscall.Kill(c.nodes[old].cmd.Process.Pid, syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	<-c.nodes[old].done
	var took time.Duration
	c.waitFor("a write to the partition after its leader was killed", func() bool {
		if _, err := c.put(key, "after-kill", 3*time.Second); err != nil {
			return false
		}
		took = time.Since(killed)
		return true
	})
	st, err = c.status()
	if err != nil {
		c.t.Fatal(err)
	}
	now, epoch := c.leaderOf(st, p)
	if now == old || now == "" {
		c.t.Fatalf("leader of partition %d is %q after killing %s", p, now, old)
	}
	if epoch <= oldEpoch {
		c.t.Fatalf("new epoch %d, want above %d", epoch, oldEpoch)
	}
	return took, now, epoch, old
}

func TestClusterLeaderKilledFollowerTakesOverAndOldLeaderRejoins(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 2, 2)
	key := c.keyOn(0, "k")
	took, leader, epoch, old := c.failover(0, key)
	t.Logf("kill -9 of the leader to the first successful write: %v (new leader %s, epoch %d)", took.Round(time.Millisecond), leader, epoch)
	// The other partition never stopped.
	if _, err := c.put(c.keyOn(1, "other"), "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// The old leader restarts on its data and rejoins as follower.
	c.startNode(old)
	c.waitFor("the old leader back as follower", func() bool {
		st, err := c.status()
		if err != nil {
			return false
		}
		for _, r := range st.GetPartitions()[0].GetReplicas() {
			if r.GetAddr() == old {
				return r.GetRole() == "follower"
			}
		}
		return false
	})
	if l, e := c.leaderOf(mustStatus(t, c), 0); l != leader || e != epoch {
		t.Fatalf("leader changed to %s epoch %d when the old one rejoined", l, e)
	}
}

func mustStatus(t *testing.T, c *testCluster) *plugdbv1.StatusResponse {
	t.Helper()
	st, err := c.status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestClusterFailoverTimes kills a leader ten times and reports the time from
// the kill to the first successful write (a figure, not an assertion). Long
// failover series: make test-long.
func TestClusterFailoverTimes(t *testing.T) {
	requireLong(t)
	if testing.Short() {
		t.Skip("ten failovers take about a minute; run without -short")
	}
	c := newTestCluster(t, 1, 2)
	key := c.keyOn(0, "k")
	var times []time.Duration
	epochs := []uint64{}
	for range 10 {
		took, _, epoch, old := c.failover(0, key)
		times = append(times, took)
		epochs = append(epochs, epoch)
		c.startNode(old)
		c.waitReady()
	}
	if !slices.IsSorted(epochs) || len(slices.Compact(slices.Clone(epochs))) != len(epochs) {
		t.Fatalf("epochs %v: want strictly increasing", epochs)
	}
	slices.Sort(times)
	t.Logf("failover, kill -9 to first successful write, %d kills, session timeout 2s: min %v, median %v, max %v, all %v",
		len(times), times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), times)
}

func TestClusterZooKeeperDownIsUnavailableAndRecovers(t *testing.T) {
	t.Parallel()
	// A ZooKeeper of its own: the test stops it.
	c := startClusterOn(t, zktest.Start(t, 1), 2, 1, "{plugin: hash}", "{plugin: none}")
	key := c.keyOn(0, "k")
	if err := c.zk.StopServer(0); err != nil {
		t.Fatal(err)
	}
	// Writes fail with Unavailable naming ZooKeeper, by the deadline.
	c.waitFor("writes to fail while ZooKeeper is down", func() bool {
		start := time.Now()
		_, err := c.put(key, "v", 3*time.Second)
		if time.Since(start) > 4*time.Second {
			t.Fatalf("put took %v with a 3s deadline", time.Since(start))
		}
		if err == nil {
			return false
		}
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "ZooKeeper") {
			t.Fatalf("put with ZooKeeper down: %v, want Unavailable naming ZooKeeper\n%s", err, c.logs())
		}
		t.Logf("with ZooKeeper down: %v", err)
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.zk.StartServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c.waitFor("writes to succeed once ZooKeeper is back", func() bool {
		_, err := c.put(key, "v2", 3*time.Second)
		return err == nil
	})
}

func TestClusterPausedLeaderDoesNotAcceptWritesAfterResume(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1, 2)
	key := c.keyOn(0, "k")
	old, oldEpoch := c.leaderOf(mustStatus(t, c), 0)
	pid := c.nodes[old].cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The follower takes over while the old leader is frozen.
	c.waitFor("the follower to lead", func() bool {
		l, e := c.leaderOf(mustStatus(t, c), 0)
		return l != "" && l != old && e > oldEpoch
	})
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Straight after it resumes, and for a while after, the old leader
	// refuses writes sent to it directly.
	direct := plugdbv1.NewKVClient(dial(t, old))
	for i := range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := direct.Put(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(fmt.Sprint("stale-", i))})
		cancel()
		if err == nil {
			t.Fatalf("write %d accepted by the deposed leader %s after it resumed", i, old)
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("deposed leader answered %v, want Unavailable (not leader)", err)
		}
		time.Sleep(40 * time.Millisecond) // not a synchronisation: spreads the probes over the time the deposed leader must keep refusing
	}
	c.waitFor("the old leader to rejoin as follower", func() bool {
		for _, r := range mustStatus(t, c).GetPartitions()[0].GetReplicas() {
			if r.GetAddr() == old {
				return r.GetRole() == "follower"
			}
		}
		return false
	})
	if _, err := c.put(key, "through-router", 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

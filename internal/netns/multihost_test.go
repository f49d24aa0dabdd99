//go:build linux

package netns_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/zkserver"
	"github.com/plugdb/plugdb/internal/netns"
	"github.com/plugdb/plugdb/internal/testutil"
)

// TestClusterOnThreeHosts runs plugdb as on three machines: three network
// namespaces h1..h3 (10.213.0.1..3) joined by veth pairs to a bridge in a
// fourth, each with one server of a 3-server ZooKeeper ensemble and one
// replica of each of the 2 partitions; the router on h1; the client (the
// plugdb CLI) on h3. h1's and h2's nodes listen on 0.0.0.0 and advertise
// their host's address, h3's listen on it. It writes keys, kills every
// process of h2 (which holds both partitions' leaders and a ZooKeeper
// server) with kill -9, and checks that ZooKeeper keeps a quorum, each
// partition elects a leader on another host, writes go on, and every key
// written before and after reads back.
func TestClusterOnThreeHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make network namespaces (ip netns); CI runs make test as root")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("plugdb-%d", os.Getpid())
	if err := netns.Usable(ctx, prefix+"-probe"); err != nil {
		t.Skipf("ip netns is unusable here (a container without CAP_SYS_ADMIN, or no iproute2): %v", err)
	}
	begin := time.Now()
	dir := t.TempDir()
	bin := buildPlugdb(t, dir)

	n, err := netns.New(ctx, prefix, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("clean up the namespaces: %v", err)
		}
		if out, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(out), prefix) {
			t.Errorf("namespaces left behind:\n%s", out)
		}
	})
	h1, h2, h3 := n.Hosts[0], n.Hosts[1], n.Hosts[2]

	zkAddrs := make([]string, len(n.Hosts))
	peers := make([]zkserver.PeerPorts, len(n.Hosts))
	for i, h := range n.Hosts {
		zkAddrs[i] = h.IP + ":2181"
		peers[i] = zkserver.PeerPorts{Quorum: 2888, Election: 3888}
	}
	zk, err := zkserver.Start(ctx, zkserver.Options{
		Dir: filepath.Join(dir, "zookeeper"), Clients: zkAddrs, Peers: peers,
		Wrap: func(i int, argv []string) []string { return n.Hosts[i].Wrap(argv) },
		Dial: n.Dial,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = zk.Stop() }) // h2's server is killed on purpose
	t.Logf("ZooKeeper ensemble %s up after %v", zk.ConnectString(), time.Since(begin).Round(time.Millisecond))

	cfg := filepath.Join(dir, "cluster.yaml")
	writeFile(t, cfg, fmt.Sprintf(`cluster: multihost
partitions: 2
zookeeper: { servers: ["%s"], session_timeout: 3s }
engine: { plugin: rowfile, mode: process, options: { sync: batch } }
partitioner: { plugin: hash, mode: inprocess }
replicator: { plugin: statement, options: { ack: semi-sync } }
router: { grpc: "0.0.0.0:7070", http: "0.0.0.0:8080" }
nodes: { replicas: 3 }
`, strings.Join(zkAddrs, `", "`)))

	c := &cluster{t: t, bin: bin, dir: dir, cfg: cfg, client: h3, router: h1.IP + ":7070"}
	c.start(h1, "router", "router", "--config", cfg)
	// h2's nodes first, so that they lead: the host killed below holds
	// both partitions' leaders.
	c.startNodes(h2, true)
	c.waitFor(ctx, "both partitions led from h2", func(st status) bool {
		return st.leaderOn(0, h2.IP) && st.leaderOn(1, h2.IP)
	})
	c.startNodes(h1, true)
	c.startNodes(h3, false)
	before := c.waitFor(ctx, "3 replicas of each partition, 2 followers in sync", func(st status) bool {
		return st.ready(3)
	})
	for _, p := range before.Partitions {
		for _, r := range p.Replicas {
			if !strings.HasPrefix(r.Addr, "10.213.0.") {
				t.Errorf("partition %d replica %s is published in ZooKeeper under an address other hosts cannot dial", p.Partition, r.Addr)
			}
		}
	}

	const keys = 20
	for i := range keys {
		c.put(ctx, fmt.Sprintf("k%02d", i), fmt.Sprintf("v%02d", i))
	}

	killed, err := h2.Kill(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// ZooKeeper, two nodes and their engine and replicator plugins.
	if len(killed) < 3 {
		t.Fatalf("killed %v on %s; want its ZooKeeper server and two nodes at least", killed, h2.Name)
	}
	t.Logf("killed every process of %s: pids %v", h2.Name, killed)

	after := c.waitFor(ctx, "a leader on another host for both partitions, 2 replicas in sync", func(st status) bool {
		for p := range 2 {
			if !st.leaderOn(p, h1.IP) && !st.leaderOn(p, h3.IP) || st.Partitions[p].InSync < 2 {
				return false
			}
		}
		return true
	})
	for p := range 2 {
		if after.Partitions[p].Epoch <= before.Partitions[p].Epoch {
			t.Errorf("partition %d: epoch %d after the failover, %d before; want higher", p, after.Partitions[p].Epoch, before.Partitions[p].Epoch)
		}
	}
	for _, a := range []string{zkAddrs[0], zkAddrs[2]} {
		if mode, err := zkMode(ctx, n, a); err != nil || mode != "leader" && mode != "follower" {
			t.Errorf("ZooKeeper %s: mode %q, %v; want leader or follower (2 of 3 are a quorum)", a, mode, err)
		}
	}

	for i := keys; i < 2*keys; i++ {
		c.put(ctx, fmt.Sprintf("k%02d", i), fmt.Sprintf("v%02d", i))
	}
	rows := c.run(ctx, "scan", "--addr", c.router, "--prefix", "k")
	want := make([]string, 2*keys)
	for i := range want {
		want[i] = fmt.Sprintf("k%02d\tv%02d", i, i)
	}
	if got := strings.Split(strings.TrimSpace(rows), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("scan after %s died: got\n%s\nwant the %d keys written, before and after", h2.Name, rows, 2*keys)
	}
	t.Logf("3 hosts: started, %d keys, %s killed, failed over, %d more keys, read back in %v", keys, h2.Name, keys, time.Since(begin).Round(time.Second))
}

// cluster is the processes of the test and how it talks to them.
type cluster struct {
	t                *testing.T
	bin, dir, cfg    string
	client           netns.Host // where the CLI runs
	router           string     // the router's gRPC address
	mu               sync.Mutex
	logs             []string
	dumpRegistration sync.Once
}

// start runs plugdb args on h, its output in DIR/logs/name.log; the test's
// end kills it by PID if it still runs.
func (c *cluster) start(h netns.Host, name string, args ...string) {
	c.t.Helper()
	logPath := filepath.Join(c.dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		c.t.Fatal(err)
	}
	f, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := h.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatalf("start %s on %s: %v", name, h.Name, err)
	}
	f.Close()
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.mu.Lock()
	c.logs = append(c.logs, logPath)
	c.mu.Unlock()
	c.dumpRegistration.Do(func() { c.t.Cleanup(c.dumpLogs) })
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
		}
	})
}

// startNodes starts h's replica of each partition: listening on 0.0.0.0
// and advertising h's address when every is set, else listening on h's
// address alone.
func (c *cluster) startNodes(h netns.Host, every bool) {
	c.t.Helper()
	for p := range 2 {
		port := fmt.Sprintf("%d", 7101+p)
		args := []string{"node", "--config", c.cfg, "--partition", fmt.Sprint(p),
			"--data", filepath.Join(c.dir, h.Name, fmt.Sprintf("p%d", p))}
		if every {
			args = append(args, "--addr", "0.0.0.0:"+port, "--advertise", h.IP+":"+port)
		} else {
			args = append(args, "--addr", h.IP+":"+port)
		}
		c.start(h, fmt.Sprintf("%s-p%d", h.Name, p), args...)
	}
}

// run runs the CLI on the client host and returns its output; it fails the
// test when the command fails.
func (c *cluster) run(ctx context.Context, args ...string) string {
	c.t.Helper()
	out, err := c.try(ctx, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) try(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.client.Name, c.bin}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("plugdb %s on %s: %w: %s", strings.Join(args, " "), c.client.Name, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// put writes key through the router; the write must be acknowledged.
func (c *cluster) put(ctx context.Context, key, value string) {
	c.t.Helper()
	c.run(ctx, "put", "--addr", c.router, "--timeout", "15s", key, value)
}

// waitFor waits (at most 90 s) until the router's status satisfies cond,
// and returns it.
func (c *cluster) waitFor(ctx context.Context, what string, cond func(status) bool) status {
	c.t.Helper()
	var st status
	var last error
	ok := testutil.Eventually(ctx, 90*time.Second, func() bool {
		out, err := c.try(ctx, "status", "--addr", c.router, "-o", "json")
		if err != nil {
			last = err
			return false
		}
		var s status
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			last = fmt.Errorf("status -o json: %w: %s", err, out)
			return false
		}
		st, last = s, nil
		return len(s.Partitions) == 2 && cond(s)
	})
	if !ok {
		c.t.Fatalf("waited 90s for %s; last status %+v, last error %v", what, st, last)
	}
	return st
}

// dumpLogs logs the last lines of every process's log when the test failed.
func (c *cluster) dumpLogs() {
	if !c.t.Failed() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.logs {
		b, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		c.t.Logf("--- last lines of %s ---\n%s", filepath.Base(p), strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}

// status is what the test reads of `plugdb status -o json`.
type status struct {
	Partitions []struct {
		Partition int    `json:"partition"`
		Epoch     uint64 `json:"epoch"`
		InSync    int    `json:"in_sync"`
		Replicas  []struct {
			Addr string `json:"addr"`
			Role string `json:"role"`
			ISR  bool   `json:"isr"`
		} `json:"replicas"`
	} `json:"partitions"`
}

// leaderOn reports whether partition p's leader is on the host with ip.
func (s status) leaderOn(p int, ip string) bool {
	for _, r := range s.Partitions[p].Replicas {
		if r.Role == "leader" && strings.HasPrefix(r.Addr, ip+":") {
			return true
		}
	}
	return false
}

// ready reports whether every partition has a leader and replicas-1
// followers in sync.
func (s status) ready(replicas int) bool {
	for _, p := range s.Partitions {
		leaders, inSync := 0, 0
		for _, r := range p.Replicas {
			switch {
			case r.Role == "leader":
				leaders++
			case r.ISR:
				inSync++
			}
		}
		if leaders != 1 || inSync != replicas-1 {
			return false
		}
	}
	return true
}

// zkMode asks the ZooKeeper server at addr its mode ("srvr"), from inside
// the namespaces.
func zkMode(ctx context.Context, n *netns.Net, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := n.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "srvr"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if m, ok := strings.CutPrefix(line, "Mode: "); ok {
			return strings.TrimSpace(m), nil
		}
	}
	return "", fmt.Errorf("srvr %s: no mode in %q", addr, b)
}

// buildPlugdb builds cmd/plugdb into dir and returns its path.
func buildPlugdb(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "plugdb")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/plugdb")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/plugdb: %v\n%s", err, out)
	}
	return bin
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// The nemesis suite's cluster: a testCluster (private ZooKeeper, router,
// partitions × replicas `plugdb node` processes) in which every replica is
// reached only through fault proxies, so that one replica can be cut off
// from everything: the router and other nodes reach it at its advertised
// address (a proxy to the address it listens on), its peers' leaders ship
// to its replicator's advertised address (a proxy), and it reaches
// ZooKeeper through a proxy of its own (its config's zookeeper.servers).

// nemesisReplica is one replica and its proxies.
type nemesisReplica struct {
	part int
	// addr is the advertised address: the client proxy's, the node's name
	// in ZooKeeper, the router's status and the testCluster's maps.
	addr               string
	listen, replListen string // where the node and its replicator listen
	client, repl, zk   *faultProxy
	cfg                string // its config file: ZooKeeper through zk
}

// proxies are the replica's three proxies.
func (r *nemesisReplica) proxies() []*faultProxy { return []*faultProxy{r.client, r.repl, r.zk} }

// nemesisCluster is a testCluster whose replicas sit behind fault proxies.
type nemesisCluster struct {
	*testCluster
	replicas map[string]*nemesisReplica // by advertised address
	zkAddr   string                     // the ZooKeeper server's address
	earlier  map[string]string          // the output of a node's earlier runs, by address
}

// clusterYAML is a cluster config with partitions, replicas per partition
// (nodes.replicas), the statement replicator in ack mode ack, and the
// router's addresses, connecting to ZooKeeper at zkServers.
func clusterYAML(partitions, replicas int, ack string, zkServers []string, grpc, http string) string {
	servers, _ := json.Marshal(zkServers)
	return fmt.Sprintf(`cluster: nemesis
partitions: %d
nodes: {replicas: %d}
zookeeper: {servers: %s, session_timeout: %s, root: /plugdb}
engine: {plugin: rowfile, options: {sync: batch}}
partitioner: {plugin: hash}
replicator: %s
router: {grpc: %q, http: %q}
`, partitions, replicas, servers, nemesisSessionTimeout, statementRepl(ack), grpc, http)
}

// nemesisSessionTimeout is the cluster's ZooKeeper session timeout.
const nemesisSessionTimeout = 2 * time.Second

// startNemesisCluster starts ZooKeeper, a router and partitions × replicas
// nodes (statement replicator, ack mode ack) behind fault proxies, and waits
// until every partition has a leader and in-sync followers.
func startNemesisCluster(t testing.TB, partitions, replicas int, ack string) *nemesisCluster {
	t.Helper()
	zk := zktest.Start(t, 1)
	c := &nemesisCluster{
		testCluster: &testCluster{t: t, dir: t.TempDir(), zk: zk, grpc: testutil.FreeAddr(t), http: testutil.FreeAddr(t),
			nodes: map[string]*proc{}, dataOf: map[string]string{}, partOf: map[string]int{}},
		replicas: map[string]*nemesisReplica{},
		earlier:  map[string]string{},
		zkAddr:   zk.Servers()[0],
	}
	c.cfg = filepath.Join(c.dir, "cluster.yaml")
	if err := os.WriteFile(c.cfg, []byte(clusterYAML(partitions, replicas, ack, zk.Servers(), c.grpc, c.http)), 0o644); err != nil {
		t.Fatalf("write the router's config: %v", err)
	}
	c.router = startProc(t, "router", "router", "--config", c.cfg)
	for p := range partitions {
		for r := range replicas {
			name := fmt.Sprintf("p%d-r%d", p, r)
			rep := &nemesisReplica{part: p, listen: testutil.FreeAddr(t), replListen: testutil.FreeAddr(t)}
			rep.client = newFaultProxy(t, name+"/client", rep.listen)
			rep.repl = newFaultProxy(t, name+"/repl", rep.replListen)
			rep.zk = newFaultProxy(t, name+"/zk", c.zkAddr)
			rep.addr = rep.client.Addr()
			rep.cfg = filepath.Join(c.dir, name+".yaml")
			yaml := clusterYAML(partitions, replicas, ack, []string{rep.zk.Addr()}, c.grpc, c.http)
			if err := os.WriteFile(rep.cfg, []byte(yaml), 0o644); err != nil {
				t.Fatalf("write %s's config: %v", name, err)
			}
			c.replicas[rep.addr] = rep
			c.dataOf[rep.addr] = filepath.Join(c.dir, name)
			c.partOf[rep.addr] = p
			c.startReplica(rep.addr)
		}
	}
	c.kv = plugdbv1.NewKVClient(dial(t, c.grpc))
	c.waitReady()
	for p := range partitions {
		c.waitInSync(p)
	}
	return c
}

// startReplica starts (or restarts, on its data) the node at addr behind
// its proxies.
func (c *nemesisCluster) startReplica(addr string) {
	rep := c.replicas[addr]
	if old := c.nodes[addr]; old != nil {
		c.earlier[addr] += old.out.String() + "--- restarted\n"
	}
	c.nodes[addr] = startProc(c.t, "node "+addr, "node", "--config", rep.cfg, "--partition", fmt.Sprint(rep.part),
		"--addr", rep.listen, "--advertise", rep.addr, "--repl-addr", rep.replListen, "--repl-advertise", rep.repl.Addr(),
		"--data", c.dataOf[addr])
}

// signal sends sig to the node at addr and its plugin processes.
func (c *nemesisCluster) signal(addr string, sig syscall.Signal) error {
	if err := syscall.Kill(-c.nodes[addr].cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %v to node %s: %w", sig, addr, err)
	}
	return nil
}

// waitUntil polls cond until it holds or timeout passes; it returns an error
// instead of failing the test, for the nemesis's own goroutines.
func waitUntil(timeout time.Duration, what string, cond func() bool) error {
	if !testutil.Eventually(context.Background(), timeout, cond) {
		return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
	}
	return nil
}

// leader is partition p's leader and epoch as the router reports them ("" if
// none or the router does not answer).
func (c *nemesisCluster) leader(p int) (string, uint64) {
	st, err := c.status()
	if err != nil {
		return "", 0
	}
	return c.leaderOf(st, p)
}

// healthy reports whether partition p has a leader and all its other
// replicas are in-sync followers.
func (c *nemesisCluster) healthy(p int) bool {
	st, err := c.status()
	return err == nil && c.inSync(st, p)
}

// waitHealthy waits until every partition has a leader and in-sync
// followers.
func (c *nemesisCluster) waitHealthy(timeout time.Duration) error {
	parts := map[int]bool{}
	for _, p := range c.partOf {
		parts[p] = true
	}
	return waitUntil(timeout, "a leader and in-sync followers in every partition", func() bool {
		st, err := c.status()
		if err != nil {
			return false
		}
		for p := range parts {
			if !c.inSync(st, p) {
				return false
			}
		}
		return true
	})
}

// startZooKeeperAfter waits down, then starts the stopped ZooKeeper server
// again on the same port and data.
func (c *nemesisCluster) startZooKeeperAfter(down time.Duration) error {
	time.Sleep(down) // not a synchronisation: the fault's duration
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.zk.StartServer(ctx, 0); err != nil {
		return fmt.Errorf("start zookeeper again on %s: %w", c.zkAddr, err)
	}
	return nil
}

// describe is how the router sees partition p and the replica addr: its
// leader and epoch, and addr's role and whether it is in sync.
func (c *nemesisCluster) describe(p int, addr string) string {
	st, err := c.status()
	if err != nil {
		return fmt.Sprintf("status: %v", err)
	}
	leader, epoch := c.leaderOf(st, p)
	r := replicaOf(partStatus(st, p), addr)
	if r == nil {
		return fmt.Sprintf("leader %s epoch %d; %s not registered", leader, epoch, addr)
	}
	return fmt.Sprintf("leader %s epoch %d; %s %s, isr %v", leader, epoch, addr, r.GetRole(), r.GetIsr())
}

// keyLines are the lines of every process's output that say something went
// wrong (errors, warnings, panics), the last max of each, for a failure
// report that fits on a screen.
func (c *nemesisCluster) keyLines(max int) string {
	var b strings.Builder
	pick := func(name, out string) {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "[ERROR]") || strings.Contains(l, "[WARN]") || strings.Contains(l, "panic") ||
				strings.Contains(l, "fatal") || strings.Contains(l, "leading") || strings.Contains(l, "in-sync set changed") {
				lines = append(lines, l)
			}
		}
		if len(lines) > max {
			fmt.Fprintf(&b, "--- %s (last %d of %d key lines):\n", name, max, len(lines))
			lines = lines[len(lines)-max:]
		} else {
			fmt.Fprintf(&b, "--- %s:\n", name)
		}
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	pick("router", c.router.out.String())
	for _, a := range slices.Sorted(func(yield func(string) bool) {
		for a := range c.nodes {
			if !yield(a) {
				return
			}
		}
	}) {
		rep := c.replicas[a]
		pick(fmt.Sprintf("node %s (partition %d, listens on %s)", a, rep.part, rep.listen), c.earlier[a]+c.nodes[a].out.String())
	}
	return b.String()
}

// saveLogs writes every process's whole output (a node's earlier runs
// first) and ZooKeeper's log to a folder kept after the test, and returns
// its path.
func (c *nemesisCluster) saveLogs() string {
	dir, err := os.MkdirTemp("", "plugdb-nemesis-logs-")
	if err != nil {
		return "(not saved: " + err.Error() + ")"
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			c.t.Logf("save %s: %v", name, err)
		}
	}
	write("router.log", c.router.out.String())
	for a, p := range c.nodes {
		rep := c.replicas[a]
		write(fmt.Sprintf("node-p%d-%s.log", rep.part, strings.ReplaceAll(a, ":", "_")), c.earlier[a]+p.out.String())
	}
	if zl, err := os.ReadFile(c.zk.LogFile(0)); err == nil {
		write("zookeeper.log", string(zl))
	}
	return dir
}

// isolate black-holes the replica at addr: its three proxies drop all
// traffic, and the other replicas' proxies drop the connections its
// processes open to them. heal undoes it, closing every connection that
// lived through the cut, and returns how many of its outbound connections
// were cut.
func (c *nemesisCluster) isolate(addr string) (heal func() (outbound int), err error) {
	rep := c.replicas[addr]
	// The scan of /proc first, then every cut at once.
	iso, err := newGroupIsolation(c.nodes[addr].cmd.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("isolate %s's outbound connections: %w", addr, err)
	}
	for _, p := range rep.proxies() {
		p.Cut()
	}
	var others []*faultProxy
	for a, r := range c.replicas {
		if a != addr {
			for _, p := range []*faultProxy{r.client, r.repl} {
				p.CutFrom(iso.owned, iso.owns)
				others = append(others, p)
			}
		}
	}
	return func() (outbound int) {
		for _, p := range others {
			outbound += p.cutFromCount()
		}
		for _, p := range rep.proxies() {
			p.Heal()
		}
		for _, p := range others {
			p.HealFrom()
		}
		return outbound
	}, nil
}

package cluster

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugdb/plugdb/internal/testutil"
)

// TestAddNodesOnRequest: RequestNodes has the supervisor (this test
// process, serving RequestSignal) start the nodes of the new partitions on
// the ports after the highest node port, recorded and stopped with the
// others; asked again, it starts none; fewer partitions are refused.
func TestAddNodesOnRequest(t *testing.T) {
	opts, out := testOptions(t, 1)
	opts.Config.Nodes.BasePort = testutil.FreePortRun(t, 6)   // 4 nodes, then the 2 new ones
	opts.Config.Metrics.BasePort = testutil.FreePortRun(t, 6) // their metrics addresses
	opts.ServeRequests = true
	requests := make(chan os.Signal, 1)
	signal.Notify(requests, RequestSignal)
	defer signal.Stop(requests)
	c := startTest(t, opts)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-requests:
				if err := c.ServeRequest(); err != nil {
					t.Errorf("ServeRequest: %v", err)
				}
			}
		}
	})
	stopServing := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopServing()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	nodes, err := RequestNodes(ctx, opts.Dir, AddNodesRequest{Partitions: 3})
	if err != nil {
		t.Fatalf("RequestNodes: %v\n%s", err, out)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Name+"@"+n.Addr)
		if !n.Alive() {
			t.Errorf("%s not alive", n)
		}
	}
	want := []string{"node-p2-r0@" + nodeAddr(opts, 2, 0), "node-p2-r1@" + nodeAddr(opts, 2, 1)}
	if !slices.Equal(got, want) {
		t.Fatalf("new nodes %q, want %q", got, want)
	}
	rec, err := ReadRecord(opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range rec.Children {
		names = append(names, p.Name)
	}
	if !rec.Requests || len(names) != 1+1+4+2 || !slices.Equal(names[6:], []string{"node-p2-r0", "node-p2-r1"}) {
		t.Fatalf("record: requests %v, children %q", rec.Requests, names)
	}
	// Every node has a metrics address: those of the config's partitions
	// from metrics.base_port, the added ones after the highest of them.
	var metrics []string
	for _, p := range rec.Children[2:] {
		metrics = append(metrics, p.Metrics)
	}
	var wantMetrics []string
	for i := range 6 {
		wantMetrics = append(wantMetrics, fmt.Sprintf("127.0.0.1:%d", opts.Config.Metrics.BasePort+i))
	}
	if !slices.Equal(metrics, wantMetrics) {
		t.Errorf("nodes' metrics addresses %q, want %q", metrics, wantMetrics)
	}
	var log []byte
	testutil.WaitFor(t, 10*time.Second, func() bool {
		log, _ = os.ReadFile(filepath.Join(opts.Dir, "logs", "node-p2-r1.log"))
		return strings.Contains(string(log), "zk=")
	}, "node-p2-r1.log to name its ZooKeeper servers")
	if w := "--partition 2 --addr " + nodeAddr(opts, 2, 1) + " --new-partition --data " + filepath.Join(opts.Dir, "data", "p2-r1") + " --metrics-addr " + wantMetrics[5]; !strings.Contains(string(log), w) {
		t.Errorf("node-p2-r1.log does not say %q:\n%s", w, log)
	}
	if w := "started for keyspace default's partitions 2..2: node-p2-r0 " + nodeAddr(opts, 2, 0); !strings.Contains(out.String(), w) {
		t.Errorf("output does not say %q:\n%s", w, out)
	}

	// Again: the same nodes, none started.
	again, err := RequestNodes(ctx, opts.Dir, AddNodesRequest{Keyspace: "default", Partitions: 3})
	if err != nil || len(again) != 2 || again[0].PID != nodes[0].PID {
		t.Errorf("second request: %v, %v; want the same two nodes", again, err)
	}
	if rec, _ := ReadRecord(opts.Dir); len(rec.Children) != 8 {
		t.Errorf("second request: %d children recorded, want 8", len(rec.Children))
	}
	if _, err := RequestNodes(ctx, opts.Dir, AddNodesRequest{Partitions: 1}); err == nil || !strings.Contains(err.Error(), "allowed values are 2..") {
		t.Errorf("1 partition: %v, want refused", err)
	}
	for _, f := range []string{requestFile, resultFile} {
		if _, err := os.Stat(filepath.Join(opts.Dir, f)); err == nil {
			t.Errorf("%s left in the cluster folder", f)
		}
	}

	stopServing()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Alive() {
			t.Errorf("%s still alive after Stop", n)
		}
	}
	if strings.Contains(out.String(), "exited") {
		t.Errorf("a stop was reported as a death:\n%s", out)
	}

	// Started again, the cluster starts partition 2's nodes too: their data
	// folders (a real node makes them) say a move added it.
	for r := range 2 {
		if err := os.MkdirAll(filepath.Join(opts.Dir, "data", fmt.Sprintf("p2-r%d", r)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	c2 := startTest(t, opts)
	names = nil
	for _, p := range c2.Record().Children {
		names = append(names, p.Name+"@"+p.Addr)
	}
	if len(names) != 8 || !slices.Equal(names[6:], want) {
		t.Errorf("restarted: children %q, want %q last", names, want)
	}
	if w := "keyspace default: partitions 2..2, which a move added, have data in"; !strings.Contains(out.String(), w) {
		t.Errorf("restarted: output does not say %q:\n%s", w, out)
	}
	if err := c2.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRequestNodesRefused: no cluster, or a supervisor that serves no
// requests, is refused before any signal is sent.
func TestRequestNodesRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	if _, err := RequestNodes(ctx, dir, AddNodesRequest{Partitions: 3}); err == nil || !strings.Contains(err.Error(), "no cluster is running from "+dir) {
		t.Errorf("empty folder: %v", err)
	}
	opts, _ := testOptions(t, 1)
	startTest(t, opts)
	_, err := RequestNodes(ctx, opts.Dir, AddNodesRequest{Partitions: 3})
	if err == nil || !strings.Contains(err.Error(), "does not start nodes on request") {
		t.Errorf("supervisor without requests: %v", err)
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, requestFile)); err == nil {
		t.Errorf("%s left in the cluster folder", requestFile)
	}
}

// TestNodeOf: nodeOf reads back what nodeName makes, for the default
// keyspace and a named one, and refuses names of other keyspaces.
func TestNodeOf(t *testing.T) {
	for _, c := range []struct {
		ks, name string
		p, r     int
		ok       bool
	}{
		{"", "node-p3-r2", 3, 2, true},
		{"events", "node-events-p1-r0", 1, 0, true},
		{"", "node-events-p1-r0", 0, 0, false},
		{"a", "node-a-b-p0-r0", 0, 0, false},
		{"", "router", 0, 0, false},
		{"", "node-p3-r2x", 0, 0, false},
	} {
		p, r, ok := nodeOf(c.ks, c.name)
		if ok != c.ok || ok && (p != c.p || r != c.r) {
			t.Errorf("nodeOf(%q, %q) = %d, %d, %v; want %d, %d, %v", c.ks, c.name, p, r, ok, c.p, c.r, c.ok)
		}
	}
}

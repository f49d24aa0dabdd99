package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// The supervisor's tests run this test binary as its children: with
// PLUGDB_TEST_ROLE=cluster-child it plays the router (a plugdb.v1.KV whose
// Status names a leader for every partition) or a node (it waits for a
// signal, or exits at once when it is CLUSTER_TEST_FAIL), and ZooKeeper is a
// fake Ensemble of sleeping children.

func TestMain(m *testing.M) {
	if os.Getenv("PLUGDB_TEST_ROLE") == "cluster-child" {
		os.Exit(fakeChild(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeChild(args []string) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	role := ""
	if len(args) > 0 {
		role = args[0]
	}
	name := role
	for i, a := range args {
		if a == "--addr" && i+1 < len(args) {
			name = a + "=" + args[i+1]
		}
	}
	fmt.Println("fake", role, strings.Join(args, " "), "zk="+os.Getenv("PLUGDB_ZOOKEEPER_SERVERS"), "auth="+os.Getenv("PLUGDB_ZOOKEEPER_AUTH_FILE"))
	if fail := os.Getenv("CLUSTER_TEST_FAIL"); fail != "" && strings.Contains(strings.Join(args, " "), fail) {
		fmt.Fprintln(os.Stderr, "boom: cannot start", name)
		return 3
	}
	if role == "router" {
		n, _ := strconv.Atoi(os.Getenv("CLUSTER_TEST_PARTITIONS"))
		lis, err := net.Listen("tcp", os.Getenv("CLUSTER_TEST_GRPC"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		s := grpc.NewServer()
		delay, _ := time.ParseDuration(os.Getenv("CLUSTER_TEST_DELAY"))
		ksDelay, _ := time.ParseDuration(os.Getenv("CLUSTER_TEST_KEYSPACE_DELAY"))
		f := &fakeKV{partitions: n, readyAt: time.Now().Add(delay), keyspaces: map[string]int{}, keyspacesReadyAt: time.Now().Add(ksDelay)}
		for _, kv := range strings.Fields(os.Getenv("CLUSTER_TEST_KEYSPACES")) {
			name, parts, _ := strings.Cut(kv, "=")
			f.keyspaces[name], _ = strconv.Atoi(parts)
		}
		plugdbv1.RegisterKVServer(s, f)
		go s.Serve(lis)
	}
	<-sig
	fmt.Println("stopping on signal")
	return 0
}

type fakeKV struct {
	plugdbv1.UnimplementedKVServer
	partitions int
	readyAt    time.Time // no leaders before
	// keyspaces are the partition counts of the keyspaces besides the
	// default one (CLUSTER_TEST_KEYSPACES="events=3"), which have no leaders
	// before keyspacesReadyAt.
	keyspaces        map[string]int
	keyspacesReadyAt time.Time
}

func (f *fakeKV) Status(_ context.Context, req *plugdbv1.StatusRequest) (*plugdbv1.StatusResponse, error) {
	st := &plugdbv1.StatusResponse{Cluster: "test"}
	n, ready := f.partitions, f.readyAt
	if ks := req.GetKeyspace(); ks != "" {
		var ok bool
		if n, ok = f.keyspaces[ks]; !ok {
			return nil, status.Errorf(codes.InvalidArgument, "keyspace %q unknown", ks)
		}
		ready = f.keyspacesReadyAt
	}
	if time.Now().Before(ready) {
		return st, nil
	}
	for p := 0; p < n; p++ {
		st.Partitions = append(st.Partitions, &plugdbv1.PartitionStatus{Partition: uint32(p), Epoch: 1, Replicas: []*plugdbv1.Replica{
			{Partition: uint32(p), Addr: "a", Role: "leader"}, {Partition: uint32(p), Addr: "b", Role: "follower"}}})
	}
	return st, nil
}

// fakeZK is an Ensemble of sleeping children.
type fakeZK struct {
	servers []string
	cmds    []*exec.Cmd
	dir     string
}

func startFakeZK(_ context.Context, dir string, clients []string) (Ensemble, error) {
	z := &fakeZK{servers: clients, dir: dir}
	for range clients {
		cmd := exec.Command(os.Args[0], "zookeeper")
		cmd.Env = append(os.Environ(), "PLUGDB_TEST_ROLE=cluster-child")
		if err := cmd.Start(); err != nil {
			z.Stop()
			return nil, err
		}
		z.cmds = append(z.cmds, cmd)
	}
	return z, nil
}

func (z *fakeZK) Servers() []string { return z.servers }
func (z *fakeZK) PIDs() []int {
	var out []int
	for _, c := range z.cmds {
		out = append(out, c.Process.Pid)
	}
	return out
}
func (z *fakeZK) LogFile(i int) string {
	return filepath.Join(z.dir, fmt.Sprintf("zk%d", i+1), "zookeeper.log")
}
func (z *fakeZK) Stop() error {
	for _, c := range z.cmds {
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
	}
	return nil
}

// lockedBuffer is an io.Writer the supervisor and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testOptions(t *testing.T, zookeepers int, env ...string) (Options, *lockedBuffer) {
	t.Helper()
	cfg := config.Default()
	cfg.Router.GRPC, cfg.Router.HTTP = testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg.Nodes = config.Nodes{Replicas: 2, BasePort: testutil.FreePortRun(t, 4)}
	cfg.ZooKeeper.Servers = []string{addr(testutil.FreePortRun(t, 3))}
	out := &lockedBuffer{}
	return Options{
		Config:     cfg,
		Dir:        filepath.Join(t.TempDir(), "cluster"),
		Binary:     os.Args[0],
		ZooKeepers: zookeepers,
		Env: append(os.Environ(), append([]string{"PLUGDB_TEST_ROLE=cluster-child", "CLUSTER_TEST_PARTITIONS=2",
			"CLUSTER_TEST_GRPC=" + cfg.Router.GRPC}, env...)...),
		Out:            out,
		StartZooKeeper: startFakeZK,
		ReadyTimeout:   30 * time.Second,
		StopGrace:      5 * time.Second,
	}, out
}

// addr is 127.0.0.1:port.
func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// nodeAddr is the address of partition p's replica r under opts (2 replicas
// a partition, counted up from the base port).
func nodeAddr(opts Options, p, r int) string {
	return addr(opts.Config.Nodes.BasePort + p*opts.Config.Nodes.Replicas + r)
}

// zkAddrs are the addresses of n ZooKeeper servers under opts: the
// configured one and the ports after it.
func zkAddrs(opts Options, n int) []string {
	_, port, _ := net.SplitHostPort(opts.Config.ZooKeeper.Servers[0])
	first, _ := strconv.Atoi(port)
	var out []string
	for i := range n {
		out = append(out, addr(first+i))
	}
	return out
}

func startTest(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, opts.Out)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

func TestStartStop(t *testing.T) {
	for _, zks := range []int{1, 3} {
		t.Run(fmt.Sprintf("zookeepers=%d", zks), func(t *testing.T) {
			opts, out := testOptions(t, zks)
			c := startTest(t, opts)
			rec, err := ReadRecord(opts.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if !rec.Ready || rec.Supervisor.PID != os.Getpid() || rec.GRPC != opts.Config.Router.GRPC {
				t.Fatalf("record %+v", rec)
			}
			if len(rec.Children) != zks+1+4 {
				t.Fatalf("record has %d children, want %d: %+v", len(rec.Children), zks+5, rec.Children)
			}
			wantZK := zkAddrs(opts, zks)
			if strings.Join(rec.ZooKeeper, ",") != strings.Join(wantZK, ",") {
				t.Fatalf("zookeeper %v, want %v", rec.ZooKeeper, wantZK)
			}
			for _, p := range rec.Children {
				if !p.Alive() {
					t.Errorf("%s not alive", p)
				}
			}
			// Nodes got their addresses, data folders and every ZooKeeper server.
			// (The fake node may not have written its line yet.)
			var log []byte
			testutil.WaitFor(t, 10*time.Second, func() bool {
				log, _ = os.ReadFile(filepath.Join(opts.Dir, "logs", "node-p1-r1.log"))
				return bytes.Contains(log, []byte("zk="))
			}, "node-p1-r1.log to name its ZooKeeper servers")
			for _, want := range []string{"--partition 1 --addr " + nodeAddr(opts, 1, 1) + " --data " + filepath.Join(opts.Dir, "data", "p1-r1"),
				"zk=" + strings.Join(wantZK, ",")} {
				if !strings.Contains(string(log), want) {
					t.Errorf("node-p1-r1.log does not say %q:\n%s", want, log)
				}
			}
			for _, want := range []string{"ready in", "status: cluster test; partition 0 leader a + 1 follower(s)", "node-p1-r0   " + nodeAddr(opts, 1, 0)} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output does not say %q:\n%s", want, out)
				}
			}
			if err := c.Stop(); err != nil {
				t.Fatal(err)
			}
			for _, p := range rec.Children {
				if p.Alive() {
					t.Errorf("%s still alive after Stop", p)
				}
			}
			if _, err := ReadRecord(opts.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("record not removed: %v", err)
			}
			if strings.Contains(out.String(), "exited") {
				t.Errorf("a stop was reported as a death:\n%s", out)
			}
			// A second start reuses the folder.
			c2 := startTest(t, opts)
			c2.Stop()
		})
	}
}

// TestStartKeyspaces: a keyspace's nodes are started too, with --keyspace,
// their own names, ports and data folders, and the cluster is ready only
// once every partition of every keyspace has a leader.
func TestStartKeyspaces(t *testing.T) {
	opts, out := testOptions(t, 1, "CLUSTER_TEST_KEYSPACES=events=3", "CLUSTER_TEST_KEYSPACE_DELAY=1500ms")
	opts.Config.Keyspaces = map[string]config.Keyspace{"events": {Partitions: 3, Partitioner: config.Plugin{Plugin: "range"}}}
	opts.Config.Nodes.BasePort = testutil.FreePortRun(t, 2*2+3*2)
	c := startTest(t, opts)
	rec := c.Record()
	if len(rec.Children) != 1+1+4+6 {
		t.Fatalf("record has %d children, want 12: %+v", len(rec.Children), rec.Children)
	}
	byName := map[string]Process{}
	for _, p := range rec.Children {
		byName[p.Name] = p
	}
	// events follows the default keyspace's 2 × 2 nodes on the ports.
	ev := byName["node-events-p2-r1"]
	if want := addr(opts.Config.Nodes.BasePort + 2*2 + 2*2 + 1); ev.Addr != want {
		t.Fatalf("node-events-p2-r1 at %q, want %s (%+v)", ev.Addr, want, rec.Children)
	}
	if _, ok := byName["node-p1-r1"]; !ok {
		t.Fatalf("no node-p1-r1 in %+v", rec.Children)
	}
	var log []byte
	testutil.WaitFor(t, 10*time.Second, func() bool {
		log, _ = os.ReadFile(filepath.Join(opts.Dir, "logs", "node-events-p2-r1.log"))
		return bytes.Contains(log, []byte("zk="))
	}, "node-events-p2-r1.log to name its ZooKeeper servers")
	want := "--partition 2 --addr " + ev.Addr + " --keyspace events --data " + filepath.Join(opts.Dir, "data", "keyspaces", "events", "p2-r1")
	if !strings.Contains(string(log), want) {
		t.Errorf("node-events-p2-r1.log does not say %q:\n%s", want, log)
	}
	for _, want := range []string{"keyspaces: default (2 partitions, hash, none), events (3 partitions, range, none)",
		"keyspace events: partition 0 no leader yet", "status of keyspace events: cluster test;", "partition 2 leader a + 1 follower(s)", "ready in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range rec.Children {
		if p.Alive() {
			t.Errorf("%s still alive after Stop", p)
		}
	}
}

func TestChildFailsDuringStart(t *testing.T) {
	opts, _ := testOptions(t, 1, "CLUSTER_TEST_DELAY=2s")
	opts.Env = append(opts.Env, "CLUSTER_TEST_FAIL=--addr "+nodeAddr(opts, 1, 1))
	_, err := Start(context.Background(), opts)
	if err == nil {
		t.Fatal("Start succeeded although node-p1-r1 failed")
	}
	for _, want := range []string{"node-p1-r1 exited while the cluster was starting (exit status 3)", "boom: cannot start"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if _, err := ReadRecord(opts.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record left after a failed start: %v", err)
	}
}

func TestSecondStartRefused(t *testing.T) {
	opts, _ := testOptions(t, 1)
	startTest(t, opts)
	_, err := Start(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "a cluster is already running from") || !strings.Contains(err.Error(), "plugdb cluster down --dir") {
		t.Fatalf("second Start: %v", err)
	}
}

func TestChildDeathReportedAndLeftDown(t *testing.T) {
	opts, out := testOptions(t, 1)
	c := startTest(t, opts)
	var leader Process
	for _, p := range c.Record().Children {
		if p.Name == "node-p0-r0" {
			leader = p
		}
	}
	syscall.Kill(leader.PID, syscall.SIGKILL)
	death := "node-p0-r0 (" + nodeAddr(opts, 0, 0) + ", pid"
	if !testutil.Eventually(t.Context(), 10*time.Second, func() bool { return strings.Contains(out.String(), death) }) {
		t.Fatalf("death not reported:\n%s", out)
	}
	if !testutil.Eventually(t.Context(), 10*time.Second, func() bool {
		return strings.Contains(out.String(), "exited: signal: killed; it stays down")
	}) {
		t.Fatalf("report:\n%s", out)
	}
	if leader.Alive() {
		t.Fatal("killed node alive again")
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestDownLeftovers: Down after the supervisor died kills the children it
// left, and leaves alone a process whose PID is recorded with another start.
func TestDownLeftovers(t *testing.T) {
	dir := t.TempDir()
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "node")
		cmd.Env = append(os.Environ(), "PLUGDB_TEST_ROLE=cluster-child")
		setChildAttrs(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	a, b := start(), start()
	idA, _, err := identify(a.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	idB, _, _ := identify(b.Process.Pid)
	idB.Start++ // as if the PID had been reused by another process
	dead := exec.Command("true")
	dead.Run()
	rec := Record{Dir: dir, Supervisor: Process{Name: "supervisor", procID: procID{PID: dead.Process.Pid, Start: 1, Cmdline: []string{"x"}}},
		Children: []Process{{Name: "node-p0-r0", procID: idA}, {Name: "node-p0-r1", procID: idB}}}
	if err := writeRecord(dir, rec); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Wait() }()
	var out bytes.Buffer
	if err := Down(context.Background(), dir, &out, 2*time.Second); err != nil {
		t.Fatalf("Down: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("leftover child still running")
	}
	if b.ProcessState != nil || syscall.Kill(b.Process.Pid, 0) != nil {
		t.Fatal("Down signalled a process that is not the recorded one")
	}
	if !strings.Contains(out.String(), "stopped: node-p0-r0 (pid") || strings.Contains(out.String(), "node-p0-r1") {
		t.Fatalf("Down said:\n%s", out.String())
	}
	if _, err := ReadRecord(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record not removed: %v", err)
	}
}

func TestDownNothing(t *testing.T) {
	var out bytes.Buffer
	err := Down(context.Background(), filepath.Join(t.TempDir(), "nope"), &out, time.Second)
	if !errors.Is(err, ErrNotCluster) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing folder: %v", err)
	}
	dir := t.TempDir()
	if err := Down(context.Background(), dir, &out, time.Second); !errors.Is(err, ErrNotCluster) {
		t.Fatalf("empty folder: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "cluster.lock"), nil, 0o644)
	if err := Down(context.Background(), dir, &out, time.Second); err != nil || !strings.Contains(out.String(), "nothing to stop") {
		t.Fatalf("stopped folder: %v %q", err, out.String())
	}
}

func TestZooKeeperAddrs(t *testing.T) {
	got, err := ZooKeeperAddrs([]string{"127.0.0.1:2181", "x:1"}, 3)
	if err != nil || strings.Join(got, ",") != "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183" {
		t.Fatalf("3 servers: %v %v", got, err)
	}
	if got, _ := ZooKeeperAddrs([]string{"127.0.0.1:2181"}, 1); len(got) != 1 {
		t.Fatalf("1 server: %v", got)
	}
	for _, tc := range []struct {
		servers []string
		n       int
		want    string
	}{
		{[]string{"127.0.0.1:2181"}, 2, "allowed are 1 or 3"},
		{[]string{"10.0.0.1:2181"}, 1, "on loopback"},
		{[]string{"127.0.0.1:65534"}, 3, "bad port"},
	} {
		if _, err := ZooKeeperAddrs(tc.servers, tc.n); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v ×%d: %v, want %q", tc.servers, tc.n, err, tc.want)
		}
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	os.WriteFile(path, []byte("old\n"+strings.Repeat("a\n", 5)+"last one\n"), 0o644)
	if got := tailFile(path, 4, 2); got != "    a\n    last one" {
		t.Fatalf("tail = %q", got)
	}
	if got := tailFile(path, 0, 100); !strings.HasPrefix(got, "    old\n") {
		t.Fatalf("tail = %q", got)
	}
}

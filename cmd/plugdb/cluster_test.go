package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/internal/testutil"
)

// End-to-end tests of `plugdb cluster up|down`: the real binary, a real
// ZooKeeper, the router and four nodes, on free 127.0.0.1 ports (never the
// defaults 7070, 8080, 2181) and a temp cluster folder.

// clusterConfig writes a cluster config on free ports and returns its path
// and the router's gRPC address.
func clusterConfig(t *testing.T, zookeepers int) (path, grpcAddr string) {
	t.Helper()
	zk := testutil.FreePortRun(t, zookeepers)
	nodes := testutil.FreePortRun(t, 4)
	metricsPorts := testutil.FreePortRun(t, 4)
	grpcAddr = testutil.FreeAddr(t)
	text := fmt.Sprintf(`cluster: e2e
partitions: 2
zookeeper: {servers: ["127.0.0.1:%d"], session_timeout: 2s}
engine: {plugin: rowfile, options: {sync: batch}}
replicator: {plugin: none}
router: {grpc: "%s", http: "%s"}
nodes: {replicas: 2, base_port: %d}
metrics: {base_port: %d}
`, zk, grpcAddr, testutil.FreeAddr(t), nodes, metricsPorts)
	path = filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, grpcAddr
}

// upProc is a running `plugdb cluster up`.
type upProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	waitErr        error
}

func (u *upProc) output() string {
	return fmt.Sprintf("--- stdout:\n%s--- stderr:\n%s", u.stdout.String(), u.stderr.String())
}

func (u *upProc) exited() bool {
	select {
	case <-u.done:
		return true
	default:
		return false
	}
}

var readyLine = regexp.MustCompile(`(?m)^ready in (\S+);`)

// startClusterUp starts `plugdb cluster up --dir dir --config cfg
// --zookeepers n [extra…]` in the background and waits until it prints that
// it is ready. At cleanup, a cluster the test left running is stopped with
// `plugdb cluster down`.
func startClusterUp(t *testing.T, dir, cfg string, zookeepers int, extra ...string) *upProc {
	t.Helper()
	u := &upProc{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	u.cmd = exec.Command(plugdbBin, append([]string{"cluster", "up", "--dir", dir, "--config", cfg, "--zookeepers", strconv.Itoa(zookeepers)}, extra...)...)
	u.cmd.Env = devEnv()
	u.cmd.Dir = t.TempDir()
	u.cmd.Stdout, u.cmd.Stderr = u.stdout, u.stderr
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	u.cmd.WaitDelay = 5 * time.Second
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		u.waitErr = u.cmd.Wait()
		close(u.done)
	}()
	t.Cleanup(func() {
		if _, err := cluster.ReadRecord(dir); err == nil {
			exec.Command(plugdbBin, "cluster", "down", "--dir", dir).Run()
		}
		if !u.exited() {
			syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
			<-u.done
		}
	})
	var m []string
	if !testutil.Eventually(t.Context(), 2*time.Minute, func() bool {
		m = readyLine.FindStringSubmatch(u.stdout.String())
		return m != nil || u.exited()
	}) {
		t.Fatalf("plugdb cluster up not ready after 2 minutes\n%s", u.output())
	}
	if m == nil {
		t.Fatalf("plugdb cluster up exited before ready: %v\n%s", u.waitErr, u.output())
	}
	t.Logf("plugdb cluster up --zookeepers %d: ready in %s", zookeepers, m[1])
	return u
}

// waitExit waits (bounded) for `plugdb cluster up` to exit and returns its code.
func (u *upProc) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-u.done:
	case <-time.After(d):
		t.Fatalf("plugdb cluster up still running %v after down\n%s", d, u.output())
	}
	return u.cmd.ProcessState.ExitCode()
}

// recorded returns every process in dir's record, the supervisor first.
func recorded(t *testing.T, dir string) []cluster.Process {
	t.Helper()
	rec, err := cluster.ReadRecord(dir)
	if err != nil {
		t.Fatalf("read record: %v", err)
	}
	return append([]cluster.Process{rec.Supervisor}, rec.Children...)
}

// runningWith lists the running processes (no zombies) whose command line
// or environment contains s.
func runningWith(s string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if !strings.Contains(string(cmdline), s) && !strings.Contains(string(environ), s) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			continue
		}
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return out
}

// assertAllGone checks that no recorded process runs, and no process that
// names dir or has the cluster's ZooKeeper servers in its environment (as
// the supervisor gives them to the router and the nodes, who hand their
// environment to their plugins) is left.
func assertAllGone(t *testing.T, procs []cluster.Process, dir string, zk []string) {
	t.Helper()
	var left []string
	if !testutil.Eventually(t.Context(), 10*time.Second, func() bool {
		left = nil
		for _, p := range procs {
			if p.Alive() {
				left = append(left, p.String())
			}
		}
		left = append(left, runningWith(dir)...)
		left = append(left, runningWith("PLUGDB_ZOOKEEPER_SERVERS="+strings.Join(zk, ",")+"\x00")...)
		return len(left) == 0
	}) {
		t.Fatalf("still running after down:\n%s", strings.Join(left, "\n"))
	}
}

func TestClusterUpDown(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cluster")
	cfg, grpcAddr := clusterConfig(t, 1)
	up := startClusterUp(t, dir, cfg, 1)
	procs := recorded(t, dir)
	rec, _ := cluster.ReadRecord(dir)
	if len(procs) != 1+1+1+4 {
		t.Fatalf("record has %d processes, want supervisor, zookeeper, router, 4 nodes: %v", len(procs), procs)
	}
	for _, p := range procs {
		if !p.Alive() {
			t.Fatalf("%s not running\n%s", p, up.output())
		}
	}
	// The check of assertAllGone sees the router, the nodes and their plugins.
	if n := len(runningWith("PLUGDB_ZOOKEEPER_SERVERS=" + strings.Join(rec.ZooKeeper, ",") + "\x00")); n < 5 {
		t.Fatalf("%d processes have the cluster's ZooKeeper in their environment, want the router, 4 nodes and their plugins", n)
	}
	// Its znodes are protected by the credentials cluster up made.
	if rec.ZooKeeperAuth != filepath.Join(dir, cluster.AuthFile) {
		t.Errorf("credentials %q, want %s", rec.ZooKeeperAuth, filepath.Join(dir, cluster.AuthFile))
	}
	assertZooKeeperRefuses(t, rec.ZooKeeper, "/plugdb/e2e")
	for _, want := range []string{"status: cluster e2e; partition 0 leader", "partition 1 leader", "node-p1-r1", "router gRPC  " + grpcAddr} {
		if !strings.Contains(up.stdout.String(), want) {
			t.Errorf("cluster up did not print %q\n%s", want, up.output())
		}
	}

	// Every node serves its metrics on the address it was given
	// (metrics.base_port), printed and recorded.
	for _, p := range rec.Children {
		if !strings.HasPrefix(p.Name, "node-") {
			continue
		}
		if p.Metrics == "" || !strings.Contains(up.stdout.String(), "metrics http://"+p.Metrics+"/metrics") {
			t.Errorf("%s: metrics address %q not recorded or not printed\n%s", p.Name, p.Metrics, up.output())
			continue
		}
		if !testutil.Eventually(t.Context(), 30*time.Second, func() bool { code, _ := healthz(p.Metrics); return code == 200 }) {
			code, body := healthz(p.Metrics)
			t.Errorf("%s: /healthz at %s: %d %s", p.Name, p.Metrics, code, body)
		}
	}

	// The cluster serves through its router.
	if res := runPlugdb(t, 30*time.Second, "put", "user:1", "ada", "--addr", grpcAddr); res.code != 0 {
		t.Fatalf("put\n%s", res)
	}
	if res := runPlugdb(t, 30*time.Second, "get", "user:1", "--addr", grpcAddr); res.code != 0 || res.stdout != "ada\n" {
		t.Fatalf("get\n%s", res)
	}

	// A second up on the same folder refuses while the cluster runs.
	second := runPlugdb(t, time.Minute, "cluster", "up", "--dir", dir, "--config", cfg)
	if second.code != 2 || !strings.Contains(second.stderr, "is already running from") || !strings.Contains(second.stderr, "plugdb cluster down --dir") {
		t.Fatalf("second cluster up on a running folder\n%s", second)
	}

	down := runPlugdb(t, 2*time.Minute, "cluster", "down", "--dir", dir)
	if down.code != 0 || !strings.Contains(down.stdout, "stopped: supervisor (pid") || !strings.Contains(down.stdout, "node-p1-r1 (pid") {
		t.Fatalf("cluster down\n%s", down)
	}
	if code := up.waitExit(t, time.Minute); code != 0 {
		t.Fatalf("cluster up exited %d after down\n%s", code, up.output())
	}
	assertAllGone(t, procs, dir, rec.ZooKeeper)
	if _, err := os.Stat(filepath.Join(dir, cluster.RecordFile)); !os.IsNotExist(err) {
		t.Fatalf("record left after down: %v", err)
	}
	if again := runPlugdb(t, time.Minute, "cluster", "down", "--dir", dir); again.code != 0 || !strings.Contains(again.stdout, "nothing to stop") {
		t.Fatalf("cluster down with nothing running\n%s", again)
	}
	if res := runPlugdb(t, time.Minute, "cluster", "down", "--dir", t.TempDir()); res.code != 2 || !strings.Contains(res.stderr, "not a plugdb cluster folder") {
		t.Fatalf("cluster down on a folder that is no cluster's\n%s", res)
	}

	// A second up reuses the folder; down after the supervisor was killed
	// with SIGKILL stops what it left.
	up = startClusterUp(t, dir, cfg, 1)
	procs = recorded(t, dir)
	for _, p := range []string{"p0-r0", "p1-r1"} {
		if _, err := os.Stat(filepath.Join(dir, "data", p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	up.waitExit(t, 10*time.Second)
	down = runPlugdb(t, 2*time.Minute, "cluster", "down", "--dir", dir)
	if down.code != 0 {
		t.Fatalf("cluster down after the supervisor was killed\n%s", down)
	}
	t.Logf("down after kill -9 of the supervisor: %s", strings.TrimSpace(down.stdout))
	assertAllGone(t, procs, dir, rec.ZooKeeper)
}

func TestClusterUpDownThreeZooKeepers(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cluster")
	cfg, grpcAddr := clusterConfig(t, 3)
	up := startClusterUp(t, dir, cfg, 3)
	procs := recorded(t, dir)
	rec, _ := cluster.ReadRecord(dir)
	if len(procs) != 1+3+1+4 {
		t.Fatalf("record has %d processes, want supervisor, 3 zookeepers, router, 4 nodes: %v", len(procs), procs)
	}
	if len(rec.ZooKeeper) != 3 {
		t.Fatalf("zookeeper %v, want 3 servers", rec.ZooKeeper)
	}
	for _, p := range procs {
		if !p.Alive() {
			t.Fatalf("%s not running\n%s", p, up.output())
		}
	}
	// Every node was given the whole ensemble.
	log, _ := os.ReadFile(filepath.Join(dir, "logs", "node-p0-r0.log"))
	if want := "ZooKeeper [" + strings.Join(rec.ZooKeeper, " ") + "]"; !strings.Contains(string(log), want) {
		t.Errorf("node-p0-r0.log does not say %q:\n%s", want, log)
	}
	if res := runPlugdb(t, 30*time.Second, "put", "k", "v", "--addr", grpcAddr); res.code != 0 {
		t.Fatalf("put\n%s", res)
	}
	down := runPlugdb(t, 2*time.Minute, "cluster", "down", "--dir", dir)
	if down.code != 0 || !strings.Contains(down.stdout, "zookeeper-3 (pid") {
		t.Fatalf("cluster down\n%s", down)
	}
	if code := up.waitExit(t, time.Minute); code != 0 {
		t.Fatalf("cluster up exited %d after down\n%s", code, up.output())
	}
	assertAllGone(t, procs, dir, rec.ZooKeeper)
}

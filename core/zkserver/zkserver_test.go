package zkserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/plugdb/plugdb/internal/testutil"
)

// testTimeout bounds every start and wait in these tests (never asserted on).
const testTimeout = 90 * time.Second

func TestFindNotInstalledSaysHowToInstall(t *testing.T) {
	_, err := find("/nonexistent/zookeeper.jar", "/nonexistent", []string{"/usr/bin/java"})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
	for _, want := range []string{"ZooKeeper not found", "/nonexistent/zookeeper.jar", "sudo apt-get install zookeeper"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	jar := filepath.Join(t.TempDir(), "zookeeper.jar")
	if err := os.WriteFile(jar, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = find(jar, "/nonexistent", []string{"/nonexistent/java"})
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "sudo apt-get install default-jre-headless") {
		t.Fatalf("err = %v, want ErrNotInstalled saying how to install java", err)
	}
}

func TestFindDebian(t *testing.T) {
	in, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	if in.ClassPath[0] != debianJar || !in.Logging || in.Version == "" {
		t.Fatalf("Find() = %+v, want Debian's jar first, a log binding and a version", in)
	}
}

func TestFindCLI(t *testing.T) {
	if p, err := FindCLI(); err != nil || p != debianCLI {
		t.Fatalf("FindCLI() = %q, %v, want Debian's %s", p, err, debianCLI)
	}
	t.Setenv("PATH", t.TempDir())
	_, err := findCLI("/nonexistent/zkCli.sh")
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "sudo apt-get install zookeeper") {
		t.Fatalf("err = %v, want ErrNotInstalled saying how to install zkCli.sh", err)
	}
}

func TestDefaultPeersFollowTheRule(t *testing.T) {
	clients := []int{21810, 21811, 21812}
	for _, p := range clients {
		for _, q := range []int{p + quorumOffset, p + electionOffset} {
			if !portFree(loopback, q) {
				t.Skipf("port %d is taken on this machine", q)
			}
		}
	}
	peers, err := defaultPeers(clients)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range clients {
		if want := (PeerPorts{p + quorumOffset, p + electionOffset}); peers[i] != want {
			t.Errorf("peers[%d] = %+v, want %+v", i, peers[i], want)
		}
	}
	// Near the top of the range the offsets go down.
	peers, err = defaultPeers([]int{60000})
	if err != nil {
		t.Fatal(err)
	}
	if p := peers[0]; p.Quorum > 65535 || p.Election > 65535 || p.Quorum == p.Election {
		t.Errorf("peers for 60000 = %+v", p)
	}
}

func TestStandaloneStartRuokStop(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, 1)
	addr := e.Servers()[0]
	if e.ConnectString() != addr {
		t.Errorf("ConnectString() = %q, want %q", e.ConnectString(), addr)
	}
	ctx := testCtx(t)
	if err := Ruok(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if mode, err := Mode(ctx, addr); err != nil || mode != "standalone" {
		t.Fatalf("Mode() = %q, %v; want standalone", mode, err)
	}
	// The server logs to its file, not to our stdout.
	if b, err := os.ReadFile(e.LogFile(0)); err != nil || !strings.Contains(string(b), "QuorumPeerMain") {
		t.Errorf("log %s has no ZooKeeper lines (err %v)", e.LogFile(0), err)
	}
	// Only a whitelisted four-letter word is answered.
	if ans, err := FourLetter(ctx, addr, "conf"); err == nil && strings.Contains(ans, "dataDir") {
		t.Errorf("conf answered although not whitelisted: %q", ans)
	}

	pid := e.PIDs()[0]
	if pid == 0 {
		t.Fatal("no PID")
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pid %d still exists after Stop (kill -0: %v)", pid, err)
	}
	if got := e.PIDs()[0]; got != 0 {
		t.Errorf("PIDs() after Stop = %d, want 0", got)
	}
	if err := Ruok(ctx, addr); err == nil {
		t.Error("ruok answered after Stop")
	}
	if err := e.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := e.StartServer(ctx, 0); err == nil {
		t.Error("StartServer after Stop succeeded")
	}
}

func TestRestartOnSameDirKeepsZnodes(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, 1)
	clients := e.Servers()

	c := connect(t, e.Servers())
	if _, err := c.Create("/kept", []byte("across restarts"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// The Dir is ours while running.
	if _, err := Start(testCtx(t), Options{Dir: dir, Clients: []string{testutil.FreeAddr(t)}}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Start on a running Dir: err = %v, want locked", err)
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}

	e2, err := Start(testCtx(t), Options{Dir: dir, Clients: clients})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e2.Stop() })
	c = connect(t, e2.Servers())
	data, _, err := c.Get("/kept")
	if err != nil || string(data) != "across restarts" {
		t.Fatalf("Get(/kept) after restart = %q, %v", data, err)
	}
}

func TestStartFailureStopsWhatItStarted(t *testing.T) {
	// A client port already in use is refused before any JVM starts.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(testCtx(t), Options{Dir: t.TempDir(), Clients: []string{l.Addr().String()}})
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Start on a used port: err = %v, want ErrPortInUse", err)
	}

	// A server that cannot use its data folder exits; the error quotes its log.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "zk1", "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zk1", "data", "version-2"), []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Start(testCtx(t), Options{Dir: dir, Clients: []string{testutil.FreeAddr(t)}})
	if err == nil {
		t.Fatal("Start with a broken data folder succeeded")
	}
	if !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "last lines of "+filepath.Join(dir, "zk1", logFile)) {
		t.Errorf("err = %v, want the exit and the log's last lines", err)
	}
	if testing.Verbose() {
		t.Logf("start error: %v", err)
	}
	if pids := processesUsing(t, dir); len(pids) > 0 {
		t.Fatalf("processes %v still run from %s after a failed Start", pids, dir)
	}

	// A start that cannot finish in time kills its JVM.
	dir = t.TempDir()
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	_, err = Start(ctx, Options{Dir: dir, Clients: []string{testutil.FreeAddr(t)}})
	if err == nil {
		t.Skip("ZooKeeper served within 50ms; cannot test a timed-out start here")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if pids := processesUsing(t, dir); len(pids) > 0 {
		t.Fatalf("processes %v still run from %s after a failed Start", pids, dir)
	}

	// A bad option is refused.
	for _, clients := range [][]string{nil, {"127.0.0.1:1", "127.0.0.1:2"}, {"0.0.0.0:2181"}, {"localhost:2181"}} {
		if _, err := Start(testCtx(t), Options{Dir: t.TempDir(), Clients: clients}); err == nil {
			t.Errorf("Start with clients %q succeeded", clients)
		}
	}
}

func TestEnsembleSurvivesOneServerStopping(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, 3)
	ctx := testCtx(t)
	leader := -1
	for i, a := range e.Servers() {
		mode, err := Mode(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if mode == "leader" {
			leader = i
		} else if mode != "follower" {
			t.Fatalf("server %d mode %q", i, mode)
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}

	c := connect(t, e.Servers())
	if _, err := c.Create("/before", []byte("1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	if err := e.StopServer(leader); err != nil {
		t.Fatal(err)
	}
	if e.PIDs()[leader] != 0 {
		t.Fatal("stopped server still has a PID")
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatalf("the other two do not serve: %v", err)
	}
	var rest []string
	for i, a := range e.Servers() {
		if i != leader {
			rest = append(rest, a)
		}
	}
	c = connect(t, rest)
	if _, err := c.Create("/during", []byte("2"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("write with one server down: %v", err)
	}
	c.Close()

	if err := e.StartServer(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if mode, err := Mode(ctx, e.Servers()[leader]); err != nil || (mode != "follower" && mode != "leader") {
		t.Fatalf("restarted server: mode %q, %v", mode, err)
	}
	c = connect(t, e.Servers()[leader:leader+1])
	if _, err := c.Sync("/"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/before", "/during"} {
		if ok, _, err := c.Exists(p); err != nil || !ok {
			t.Errorf("restarted server: %s exists = %v, %v", p, ok, err)
		}
	}
	c.Close()

	// An outage: with every server stopped, the first one back answers ruok
	// but cannot serve alone; the second one back makes a quorum.
	for i := range e.Servers() {
		if err := e.StopServer(i); err != nil {
			t.Fatal(err)
		}
		if err := Ruok(ctx, e.Servers()[i]); err == nil {
			t.Fatalf("server %d answers after StopServer", i)
		}
	}
	if err := e.StartServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if mode, err := Mode(ctx, e.Servers()[0]); err == nil {
		t.Fatalf("a lone ensemble member serves as %s", mode)
	}
	for _, i := range []int{1, 2} {
		if err := e.StartServer(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	c = connect(t, e.Servers())
	for _, p := range []string{"/before", "/during"} {
		if ok, _, err := c.Exists(p); err != nil || !ok {
			t.Errorf("after the outage: %s exists = %v, %v", p, ok, err)
		}
	}
	c.Close()

	// The whole ensemble restarted on the same Dir keeps its znodes.
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	e2, err := Start(ctx, Options{Dir: dir, Clients: e.Servers(), Peers: e.Peers()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e2.Stop() })
	c = connect(t, e2.Servers())
	for _, p := range []string{"/before", "/during"} {
		if ok, _, err := c.Exists(p); err != nil || !ok {
			t.Errorf("restarted ensemble: %s exists = %v, %v", p, ok, err)
		}
	}
}

func TestListensOnLoopbackOnly(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	e := start(t, t.TempDir(), 3)
	for i, pid := range e.PIDs() {
		own := map[int]bool{e.servers[i].client: true, e.Peers()[i].Quorum: true, e.Peers()[i].Election: true}
		socks := listening(t, pid)
		if len(socks) == 0 {
			t.Fatalf("pid %d listens nowhere", pid)
		}
		var sawClient bool
		for _, s := range socks {
			if !s.ip.Equal(net.IPv4(127, 0, 0, 1)) || !own[s.port] {
				t.Errorf("server %d (pid %d) listens on %s %s:%d", i, pid, s.proto, s.ip, s.port)
			}
			sawClient = sawClient || s.port == e.servers[i].client
		}
		if !sawClient {
			t.Errorf("server %d does not listen on its client port", i)
		}
	}
}

// start starts n servers on free ports under dir, stopped at cleanup.
func start(t *testing.T, dir string, n int) *Ensemble {
	t.Helper()
	clients := make([]string, n)
	for i := range clients {
		clients[i] = testutil.FreeAddr(t)
	}
	e, err := Start(testCtx(t), Options{Dir: dir, Clients: clients})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// connect opens a ZooKeeper session on servers, closed at cleanup.
func connect(t *testing.T, servers []string) *zk.Conn {
	t.Helper()
	c, events, err := zk.Connect(servers, 10*time.Second, zk.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := testCtx(t)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return c
			}
		case <-ctx.Done():
			t.Fatalf("no ZooKeeper session with %v: %v", servers, ctx.Err())
		}
	}
}

type sock struct {
	proto string
	ip    net.IP
	port  int
}

// listening returns the TCP sockets pid listens on and the UDP sockets it
// has bound, from /proc.
func listening(t *testing.T, pid int) []sock {
	t.Helper()
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var socks []sock
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			if strings.HasPrefix(proto, "tcp") && fields[3] != "0A" { // LISTEN
				continue
			}
			ip, port := parseProcAddr(t, fields[1])
			socks = append(socks, sock{proto, ip, port})
		}
		f.Close()
	}
	return socks
}

// parseProcAddr decodes /proc/net's "hexip:hexport" (IP words in host order,
// little-endian here).
func parseProcAddr(t *testing.T, s string) (net.IP, int) {
	t.Helper()
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || len(h)%8 != 0 {
		t.Fatalf("bad /proc address %q", s)
	}
	ip := make(net.IP, 0, len(h)/2)
	for w := 0; w < len(h); w += 8 {
		v, err := strconv.ParseUint(h[w:w+8], 16, 32)
		if err != nil {
			t.Fatalf("bad /proc address %q", s)
		}
		ip = append(ip, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	return ip, int(port)
}

// processesUsing returns the PIDs of processes whose command line mentions dir.
func processesUsing(t *testing.T, dir string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Package zkserver starts and stops a local ZooKeeper server or 3-server
// ensemble from the system's install (Debian's zookeeper package), on
// 127.0.0.1 only, with its data and logs under one folder.
//
// Each server is a JVM running QuorumPeerMain that this package starts in its
// own process group and stops by PID. Server i (0-based) lives in Dir/zk<i+1>:
// zoo.cfg, log4j.properties, zookeeper.log (the server's log), zookeeper.out
// (the JVM's own stdout and stderr) and data/ (snapshots, transaction logs,
// myid). Starting again from the same Dir keeps the data; two Starts never
// share a Dir at once (it is locked while running).
//
// Everything listens on 127.0.0.1 only unless Options.Clients name another
// address: the client ports given in Options, and for an ensemble each
// server's quorum and election ports (Options.Peers, or by default client
// port +10000 and +20000) on its client address's host. Options.Wrap and
// Options.Dial run the servers elsewhere, such as one per Linux network
// namespace, each on its own address (a test of several hosts on one machine). There is no admin server and
// no JMX port; the four-letter words ruok, srvr and mntr are allowed.
package zkserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

const (
	loopback = "127.0.0.1"
	logFile  = "zookeeper.log"
	outFile  = "zookeeper.out"
	lockFile = "zkserver.lock"

	// DefaultTickTime is Options.TickTime when zero.
	DefaultTickTime = 500 * time.Millisecond
	// stopGrace is how long a server has to exit after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
	// maxWait bounds a start whose ctx has no deadline.
	maxWait = 2 * time.Minute
	// pollEvery is how often a starting server is asked whether it serves.
	pollEvery = 100 * time.Millisecond
	// tailLines is how much of a server's log a start error quotes.
	tailLines = 25
)

// ErrPortInUse is wrapped by a start's error when a server's port is taken
// before its JVM starts; choosing other ports and starting again may work.
var ErrPortInUse = errors.New("port in use")

// Options say where and how to run ZooKeeper.
type Options struct {
	// Dir holds every server's configuration, data and log. Required.
	Dir string
	// Clients are the servers' client addresses, "127.0.0.1:port": one entry
	// for a standalone server, three for an ensemble. Another IP address
	// than 127.0.0.1 is what that server binds, its peer ports included
	// (ZooKeeper's clientPortAddress and server.N lines).
	Clients []string
	// Peers are an ensemble's quorum and election ports, one entry per
	// client. Empty derives them from each client port p: p+10000 and
	// p+20000 (p-10000 and p-20000 when p+20000 > 65535), a port that is
	// taken replaced by a free one the kernel picks.
	Peers []PeerPorts
	// TickTime is ZooKeeper's basic time unit; DefaultTickTime when zero.
	TickTime time.Duration
	// Logger receives start and stop events; none when nil.
	Logger hclog.Logger
	// Wrap, when set, returns the command line that runs server i (0-based)
	// given its own (java and its arguments), e.g. prefixed with `ip netns
	// exec NS` to run it in a network namespace; the wrapper must exec the
	// JVM, so that the process started is the server. Its ports are then not
	// checked here, where they may not exist.
	Wrap func(server int, argv []string) []string
	// Dial, when set, connects to the servers for the start's and restart's
	// probes (ruok, srvr), e.g. from inside a network namespace.
	Dial DialFunc
}

// Ensemble is a running standalone server or ensemble.
type Ensemble struct {
	install Install
	tick    time.Duration
	wrap    func(int, []string) []string
	dial    DialFunc
	log     hclog.Logger
	servers []*server

	mu      sync.Mutex
	lock    *os.File // the Dir lock, nil once stopped
	stopped bool
}

type server struct {
	id     int // ZooKeeper's myid, 1-based
	dir    string
	host   string // the IP address it binds
	client int
	peer   PeerPorts
	proc   *proc // nil when not running
}

func (s *server) addr() string       { return net.JoinHostPort(s.host, strconv.Itoa(s.client)) }
func (s *server) dataDir() string    { return filepath.Join(s.dir, "data") }
func (s *server) configPath() string { return filepath.Join(s.dir, "zoo.cfg") }

// proc is one started JVM.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped
	err  error         // Wait's result, set before done closes
}

// Start writes the configuration of every server under opts.Dir, starts them
// and waits, bounded by ctx (or 2 minutes when ctx has no deadline), until
// each answers "ruok" and serves (standalone, or leader/follower in an
// ensemble). On failure it stops what it started and the error quotes the
// failing server's log.
func Start(ctx context.Context, opts Options) (*Ensemble, error) {
	in, err := Find()
	if err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	e, err := newEnsemble(in, opts)
	if err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	if err := e.start(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

func newEnsemble(in Install, opts Options) (*Ensemble, error) {
	if opts.Dir == "" {
		return nil, errors.New("no Dir")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if n := len(opts.Clients); n != 1 && n != 3 {
		return nil, fmt.Errorf("%d client addresses, want 1 or 3", n)
	}
	ports := make([]int, len(opts.Clients))
	hosts := make([]string, len(opts.Clients))
	seen := map[string]bool{} // host:port
	for i, a := range opts.Clients {
		host, p, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("client address %q: %w", a, err)
		}
		port, err := strconv.Atoi(p)
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("client address %q: want IP:port, such as 127.0.0.1:port", a)
		}
		if seen[a] {
			return nil, fmt.Errorf("client address %s given twice", a)
		}
		seen[a] = true
		ports[i], hosts[i] = port, host
	}
	tick := opts.TickTime
	if tick == 0 {
		tick = DefaultTickTime
	}
	if tick < time.Millisecond || tick > minSessionTimeout/2 {
		return nil, fmt.Errorf("tick time %v: want 1ms..%v", tick, minSessionTimeout/2)
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	e := &Ensemble{install: in, tick: tick, log: log, wrap: opts.Wrap, dial: opts.Dial}
	for i, p := range ports {
		e.servers = append(e.servers, &server{
			id:     i + 1,
			dir:    filepath.Join(dir, "zk"+strconv.Itoa(i+1)),
			host:   hosts[i],
			client: p,
		})
	}
	if len(ports) > 1 {
		peers := opts.Peers
		if len(peers) == 0 {
			if peers, err = defaultPeers(ports); err != nil {
				return nil, err
			}
		}
		if len(peers) != len(ports) {
			return nil, fmt.Errorf("%d peer port pairs for %d servers", len(peers), len(ports))
		}
		for i, pp := range peers {
			for _, p := range []int{pp.Quorum, pp.Election} {
				a := net.JoinHostPort(hosts[i], strconv.Itoa(p))
				if p < 1 || p > 65535 || seen[a] {
					return nil, fmt.Errorf("peer ports %+v: want distinct ports 1..65535", pp)
				}
				seen[a] = true
			}
		}
		for i, s := range e.servers {
			s.peer = peers[i]
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if e.lock, err = lockDir(filepath.Join(dir, lockFile)); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Ensemble) start(ctx context.Context) error {
	ctx, cancel := boundedCtx(ctx)
	defer cancel()
	fail := func(err error) error {
		e.Stop() //nolint:errcheck // the start error matters more
		return err
	}
	e.mu.Lock()
	for i, s := range e.servers {
		if err := e.launch(s); err != nil {
			e.mu.Unlock()
			return fail(fmt.Errorf("start zookeeper %d: %w", i, err))
		}
	}
	e.mu.Unlock()
	begin := time.Now()
	errs := make([]error, len(e.servers))
	var wg sync.WaitGroup
	for i, s := range e.servers {
		wg.Go(func() { errs[i] = e.waitServing(ctx, s, true) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fail(fmt.Errorf("start zookeeper %d: %w%s", i, err, e.servers[i].logTail()))
		}
	}
	e.log.Info("zookeeper serving", "servers", e.ConnectString(), "pids", e.PIDs(), "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// launch writes s's configuration and starts its JVM. e.mu is held.
func (e *Ensemble) launch(s *server) error {
	if s.proc != nil {
		return errors.New("already running")
	}
	for _, p := range []int{s.client, s.peer.Quorum, s.peer.Election} {
		if p != 0 && e.wrap == nil && !portFree(s.host, p) {
			return fmt.Errorf("port %s:%d: %w", s.host, p, ErrPortInUse)
		}
	}
	if err := e.writeConfig(s); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(s.dir, outFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	argv := append([]string{e.install.Java}, e.javaArgs(s)...)
	if e.wrap != nil {
		argv = e.wrap(s.id-1, argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", argv[0], err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	e.log.Debug("zookeeper started", "server", s.id, "pid", cmd.Process.Pid, "client", s.addr(), "dir", s.dir)
	return nil
}

// waitServing waits until s answers "ruok" and, when serve is set, reports
// a serving mode; it fails early when s's process exits.
func (e *Ensemble) waitServing(ctx context.Context, s *server, serve bool) error {
	e.mu.Lock()
	p := s.proc
	e.mu.Unlock()
	if p == nil {
		return errors.New("not running")
	}
	serving := func(mode string) bool { return mode == "standalone" }
	if len(e.servers) > 1 {
		serving = func(mode string) bool { return mode == "leader" || mode == "follower" }
	}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		err := ruok(ctx, e.dial, s.addr())
		if err == nil && serve {
			var m string
			if m, err = mode(ctx, e.dial, s.addr()); err == nil && !serving(m) {
				err = fmt.Errorf("mode %s", m)
			}
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not serving on %s: %w (last: %v)", s.addr(), ctx.Err(), err)
		case <-p.done:
			return fmt.Errorf("pid %d exited: %v", p.cmd.Process.Pid, p.err)
		case <-t.C:
		}
	}
}

// WaitServing waits, bounded by ctx, until every running server serves.
func (e *Ensemble) WaitServing(ctx context.Context) error {
	for i, s := range e.servers {
		e.mu.Lock()
		running := s.proc != nil
		e.mu.Unlock()
		if !running {
			continue
		}
		if err := e.waitServing(ctx, s, true); err != nil {
			return fmt.Errorf("zookeeper %d: %w", i, err)
		}
	}
	return nil
}

// Servers returns the client address of each server, "127.0.0.1:port" or
// the address Options.Clients gave.
func (e *Ensemble) Servers() []string {
	a := make([]string, len(e.servers))
	for i, s := range e.servers {
		a[i] = s.addr()
	}
	return a
}

// ConnectString returns the servers' client addresses joined by commas.
func (e *Ensemble) ConnectString() string { return strings.Join(e.Servers(), ",") }

// Peers returns each server's quorum and election ports; nil for a
// standalone server.
func (e *Ensemble) Peers() []PeerPorts {
	if len(e.servers) == 1 {
		return nil
	}
	p := make([]PeerPorts, len(e.servers))
	for i, s := range e.servers {
		p[i] = s.peer
	}
	return p
}

// PIDs returns the process id of each server, 0 for one that is stopped.
func (e *Ensemble) PIDs() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	pids := make([]int, len(e.servers))
	for i, s := range e.servers {
		if s.proc != nil {
			pids[i] = s.proc.cmd.Process.Pid
		}
	}
	return pids
}

// LogFile returns the path of server i's log.
func (e *Ensemble) LogFile(i int) string { return filepath.Join(e.servers[i].dir, logFile) }

// StopServer stops server i (0-based): SIGTERM, SIGKILL after 5 s, wait. Its
// ports and data stay reserved for StartServer.
func (e *Ensemble) StopServer(i int) error {
	if i < 0 || i >= len(e.servers) {
		return fmt.Errorf("stop zookeeper %d: no such server", i)
	}
	e.mu.Lock()
	s := e.servers[i]
	p := s.proc
	s.proc = nil
	e.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.stop(); err != nil {
		return fmt.Errorf("stop zookeeper %d: %w", i, err)
	}
	e.log.Debug("zookeeper stopped", "server", s.id, "pid", p.cmd.Process.Pid)
	return nil
}

// StartServer starts server i (0-based) again on its ports and data, and
// waits, bounded by ctx, until it answers "ruok" and, when a majority of the
// servers is running, until it serves.
func (e *Ensemble) StartServer(ctx context.Context, i int) error {
	if i < 0 || i >= len(e.servers) {
		return fmt.Errorf("start zookeeper %d: no such server", i)
	}
	ctx, cancel := boundedCtx(ctx)
	defer cancel()
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return fmt.Errorf("start zookeeper %d: ensemble stopped", i)
	}
	s := e.servers[i]
	if err := e.launch(s); err != nil {
		e.mu.Unlock()
		return fmt.Errorf("start zookeeper %d: %w", i, err)
	}
	running := 0
	for _, o := range e.servers {
		if o.proc != nil {
			running++
		}
	}
	e.mu.Unlock()
	if err := e.waitServing(ctx, s, 2*running > len(e.servers)); err != nil {
		e.StopServer(i) //nolint:errcheck // the start error matters more
		return fmt.Errorf("start zookeeper %d: %w%s", i, err, s.logTail())
	}
	return nil
}

// Stop stops every server (SIGTERM, SIGKILL after 5 s, wait) and releases
// Dir. It may be called more than once.
func (e *Ensemble) Stop() error {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	errs := make([]error, len(e.servers))
	var wg sync.WaitGroup
	for i := range e.servers {
		wg.Go(func() { errs[i] = e.StopServer(i) })
	}
	wg.Wait()
	e.mu.Lock()
	if e.lock != nil {
		e.lock.Close()
		e.lock = nil
	}
	e.mu.Unlock()
	return errors.Join(errs...)
}

// stop ends p: SIGTERM, then SIGKILL after stopGrace, then waits for it to be
// reaped (bounded too).
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil // already gone
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sigterm pid %d: %w", p.cmd.Process.Pid, err)
	}
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sigkill pid %d: %w", p.cmd.Process.Pid, err)
	}
	t.Reset(stopGrace)
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("pid %d still running after SIGKILL", p.cmd.Process.Pid)
	}
}

// boundedCtx gives ctx a deadline of maxWait when it has none.
func boundedCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, maxWait)
}

// logTail returns the last lines of s's log and JVM output, for errors.
func (s *server) logTail() string {
	var b strings.Builder
	for _, name := range []string{logFile, outFile} {
		path := filepath.Join(s.dir, name)
		if t := tail(path, tailLines); t != "" {
			fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", path, t)
		}
	}
	return b.String()
}

// tail returns up to n last lines of the file at path, "" when unreadable.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 16 << 10
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-window, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Package zktest gives tests a real ZooKeeper from the system's install: one
// standalone server shared by a test package, or a private server or
// ensemble for a test that stops and restarts ZooKeeper.
//
// A package that uses Shared runs its tests through Main:
//
//	func TestMain(m *testing.M) { zktest.Main(m) }
//
// Without ZooKeeper installed every helper fails the test with how to install
// it: in CI a missing ZooKeeper is a failure, not a skip.
package zktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/zkserver"
	"github.com/plugdb/plugdb/internal/testutil"
)

const (
	// TickTime is the servers' tick time.
	TickTime = 500 * time.Millisecond
	// startTimeout bounds starting one server or ensemble.
	startTimeout = 2 * time.Minute
	// attempts is how often a start is tried with fresh ports when a port
	// is taken between choosing it and the JVM binding it.
	attempts = 3
)

// shared is the package's shared server, started by the first Shared call
// and stopped by Main.
var shared struct {
	mu   sync.Mutex
	main bool // Main is running the tests
	e    *zkserver.Ensemble
	dir  string
	err  error // the first start's failure, repeated to later callers
}

// Main runs the package's tests, then stops the shared server and removes
// its data. It exits with the tests' exit code (1 when they passed but the
// server could not be stopped).
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it runs the package's tests, stops the
// shared server and returns the exit code, for a TestMain that checks more
// afterwards (goleak's VerifyTestMain, through a wrapper of m).
func Run(m interface{ Run() int }) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "zktest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// M wraps a package's *testing.M so that running it also stops the shared
// server: goleak.VerifyTestMain(zktest.M{M: m}) checks for leaked goroutines
// once ZooKeeper is stopped.
type M struct{ M *testing.M }

// Run runs the tests and stops the shared server.
func (m M) Run() int { return Run(m.M) }

func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var err error
	if shared.e != nil {
		err = shared.e.Stop()
		shared.e = nil
	}
	if shared.dir != "" {
		err = errors.Join(err, os.RemoveAll(shared.dir))
		shared.dir = ""
	}
	if err != nil {
		return fmt.Errorf("stop shared zookeeper: %w", err)
	}
	return nil
}

// Shared returns the package's standalone ZooKeeper, starting it on first
// use on a free 127.0.0.1 port with a temporary data folder. Tests share its
// data, so each should work under its own znode path, and must not stop it
// (use Start for that). The package's TestMain must call Main.
func Shared(t testing.TB) *zkserver.Ensemble {
	t.Helper()
	requireInstalled(t, zkserver.Find)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("zktest.Shared: the package needs func TestMain(m *testing.M) { zktest.Main(m) } to stop the shared ZooKeeper")
	}
	if shared.e == nil && shared.err == nil {
		shared.err = startShared()
	}
	if shared.err != nil {
		t.Fatalf("zktest: shared ZooKeeper: %v", shared.err)
	}
	if shared.e.PIDs()[0] == 0 {
		t.Fatal("zktest: a test stopped the shared ZooKeeper; use zktest.Start for tests that stop ZooKeeper")
	}
	return shared.e
}

// startShared starts the shared server. shared.mu is held.
func startShared() error {
	dir, err := os.MkdirTemp("", "zktest-")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	e, err := start(ctx, dir, 1)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	shared.e, shared.dir = e, dir
	return nil
}

// Start starts a private ZooKeeper of 1 or 3 servers on free 127.0.0.1
// ports, in a temporary folder; t's cleanup stops it and removes the folder.
func Start(t testing.TB, servers int) *zkserver.Ensemble {
	t.Helper()
	requireInstalled(t, zkserver.Find)
	if servers != 1 && servers != 3 {
		t.Fatalf("zktest.Start: %d servers, want 1 or 3", servers)
	}
	dir := t.TempDir() // removed after the Stop below: cleanups run last first
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	e, err := start(ctx, dir, servers)
	if err != nil {
		t.Fatalf("zktest: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("zktest: %v", err)
		}
	})
	return e
}

// CLI returns the path of ZooKeeper's command-line client, zkCli.sh, and
// fails t, saying how to install it, when it is missing.
func CLI(t testing.TB) string {
	t.Helper()
	p, err := zkserver.FindCLI()
	if err != nil {
		t.Fatalf("zktest: %v", err)
	}
	return p
}

// requireInstalled fails t, saying how to install ZooKeeper, when find does
// not find it.
func requireInstalled(t testing.TB, find func() (zkserver.Install, error)) {
	t.Helper()
	if _, err := find(); err != nil {
		t.Fatalf("zktest: %v", err)
	}
}

// start starts servers servers in dir on free ports, choosing new ports when
// one was taken before ZooKeeper could bind it.
func start(ctx context.Context, dir string, servers int) (*zkserver.Ensemble, error) {
	var err error
	for range attempts {
		var opts zkserver.Options
		if opts, err = options(dir, servers); err != nil {
			return nil, err
		}
		var e *zkserver.Ensemble
		if e, err = zkserver.Start(ctx, opts); !errors.Is(err, zkserver.ErrPortInUse) {
			return e, err
		}
	}
	return nil, err
}

// options chooses free ports for servers servers: a client port each and,
// for an ensemble, quorum and election ports.
func options(dir string, servers int) (zkserver.Options, error) {
	perServer := 1
	if servers > 1 {
		perServer = 3
	}
	ports, err := testutil.FreePorts(servers * perServer)
	if err != nil {
		return zkserver.Options{}, err
	}
	opts := zkserver.Options{Dir: dir, TickTime: TickTime}
	for i := range servers {
		p := ports[i*perServer:]
		opts.Clients = append(opts.Clients, net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0])))
		if servers > 1 {
			opts.Peers = append(opts.Peers, zkserver.PeerPorts{Quorum: p[1], Election: p[2]})
		}
	}
	return opts, nil
}

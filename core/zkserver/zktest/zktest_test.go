package zktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/zkserver"
)

func TestMain(m *testing.M) { Main(m) }

func TestSharedIsOneServer(t *testing.T) {
	a := Shared(t)
	b := Shared(t)
	if a != b {
		t.Fatal("Shared returned two servers")
	}
	if len(a.Servers()) != 1 {
		t.Fatalf("Shared has %d servers, want 1", len(a.Servers()))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := zkserver.Ruok(ctx, a.ConnectString()); err != nil {
		t.Fatal(err)
	}
	t.Run("parallel", func(t *testing.T) {
		for i := range 3 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				if Shared(t) != a {
					t.Error("a parallel test got another server")
				}
			})
		}
	})
}

func TestStartIsPrivateAndCleanedUp(t *testing.T) {
	var pids []int
	var logFile string
	t.Run("ensemble", func(t *testing.T) {
		e := Start(t, 3)
		pids = e.PIDs()
		logFile = e.LogFile(0)
		if len(e.Servers()) != 3 || len(e.Peers()) != 3 {
			t.Fatalf("Start(t, 3): servers %v, peers %v", e.Servers(), e.Peers())
		}
		for _, a := range e.Servers() {
			if a == Shared(t).ConnectString() {
				t.Fatal("private server shares the shared server's address")
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		// A test may stop and restart its own servers.
		if err := e.StopServer(1); err != nil {
			t.Fatal(err)
		}
		if err := e.StartServer(ctx, 1); err != nil {
			t.Fatal(err)
		}
		pids = e.PIDs()
		for i, a := range e.Servers() {
			if mode, err := zkserver.Mode(ctx, a); err != nil || (mode != "leader" && mode != "follower") {
				t.Errorf("server %d: mode %q, %v", i, mode, err)
			}
		}
	})
	if len(pids) != 3 {
		t.Fatalf("pids %v", pids)
	}
	for _, pid := range pids {
		if pid == 0 {
			t.Fatal("a server was not running at the end of the subtest")
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d survives the test's cleanup (kill -0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(logFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s survives the test's cleanup (%v)", logFile, err)
	}
}

// fatalTB records a Fatal instead of failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestMissingZooKeeperIsAFailureSayingHowToInstall(t *testing.T) {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		requireInstalled(f, func() (zkserver.Install, error) {
			return zkserver.Install{}, fmt.Errorf("ZooKeeper not found (looked in /x): install it with `sudo apt-get install zookeeper` (Debian/Ubuntu): %w", zkserver.ErrNotInstalled)
		})
	}()
	<-done
	if !strings.Contains(f.msg, "sudo apt-get install zookeeper") {
		t.Fatalf("Fatal message %q does not say how to install ZooKeeper", f.msg)
	}

	f = &fatalTB{TB: t}
	requireInstalled(f, zkserver.Find) // installed here: no Fatal
	if f.msg != "" {
		t.Fatalf("Fatal with ZooKeeper installed: %s", f.msg)
	}
}

// Package testutil is the shared support of plugdb's tests: waiting for an
// observable state instead of sleeping (WaitFor, Eventually, and
// GoroutineID with GoroutineBlocked for "a goroutine reached its wait"), and
// free 127.0.0.1 ports that no other test of the process was given
// (FreePorts, FreeAddr, FreePortRun).
//
// A test sleeps only when time passing is the point (a load's pace, a
// fault's duration, a window in which something must not happen), and says
// so in a comment beside the sleep.
//
// It imports only the standard library, so any package's tests (and the
// kit packages such as zktest and replicatortest) can use it.
package testutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TB is what the helpers need of a test: *testing.T and *testing.B, and the
// test kits' own T (enginetest.T), have it.
type TB interface {
	Helper()
	Context() context.Context
	Fatalf(format string, args ...any)
}

var _ TB = testing.TB(nil)

// pollEvery is how often WaitFor checks its condition.
const pollEvery = 10 * time.Millisecond

// WaitFor checks cond until it holds, and fails t, naming what it waited
// for, when it still does not hold after timeout (or when t's context ends).
// cond runs on the calling goroutine; WaitFor must be called from the test's
// goroutine, like t.Fatal.
func WaitFor(t TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	if !Eventually(t.Context(), timeout, cond) {
		t.Fatalf("waited %v for %s; it did not happen", timeout, what)
	}
}

// Eventually checks cond until it holds, or timeout passes, or ctx ends, and
// reports whether it held. For a caller that handles the timeout itself: a
// helper that returns an error, a goroutine that is not the test's, or a
// failure message that shows more than what was awaited.
func Eventually(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return cond()
		case <-ctx.Done():
			return false
		}
	}
}

// GoroutineID is the calling goroutine's id, from its stack's header line
// "goroutine N [running]:".
func GoroutineID() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := strings.Fields(string(buf))
	if len(f) < 2 {
		return 0
	}
	id, _ := strconv.ParseUint(f[1], 10, 64)
	return id
}

// GoroutineBlocked reports whether goroutine id exists and is blocked (on a
// channel, select, lock, condition or I/O), not running or runnable. With
// GoroutineID it lets a test wait until a goroutine it started reached a
// wait inside the code under test, such as a running iterator, instead of
// sleeping and hoping it did.
func GoroutineBlocked(id uint64) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	prefix := fmt.Sprintf("goroutine %d [", id)
	for _, g := range strings.Split(string(buf), "\n\n") {
		if rest, ok := strings.CutPrefix(g, prefix); ok {
			state, _, _ := strings.Cut(rest, "]")
			state, _, _ = strings.Cut(state, ",") // "select, 2 minutes"
			return state != "running" && state != "runnable" && state != "syscall"
		}
	}
	return false
}

// handedOut are the ports this test process was given. A port closed after
// listening on 127.0.0.1:0 is free again, and the kernel may give it to the
// next caller before the first one's server binds it; parallel tests that
// each start a server could then share one. So no port is handed out twice
// in one process.
var handedOut struct {
	mu    sync.Mutex
	ports map[int]bool
}

// FreePorts returns n distinct 127.0.0.1 ports that were free a moment ago
// and that no other caller in this process was given. They are chosen at
// random below the kernel's ephemeral range (portRange): a port taken from
// that range (a 127.0.0.1:0 listener) could be handed by the kernel to any
// outgoing connection of a parallel test before the process it is meant for
// binds it. A port is free only until someone else binds it, so a test that
// starts a process on one must retry the start on "address in use" when it
// can (zktest does), or accept that rare conflict; a test that can pass a
// listener to the server should listen on 127.0.0.1:0 itself instead.
func FreePorts(n int) ([]int, error) {
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	lo, hi := portRange()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("free port: %d tries in %d-%d found only %d of %d free ports not handed out before", tries, lo, hi, len(ports), n)
		}
		if p := lo + rand.IntN(hi-lo); runFree(p, 1) {
			mark(p)
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// portRange is where FreePorts and FreePortRun choose: from 20000 up to the
// start of the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768
// by default), at most 32000.
func portRange() (lo, hi int) {
	lo, hi = 20000, 32000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if e, err := strconv.Atoi(f[0]); err == nil && e-lo >= 1000 && e < hi {
				hi = e
			}
		}
	}
	return lo, hi
}

// FreeAddr returns one port as FreePorts chooses, as "127.0.0.1:port", and
// fails t when there is none.
func FreeAddr(t TB) string {
	t.Helper()
	ports, err := FreePorts(1)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
}

// FreePortRun returns the first of n consecutive 127.0.0.1 ports that were
// free a moment ago and that no other caller in this process was given, for
// a process that takes a base port and counts up from it. The run is chosen
// below the kernel's ephemeral range (portRange), as FreePorts' ports are.
func FreePortRun(t TB, n int) int {
	t.Helper()
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	for range 100 {
		lo, hi := portRange()
		base := lo + rand.IntN(hi-lo-n)
		if runFree(base, n) {
			for p := base; p < base+n; p++ {
				mark(p)
			}
			return base
		}
	}
	t.Fatalf("free port run: no %d consecutive free ports", n)
	return 0
}

// runFree reports whether ports base to base+n-1 are free and not handed
// out. handedOut.mu is held.
func runFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		if handedOut.ports[p] {
			return false
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// mark records p as handed out. handedOut.mu is held.
func mark(p int) {
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	handedOut.ports[p] = true
}

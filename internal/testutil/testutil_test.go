package testutil

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitForSeesTheState(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	WaitFor(t, 5*time.Second, func() bool { return n.Load() == 3 }, "three increments")
}

func TestEventuallyTimesOut(t *testing.T) {
	start := time.Now()
	if Eventually(t.Context(), 50*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition that never holds held")
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("gave up after %v, want about 50ms", d)
	}
}

func TestFreePortsDistinctAndBindable(t *testing.T) {
	seen := map[int]bool{}
	for range 3 {
		ports, err := FreePorts(4)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
	l, err := net.Listen("tcp", FreeAddr(t))
	if err != nil {
		t.Fatalf("listen on FreeAddr: %v", err)
	}
	l.Close()
	base := FreePortRun(t, 5)
	for p := base; p < base+5; p++ {
		if seen[p] {
			t.Fatalf("run port %d handed out before", p)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("run port %d: %v", p, err)
		}
		l.Close()
	}
}

func TestGoroutineBlocked(t *testing.T) {
	ids := make(chan uint64)
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		ids <- GoroutineID()
		<-release
	}()
	id := <-ids
	if id == 0 || id == GoroutineID() {
		t.Fatalf("goroutine id %d, the test's is %d", id, GoroutineID())
	}
	WaitFor(t, 5*time.Second, func() bool { return GoroutineBlocked(id) }, "the goroutine to block on release")
	close(release)
	<-done
	WaitFor(t, 5*time.Second, func() bool { return !GoroutineBlocked(id) }, "the goroutine to end")
}

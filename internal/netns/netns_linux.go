//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Kill sends SIGKILL to every process in h's namespace, by PID, again
// until none is left (bounded by ctx and 50 rounds), and returns the PIDs it
// killed: the host "dies" as a machine would.
func (h Host) Kill(ctx context.Context) ([]int, error) {
	var killed []int
	for range 50 {
		pids, err := h.PIDs(ctx)
		if err != nil {
			return killed, err
		}
		if len(pids) == 0 {
			return killed, nil
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return killed, fmt.Errorf("kill -9 %d (namespace %s): %w", pid, h.Name, err)
			}
			killed = append(killed, pid)
		}
		select {
		case <-ctx.Done():
			return killed, fmt.Errorf("namespace %s: processes %v: %w", h.Name, pids, ctx.Err())
		case <-time.After(50 * time.Millisecond): // lets the killed exit before counting again
		}
	}
	return killed, fmt.Errorf("namespace %s: processes still running after 50 rounds of kill -9", h.Name)
}

// Dial connects from inside h's namespace: the socket is made on a thread
// moved into the namespace for that moment (setns), and a socket stays in
// the namespace it was made in.
func (h Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	target, err := os.Open("/run/netns/" + h.Name)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", h.Name, err)
	}
	defer target.Close()
	// Go starts no thread from a locked one, so no other thread lands in
	// the namespace; and one that cannot return stays locked and ends with
	// this goroutine.
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	if err := setns(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter namespace %s: %w", h.Name, err)
	}
	var d net.Dialer
	c, dialErr := d.DialContext(ctx, network, addr)
	if err := setns(self); err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("leave namespace %s: %w", h.Name, err)
	}
	runtime.UnlockOSThread()
	return c, dialErr
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrNotCluster is wrapped by Down's error when the folder is not a cluster folder.
var ErrNotCluster = errors.New("not a plugdb cluster folder")

// Down stops the cluster running from dir, from another process: it sends
// SIGTERM to the supervisor recorded in dir's RecordFile and waits for it to
// stop its children, then stops any recorded child still running (SIGTERM,
// SIGKILL after grace) — what a supervisor killed with SIGKILL leaves — and
// removes the record. A PID is signalled only while it is still the recorded
// process (same start time and command line), never a later process that
// got the PID. It reports to out what it stopped; a folder with nothing
// running is reported and is no error.
func Down(ctx context.Context, dir string, out io.Writer, grace time.Duration) error {
	if grace <= 0 {
		grace = 10 * time.Second
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("cluster folder %s: %w", dir, err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return fmt.Errorf("cluster folder %s does not exist: %w (start a cluster with `plugdb cluster up --dir %s`)", dir, ErrNotCluster, dir)
	}
	rec, err := ReadRecord(abs)
	if errors.Is(err, fs.ErrNotExist) {
		if _, lerr := os.Stat(filepath.Join(abs, "cluster.lock")); lerr != nil {
			return fmt.Errorf("%s: %w (no %s, cluster.lock, logs or data of `plugdb cluster up`)", dir, ErrNotCluster, RecordFile)
		}
		fmt.Fprintf(out, "nothing to stop: no cluster is running from %s\n", dir)
		return nil
	}
	if err != nil {
		return err
	}

	var stopped, killed []string
	var running []Process // children running before Down signalled anything
	for _, p := range rec.Children {
		if p.Alive() {
			running = append(running, p)
		}
	}
	if sup := rec.Supervisor; sup.Alive() {
		if err := syscall.Kill(sup.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal %s: %w", sup, err)
		}
		// The supervisor stops the router and the nodes (grace each, at
		// worst), then ZooKeeper.
		if waitGone(ctx, []Process{sup}, 3*grace+30*time.Second) {
			stopped = append(stopped, sup.String())
		} else if sup.Alive() {
			_ = syscall.Kill(sup.PID, syscall.SIGKILL)
			waitGone(ctx, []Process{sup}, 5*time.Second)
			killed = append(killed, sup.String())
		}
	}

	// Children still running: the supervisor was killed, or did not stop them.
	// Router and nodes first, ZooKeeper last.
	var left []Process
	for _, zkLast := range []bool{false, true} {
		for _, p := range rec.Children {
			if strings.HasPrefix(p.Name, "zookeeper") == zkLast && p.Alive() {
				left = append(left, p)
			}
		}
	}
	for _, p := range left {
		if p.Alive() {
			_ = syscall.Kill(p.PID, syscall.SIGTERM)
		}
	}
	waitGone(ctx, left, grace)
	isLeft := map[int]bool{}
	for _, p := range left {
		isLeft[p.PID] = true
	}
	for _, p := range running {
		if !isLeft[p.PID] {
			stopped = append(stopped, p.String()) // by the supervisor
		}
	}
	for _, p := range left {
		if !p.Alive() {
			stopped = append(stopped, p.String())
			continue
		}
		if pg, err := syscall.Getpgid(p.PID); err == nil && pg == p.PID {
			_ = syscall.Kill(-p.PID, syscall.SIGKILL) // with its own children (engine plugins)
		} else {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		killed = append(killed, p.String())
	}
	waitGone(ctx, left, 5*time.Second)

	var still []string
	for _, p := range append([]Process{rec.Supervisor}, rec.Children...) {
		if p.Alive() {
			still = append(still, p.String())
		}
	}
	if len(still) > 0 {
		return fmt.Errorf("could not stop %s: they still run", strings.Join(still, ", "))
	}
	if err := removeRecord(abs); err != nil {
		return err
	}
	switch {
	case len(stopped) == 0 && len(killed) == 0:
		fmt.Fprintf(out, "nothing to stop: the cluster recorded in %s is no longer running (record removed)\n", dir)
	default:
		if len(stopped) > 0 {
			fmt.Fprintf(out, "stopped: %s\n", strings.Join(stopped, ", "))
		}
		if len(killed) > 0 {
			fmt.Fprintf(out, "killed (did not stop after SIGTERM): %s\n", strings.Join(killed, ", "))
		}
		n := len(rec.Children)
		fmt.Fprintf(out, "cluster in %s is down (%d recorded processes, none left running)\n", dir, n+1)
	}
	return nil
}

// waitGone waits until none of ps is alive, for at most d; it reports
// whether they are all gone.
func waitGone(ctx context.Context, ps []Process, d time.Duration) bool {
	gone := func() bool {
		for _, p := range ps {
			if p.Alive() {
				return false
			}
		}
		return true
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !gone() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return gone()
		case <-ctx.Done():
			return gone()
		}
	}
	return true
}

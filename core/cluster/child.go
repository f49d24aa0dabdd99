package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// child is a process the supervisor started: the router or a node.
type child struct {
	name, addr, log string
	cmd             *exec.Cmd
	logOffset       int64         // where this run's output starts in log
	done            chan struct{} // closed when the process was waited for
	waitErr         error
	stopping        atomic.Bool // a stop was asked: its exit is expected
	id              procID
}

// startChild starts bin with args, env and its output appended to logPath,
// in its own process group, and waits for it in the background.
func startChild(name, addr, logPath, bin string, args, env []string) (*child, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "--- plugdb cluster: %s started %s: %s %s\n", name, time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	off, _ := f.Seek(0, io.SeekEnd)
	c := &child{name: name, addr: addr, log: logPath, logOffset: off, done: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = env
	c.cmd.Stdout, c.cmd.Stderr = f, f
	setChildAttrs(c.cmd)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.id = procID{PID: c.cmd.Process.Pid}
	if id, _, err := identify(c.id.PID); err == nil {
		c.id = id
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// exitStatus describes how the child ended: "exit status 1", "signal: killed".
func (c *child) exitStatus() string {
	if c.cmd.ProcessState != nil {
		return c.cmd.ProcessState.String()
	}
	if c.waitErr != nil {
		return c.waitErr.Error()
	}
	return "running"
}

// tail returns the last n lines this run of the child wrote to its log.
func (c *child) tail(n int) string {
	return tailFile(c.log, c.logOffset, n)
}

// stop sends SIGTERM and, if the child is still running after grace,
// SIGKILL to its process group; it returns once the child was waited for.
func (c *child) stop(grace time.Duration) {
	c.stopping.Store(true)
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(grace):
	}
	// The group holds the child and its own children (engine plugins).
	if err := syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = c.cmd.Process.Kill()
	}
	<-c.done
}

// process is the child as recorded.
func (c *child) process() Process {
	return Process{Name: c.name, procID: c.id, Addr: c.addr, Log: c.log, Metrics: c.metricsAddr()}
}

// tailFile returns the last n non-empty lines of path from offset on, joined
// by newlines and indented, for an error message.
func tailFile(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const max = 16 << 10
	st, err := f.Stat()
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	from := max64(offset, st.Size()-max)
	b, err := io.ReadAll(io.NewSectionReader(f, from, st.Size()-from))
	if err != nil && !errors.Is(err, io.EOF) {
		return "(log unreadable: " + err.Error() + ")"
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if from > offset && len(lines) > 0 {
		lines = lines[1:] // a partial first line
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "    (the log is empty)"
	}
	return "    " + strings.Join(lines, "\n    ")
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

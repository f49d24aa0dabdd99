package enginetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// Status is the outcome of a case.
type Status int

// Outcomes of a case. A case that reported an error and then skipped failed.
const (
	Pass Status = iota
	Fail
	Skip
)

// String returns "PASS", "FAIL" or "SKIP".
func (s Status) String() string {
	switch s {
	case Pass:
		return "PASS"
	case Fail:
		return "FAIL"
	case Skip:
		return "SKIP"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is the outcome of one case run by RunCase.
type Result struct {
	Name    string
	Status  Status
	Log     []string // messages of Logf, Errorf, Fatalf and Skipf, in order
	Elapsed time.Duration
}

// String returns one line in the style of go test -v, such as
// "--- PASS: GetPutDelete (0.01s)".
func (r Result) String() string {
	return fmt.Sprintf("--- %s: %s (%.2fs)", r.Status, r.Name, r.Elapsed.Seconds())
}

// RunCase runs c against h outside go test and returns its result. The case gets
// a context derived from ctx and its own temporary folder, removed afterwards.
// Fatalf and Skipf end the case as they do in go test, and a panic fails it.
//
// If ctx is done before the case returns (a plugin that hangs, say), RunCase
// reports it failed without waiting; the case keeps running in the background
// and its cleanups run when it returns.
func RunCase(ctx context.Context, c Case, h Harness) Result {
	ct := &caseT{}
	ct.ctx, ct.cancel = context.WithCancel(ctx)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ct.runCleanups()
		defer ct.recoverPanic()
		c.Test(ct, h)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		ct.Errorf("abandoned before it returned: %v", context.Cause(ctx))
	}
	return ct.result(c.Name, time.Since(start))
}

// caseT implements T for RunCase.
type caseT struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	failed   bool
	skipped  bool
	log      []string
	cleanups []func()
	dir      string // parent of the TempDir folders, made on first use
	dirs     int
}

func (c *caseT) Helper()                  {}
func (c *caseT) Context() context.Context { return c.ctx }

func (c *caseT) record(failed, skipped bool, format string, args []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed = c.failed || failed
	c.skipped = c.skipped || skipped
	c.log = append(c.log, fmt.Sprintf(format, args...))
}

func (c *caseT) Logf(format string, args ...any)   { c.record(false, false, format, args) }
func (c *caseT) Errorf(format string, args ...any) { c.record(true, false, format, args) }

func (c *caseT) Fatalf(format string, args ...any) {
	c.record(true, false, format, args)
	runtime.Goexit()
}

func (c *caseT) Skipf(format string, args ...any) {
	c.record(false, true, format, args)
	runtime.Goexit()
}

func (c *caseT) Cleanup(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleanups = append(c.cleanups, f)
}

// TempDir returns a new empty folder on each call.
func (c *caseT) TempDir() string {
	c.mu.Lock()
	var err error
	if c.dir == "" {
		c.dir, err = os.MkdirTemp("", "enginetest-")
	}
	c.dirs++
	dir := filepath.Join(c.dir, fmt.Sprint(c.dirs))
	c.mu.Unlock()
	if err == nil {
		err = os.Mkdir(dir, 0o777)
	}
	if err != nil {
		c.Fatalf("TempDir: %v", err)
	}
	return dir
}

func (c *caseT) recoverPanic() {
	if p := recover(); p != nil {
		c.Errorf("panic: %v\n%s", p, debug.Stack())
	}
}

// runCleanups cancels the case's context, then runs the cleanups last first and
// removes the temporary folders. It defers itself for the next cleanup, so a
// cleanup that calls Fatalf (runtime.Goexit) or panics does not stop the others.
func (c *caseT) runCleanups() {
	c.cancel()
	c.mu.Lock()
	n := len(c.cleanups)
	var f func()
	if n > 0 {
		f, c.cleanups = c.cleanups[n-1], c.cleanups[:n-1]
	}
	dir := c.dir
	c.mu.Unlock()
	if f == nil {
		if dir != "" {
			if err := os.RemoveAll(dir); err != nil {
				c.Errorf("remove temporary folder: %v", err)
			}
		}
		return
	}
	defer c.runCleanups()
	defer c.recoverPanic()
	f()
}

func (c *caseT) result(name string, elapsed time.Duration) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Result{Name: name, Status: Pass, Log: append([]string(nil), c.log...), Elapsed: elapsed}
	switch {
	case c.failed:
		r.Status = Fail
	case c.skipped:
		r.Status = Skip
	}
	return r
}

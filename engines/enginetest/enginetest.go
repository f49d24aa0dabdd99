// Package enginetest is the conformance kit for storage engines, in the manner of
// testing/fstest: it checks that an engines.Engine keeps the contract, one case per
// behaviour, each on a fresh engine in its own temporary folder.
//
// From a test:
//
//	func TestConformance(t *testing.T) {
//		enginetest.Run(t, func(t *testing.T) enginetest.Harness {
//			return enginetest.FromOpenFunc(myengine.Open, nil)
//		})
//	}
//
// Outside go test (plugdb plugin check), run each of Cases with RunCase, which
// returns a Result per case.
//
// An error the kit expects (ErrNotFound for a missing key, ErrInvalidArgument
// for a key over the limit, ErrClosed after Close) must match that sentinel
// with errors.Is and no other of plugdb's sentinels (WantError), in process and
// through a plugin alike.
package enginetest

import (
	"context"
	"maps"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
)

// T is the part of *testing.T the kit uses; *testing.T implements it, and RunCase
// provides an implementation for running outside go test. Errorf and Logf must be
// safe to call from several goroutines; Fatalf and Skipf are only called from the
// case's own goroutine.
type T interface {
	Helper()
	Context() context.Context
	TempDir() string
	Cleanup(func())
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

var _ T = (*testing.T)(nil)

// Harness opens engines for the kit.
type Harness interface {
	// Open opens an engine on dir, an existing folder, with params merged over the
	// harness's own defaults. The kit opens the same dir again after Close to
	// check durability, and closes every engine it opens.
	Open(ctx context.Context, dir string, params map[string]string) (engines.Engine, error)
}

// HarnessFunc adapts a function to a Harness.
type HarnessFunc func(ctx context.Context, dir string, params map[string]string) (engines.Engine, error)

// Open calls f.
func (f HarnessFunc) Open(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
	return f(ctx, dir, params)
}

// LogBackedHarness is a Harness that can also open an engine with
// engines.Options.LogBacked; the kit's LogBacked cases skip a harness that
// cannot.
type LogBackedHarness interface {
	Harness
	// OpenLogBacked is Open with engines.Options.LogBacked set.
	OpenLogBacked(ctx context.Context, dir string, params map[string]string) (engines.Engine, error)
}

// FromOpenFunc returns a LogBackedHarness that opens engines with open,
// passing params merged over defaults and a logger that discards everything.
func FromOpenFunc(open engines.OpenFunc, defaults map[string]string) LogBackedHarness {
	return openFuncHarness{open: open, defaults: defaults}
}

// openFuncHarness is FromOpenFunc's harness.
type openFuncHarness struct {
	open     engines.OpenFunc
	defaults map[string]string
}

func (h openFuncHarness) Open(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
	return h.open(ctx, h.options(dir, params))
}

func (h openFuncHarness) OpenLogBacked(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
	opts := h.options(dir, params)
	opts.LogBacked = true
	return h.open(ctx, opts)
}

func (h openFuncHarness) options(dir string, params map[string]string) engines.Options {
	p := make(map[string]string, len(h.defaults)+len(params))
	maps.Copy(p, h.defaults)
	maps.Copy(p, params)
	return engines.Options{Dir: dir, Params: p, Logger: hclog.NewNullLogger()}
}

// Case is one behaviour the kit checks.
type Case struct {
	Name string
	Test func(t T, h Harness)
}

// Cases returns the kit's cases in the order Run runs them.
func Cases() []Case {
	return []Case{
		{"GetPutDelete", testGetPutDelete},
		{"BuffersOwnedByCaller", testBuffersOwned},
		{"BatchAtomic", testBatchAtomic},
		{"ScanOrderedBounded", testScan},
		{"ScanStopEarly", testScanStopEarly},
		{"LSNMonotonic", testLSNMonotonic},
		{"LSNPersisted", testLSNPersisted},
		{"ReopenKeepsData", testReopen},
		{"SnapshotRestore", testSnapshotRestore},
		{"SnapshotPointInTime", testSnapshotPointInTime},
		{"SnapshotCancel", testSnapshotCancel},
		{"RestoreFailureKeepsContents", testRestoreFailure},
		{"SizeLimits", testSizeLimits},
		{"Stats", testStats},
		{"Closed", testClosed},
		{"Concurrent", testConcurrent},
		{"LogBackedFlush", testLogBackedFlush},
		{"MissingOptionalInterfaces", testMissingOptional},
	}
}

// Run runs every case as a subtest of t. newHarness is called once per subtest
// with the subtest's t, so a harness may register cleanups on it.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			c.Test(t, newHarness(t))
		})
	}
}

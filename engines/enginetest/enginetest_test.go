package enginetest_test

import (
	"context"
	"errors"
	"iter"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/engines/memory"
)

// fullEngine is every interface of the memory engine, which the wrappers
// below embed.
type fullEngine interface {
	engines.Engine
	engines.Scanner
	engines.Snapshotter
	engines.StatsReporter
	engines.CapabilitiesReporter
	engines.Flusher
}

// durable wraps a memory engine and saves its contents in a shared map under its
// dir on Close, restoring them on Open: a correct durable engine, for checking the
// kit's durable cases.
type durable struct {
	fullEngine
	dir   string
	saved *sync.Map // dir → saved
}

type saved struct {
	lsn  uint64
	rows []engines.Row
}

func (d *durable) Capabilities() engines.Capabilities {
	c := d.fullEngine.Capabilities()
	c.Durable = true
	return c
}

func (d *durable) Close() error {
	lsn, rows, err := d.fullEngine.Snapshot(context.Background())
	if err != nil {
		return err
	}
	var s saved
	s.lsn = lsn
	for r, err := range rows {
		if err != nil {
			return err
		}
		s.rows = append(s.rows, r)
	}
	d.saved.Store(d.dir, s)
	return d.fullEngine.Close()
}

func durableHarness() enginetest.Harness {
	var m sync.Map
	return enginetest.HarnessFunc(func(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
		e, err := memory.Open(ctx, engines.Options{Dir: dir, Params: params})
		if err != nil {
			return nil, err
		}
		if v, ok := m.Load(dir); ok {
			s := v.(saved)
			if err := e.(fullEngine).Restore(ctx, s.lsn, func(yield func(engines.Row, error) bool) {
				for _, r := range s.rows {
					if !yield(r, nil) {
						return
					}
				}
			}); err != nil {
				return nil, err
			}
		}
		return &durable{fullEngine: e.(fullEngine), dir: dir, saved: &m}, nil
	})
}

func TestDurableFake(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Harness { return durableHarness() })
}

func TestRunCaseMemory(t *testing.T) {
	h := enginetest.FromOpenFunc(memory.Open, nil)
	for _, c := range enginetest.Cases() {
		r := enginetest.RunCase(t.Context(), c, h)
		want := enginetest.Pass
		if c.Name == "LSNPersisted" || c.Name == "ReopenKeepsData" || c.Name == "MissingOptionalInterfaces" {
			want = enginetest.Skip
		}
		if r.Status != want || r.Name != c.Name {
			t.Errorf("%s: got %s, want %v; log:\n%s", c.Name, r, want, strings.Join(r.Log, "\n"))
		}
		if !strings.HasPrefix(r.String(), "--- "+want.String()+": "+c.Name+" (") {
			t.Errorf("result line %q", r)
		}
	}
}

// broken engines, each breaking one rule; the named case must fail.

type scanIgnoresEnd struct{ fullEngine }

func (e scanIgnoresEnd) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	r.End = nil
	return e.fullEngine.Scan(ctx, r)
}

type scanIgnoresLimit struct{ fullEngine }

func (e scanIgnoresLimit) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	r.Limit = 0
	return e.fullEngine.Scan(ctx, r)
}

type notAtomic struct{ fullEngine }

func (e notAtomic) Apply(ctx context.Context, batch []engines.Mutation) error {
	for _, m := range batch {
		if err := e.fullEngine.Apply(ctx, []engines.Mutation{m}); err != nil {
			return err
		}
	}
	return nil
}

type lastLSN struct {
	fullEngine
	mu   sync.Mutex
	last uint64
}

func (e *lastLSN) Apply(ctx context.Context, batch []engines.Mutation) error {
	err := e.fullEngine.Apply(ctx, batch)
	if err == nil && len(batch) > 0 {
		e.mu.Lock()
		e.last = batch[len(batch)-1].LSN
		e.mu.Unlock()
	}
	return err
}

func (e *lastLSN) AppliedLSN(ctx context.Context) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last, nil
}

type liveSnapshot struct{ fullEngine }

func (e liveSnapshot) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	lsn, err := e.fullEngine.AppliedLSN(ctx)
	return lsn, e.fullEngine.Scan(ctx, engines.ScanRange{}), err
}

type closeNoop struct{ fullEngine }

func (closeNoop) Close() error { return nil }

type statsOffByOne struct{ fullEngine }

func (e statsOffByOne) Stats(ctx context.Context) (engines.Stats, error) {
	s, err := e.fullEngine.Stats(ctx)
	s.Keys++
	return s, err
}

type claimsDurable struct{ fullEngine }

func (e claimsDurable) Capabilities() engines.Capabilities {
	c := e.fullEngine.Capabilities()
	c.Durable = true
	return c
}

type noKeyCheck struct{ fullEngine }

func (e noKeyCheck) Get(ctx context.Context, key []byte) (engines.Row, error) {
	if len(key) == 0 {
		return engines.Row{}, engines.ErrNotFound
	}
	return e.fullEngine.Get(ctx, key)
}

type restoreNotAtomic struct{ fullEngine }

func (e restoreNotAtomic) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	var batch []engines.Mutation
	for r, err := range rows {
		if err != nil {
			return err
		}
		batch = append(batch, engines.Mutation{Op: engines.OpPut, Key: r.Key, Value: r.Value, LSN: lsn + uint64(len(batch)) + 1})
		if err := e.fullEngine.Apply(ctx, batch[len(batch)-1:]); err != nil {
			return err
		}
	}
	return e.fullEngine.Restore(ctx, lsn, func(func(engines.Row, error) bool) {})
}

func TestKitCatchesBrokenEngines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrap  func(fullEngine) engines.Engine
		fails []string
	}{
		{"scan ignores end", func(e fullEngine) engines.Engine { return scanIgnoresEnd{e} }, []string{"ScanOrderedBounded"}},
		{"scan ignores limit", func(e fullEngine) engines.Engine { return scanIgnoresLimit{e} }, []string{"ScanOrderedBounded"}},
		{"apply not atomic", func(e fullEngine) engines.Engine { return notAtomic{e} }, []string{"BatchAtomic"}},
		{"applied lsn is the last, not the highest", func(e fullEngine) engines.Engine { return &lastLSN{fullEngine: e} }, []string{"LSNMonotonic"}},
		{"snapshot reads live data", func(e fullEngine) engines.Engine { return liveSnapshot{e} }, []string{"SnapshotPointInTime"}},
		{"close does nothing", func(e fullEngine) engines.Engine { return closeNoop{e} }, []string{"Closed"}},
		{"stats off by one", func(e fullEngine) engines.Engine { return statsOffByOne{e} }, []string{"Stats"}},
		{"claims durability", func(e fullEngine) engines.Engine { return claimsDurable{e} }, []string{"LSNPersisted", "ReopenKeepsData"}},
		{"get accepts an empty key", func(e fullEngine) engines.Engine { return noKeyCheck{e} }, []string{"SizeLimits"}},
		{"restore not atomic", func(e fullEngine) engines.Engine { return restoreNotAtomic{e} }, []string{"RestoreFailureKeepsContents"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := enginetest.HarnessFunc(func(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
				e, err := memory.Open(ctx, engines.Options{Dir: dir, Params: params})
				if err != nil {
					return nil, err
				}
				return tc.wrap(e.(fullEngine)), nil
			})
			for _, c := range enginetest.Cases() {
				for _, name := range tc.fails {
					if c.Name == name {
						if r := enginetest.RunCase(t.Context(), c, h); r.Status != enginetest.Fail {
							t.Errorf("%s: got %s, want FAIL", c.Name, r)
						} else {
							t.Logf("%s: %s", r, r.Log[0])
						}
					}
				}
			}
		})
	}
}

func TestRunCaseMechanics(t *testing.T) {
	var h enginetest.Harness // the cases below do not use it
	var dir string
	var order []string
	run := func(test func(t enginetest.T, h enginetest.Harness)) enginetest.Result {
		return enginetest.RunCase(t.Context(), enginetest.Case{Name: "X", Test: test}, h)
	}

	r := run(func(t enginetest.T, _ enginetest.Harness) {
		dir = t.TempDir()
		if err := os.WriteFile(dir+"/f", []byte("x"), 0o666); err != nil {
			t.Fatalf("write: %v", err)
		}
		if t.TempDir() == dir {
			t.Errorf("TempDir returned the same folder twice")
		}
		t.Cleanup(func() { order = append(order, "first") })
		t.Cleanup(func() {
			order = append(order, "second")
			if t.Context().Err() == nil {
				t.Errorf("context not cancelled before cleanups")
			}
			t.Fatalf("fatal in cleanup")
		})
		t.Logf("hello %d", 1)
	})
	if r.Status != enginetest.Fail || strings.Join(r.Log, "|") != "hello 1|fatal in cleanup" {
		t.Errorf("got %s %q, want FAIL [hello 1, fatal in cleanup]", r, r.Log)
	}
	if strings.Join(order, ",") != "second,first" {
		t.Errorf("cleanups ran %v, want second,first", order)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary folder %s left behind: %v", dir, err)
	}

	reached := false
	r = run(func(t enginetest.T, _ enginetest.Harness) {
		t.Fatalf("stop")
		reached = true
	})
	if r.Status != enginetest.Fail || reached {
		t.Errorf("Fatalf: got %s (reached %v), want FAIL and the case stopped", r, reached)
	}

	r = run(func(t enginetest.T, _ enginetest.Harness) { t.Skipf("not today") })
	if r.Status != enginetest.Skip || r.Log[0] != "not today" {
		t.Errorf("Skipf: got %s %q, want SKIP", r, r.Log)
	}

	r = run(func(t enginetest.T, _ enginetest.Harness) {
		t.Errorf("bad")
		t.Skipf("then skipped")
	})
	if r.Status != enginetest.Fail {
		t.Errorf("Errorf then Skipf: got %s, want FAIL", r)
	}

	r = run(func(t enginetest.T, _ enginetest.Harness) { panic("boom") })
	if r.Status != enginetest.Fail || !strings.HasPrefix(r.Log[0], "panic: boom") {
		t.Errorf("panic: got %s %q, want FAIL with the panic", r, r.Log)
	}

	ctx, cancel := context.WithCancel(t.Context())
	release := make(chan struct{})
	defer close(release)
	r = enginetest.RunCase(ctx, enginetest.Case{Name: "hang", Test: func(t enginetest.T, _ enginetest.Harness) {
		cancel()
		<-release
	}}, h)
	if r.Status != enginetest.Fail || !strings.Contains(r.Log[0], "abandoned") {
		t.Errorf("hung case: got %s %q, want FAIL, abandoned", r, r.Log)
	}
}

// TestRequiredOnly runs the kit on an engine with only the required
// interface: the optional cases skip, MissingOptionalInterfaces passes.
func TestRequiredOnly(t *testing.T) {
	h := enginetest.HarnessFunc(func(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
		e, err := memory.Open(ctx, engines.Options{Dir: dir, Params: params})
		return enginetest.RequiredOnly(e), err
	})
	skips := map[string]bool{}
	for _, c := range enginetest.Cases() {
		r := enginetest.RunCase(t.Context(), c, h)
		switch r.Status {
		case enginetest.Fail:
			t.Errorf("%s", r)
		case enginetest.Skip:
			skips[c.Name] = true
		}
	}
	for _, name := range []string{"ScanOrderedBounded", "ScanStopEarly", "SnapshotRestore", "SnapshotPointInTime", "SnapshotCancel", "RestoreFailureKeepsContents", "Stats"} {
		if !skips[name] {
			t.Errorf("%s: not skipped for an engine without its optional interface", name)
		}
	}
	if skips["MissingOptionalInterfaces"] || skips["GetPutDelete"] {
		t.Errorf("skipped %v; MissingOptionalInterfaces and GetPutDelete must run", skips)
	}
}

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

// durable wraps a memory engine and saves its contents in a shared map under its
// dir on Close, restoring them on Open: a correct durable engine, for checking the
// kit's durable cases.
type durable struct {
	engines.Engine
	dir   string
	saved *sync.Map // dir → saved
}

type saved struct {
	lsn  uint64
	rows []engines.Row
}

func (d *durable) Capabilities() engines.Capabilities {
	c := d.Engine.Capabilities()
	c.Durable = true
	return c
}

func (d *durable) Close() error {
	lsn, rows, err := d.Engine.Snapshot(context.Background())
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
	return d.Engine.Close()
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
			if err := e.Restore(ctx, s.lsn, func(yield func(engines.Row, error) bool) {
				for _, r := range s.rows {
					if !yield(r, nil) {
						return
					}
				}
			}); err != nil {
				return nil, err
			}
		}
		return &durable{Engine: e, dir: dir, saved: &m}, nil
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
		if c.Name == "LSNPersisted" || c.Name == "ReopenKeepsData" {
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

type scanIgnoresEnd struct{ engines.Engine }

func (e scanIgnoresEnd) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	r.End = nil
	return e.Engine.Scan(ctx, r)
}

type scanIgnoresLimit struct{ engines.Engine }

func (e scanIgnoresLimit) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	r.Limit = 0
	return e.Engine.Scan(ctx, r)
}

type notAtomic struct{ engines.Engine }

func (e notAtomic) Apply(ctx context.Context, batch []engines.Mutation) error {
	for _, m := range batch {
		if err := e.Engine.Apply(ctx, []engines.Mutation{m}); err != nil {
			return err
		}
	}
	return nil
}

type lastLSN struct {
	engines.Engine
	mu   sync.Mutex
	last uint64
}

func (e *lastLSN) Apply(ctx context.Context, batch []engines.Mutation) error {
	err := e.Engine.Apply(ctx, batch)
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

type liveSnapshot struct{ engines.Engine }

func (e liveSnapshot) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	lsn, err := e.Engine.AppliedLSN(ctx)
	return lsn, e.Engine.Scan(ctx, engines.ScanRange{}), err
}

type closeNoop struct{ engines.Engine }

func (closeNoop) Close() error { return nil }

type statsOffByOne struct{ engines.Engine }

func (e statsOffByOne) Stats(ctx context.Context) (engines.Stats, error) {
	s, err := e.Engine.Stats(ctx)
	s.Keys++
	return s, err
}

type claimsDurable struct{ engines.Engine }

func (e claimsDurable) Capabilities() engines.Capabilities {
	c := e.Engine.Capabilities()
	c.Durable = true
	return c
}

type noKeyCheck struct{ engines.Engine }

func (e noKeyCheck) Get(ctx context.Context, key []byte) (engines.Row, error) {
	if len(key) == 0 {
		return engines.Row{}, engines.ErrNotFound
	}
	return e.Engine.Get(ctx, key)
}

type restoreNotAtomic struct{ engines.Engine }

func (e restoreNotAtomic) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	var batch []engines.Mutation
	for r, err := range rows {
		if err != nil {
			return err
		}
		batch = append(batch, engines.Mutation{Op: engines.OpPut, Key: r.Key, Value: r.Value, LSN: lsn + uint64(len(batch)) + 1})
		if err := e.Engine.Apply(ctx, batch[len(batch)-1:]); err != nil {
			return err
		}
	}
	return e.Engine.Restore(ctx, lsn, func(func(engines.Row, error) bool) {})
}

func TestKitCatchesBrokenEngines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrap  func(engines.Engine) engines.Engine
		fails []string
	}{
		{"scan ignores end", func(e engines.Engine) engines.Engine { return scanIgnoresEnd{e} }, []string{"ScanOrderedBounded"}},
		{"scan ignores limit", func(e engines.Engine) engines.Engine { return scanIgnoresLimit{e} }, []string{"ScanOrderedBounded"}},
		{"apply not atomic", func(e engines.Engine) engines.Engine { return notAtomic{e} }, []string{"BatchAtomic"}},
		{"applied lsn is the last, not the highest", func(e engines.Engine) engines.Engine { return &lastLSN{Engine: e} }, []string{"LSNMonotonic"}},
		{"snapshot reads live data", func(e engines.Engine) engines.Engine { return liveSnapshot{e} }, []string{"SnapshotPointInTime"}},
		{"close does nothing", func(e engines.Engine) engines.Engine { return closeNoop{e} }, []string{"Closed"}},
		{"stats off by one", func(e engines.Engine) engines.Engine { return statsOffByOne{e} }, []string{"Stats"}},
		{"claims durability", func(e engines.Engine) engines.Engine { return claimsDurable{e} }, []string{"LSNPersisted", "ReopenKeepsData"}},
		{"get accepts an empty key", func(e engines.Engine) engines.Engine { return noKeyCheck{e} }, []string{"SizeLimits"}},
		{"restore not atomic", func(e engines.Engine) engines.Engine { return restoreNotAtomic{e} }, []string{"RestoreFailureKeepsContents"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := enginetest.HarnessFunc(func(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
				e, err := memory.Open(ctx, engines.Options{Dir: dir, Params: params})
				if err != nil {
					return nil, err
				}
				return tc.wrap(e), nil
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

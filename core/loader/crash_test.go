package loader

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/internal/testutil"
)

// Crash tests: writers hammer a rowfile plugin process while the test kills it
// with SIGKILL at random moments; the loader restarts it, the writers go on, and
// in the end every write whose Apply returned nil must be in the files, as read
// by a fresh plugin process.

const (
	crashWriters       = 8                // concurrent writer goroutines
	crashRoundWrites   = 4000             // at most this many Apply calls per round
	crashRoundTime     = 2 * time.Second  // a round stops writing after this long
	crashAfterRestart  = 100              // acks wanted from the restarted plugin before a round ends
	crashCallTimeout   = 30 * time.Second // one Apply taking longer than this is a hang
	crashProbeTime     = 20 * time.Second // time for the plugin to come back after a round
	crashMaxKillDelay  = 100              // ms: the kill comes 2..crashMaxKillDelay ms after writes start
	crashPluginNameErr = "engine plugin rowfile"
)

// crashRounds is the number of kills per sync mode.
func crashRounds() int {
	if raceEnabled {
		return 5
	}
	return 8
}

// crashWrite is one single-put batch the test sent.
type crashWrite struct {
	key, value string
	lsn        uint64
}

// crashLog collects the outcome of every write.
type crashLog struct {
	mu        sync.Mutex
	acked     []crashWrite
	failed    []crashWrite
	unnamed   []string // failures whose text does not name the plugin
	samples   []string // a few failure texts, for the log
	roundAcks int      // acks in the current round
	roundErrs int      // failures in the current round
}

func (c *crashLog) record(w crashWrite, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.acked = append(c.acked, w)
		c.roundAcks++
		return
	}
	c.failed = append(c.failed, w)
	c.roundErrs++
	msg := err.Error()
	if !strings.Contains(msg, crashPluginNameErr) && len(c.unnamed) < 10 {
		c.unnamed = append(c.unnamed, msg)
	}
	if len(c.samples) < 3 {
		c.samples = append(c.samples, msg)
	}
}

// round returns and resets the current round's counts.
func (c *crashLog) round() (acks, errs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	acks, errs = c.roundAcks, c.roundErrs
	c.roundAcks, c.roundErrs = 0, 0
	return acks, errs
}

func (c *crashLog) acks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roundAcks
}

func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("kills plugin processes for several seconds; skipped with -short")
	}
	for _, mode := range []string{"always", "batch"} {
		t.Run("sync="+mode, func(t *testing.T) { testCrashMode(t, mode) })
	}
}

func testCrashMode(t *testing.T, mode string) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("seed %d", seed)

	logs := &syncBuffer{}
	l := testLoader(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn}))
	// Small segments, so segments roll (and get sealed) while the plugin is killed.
	block := Block{Plugin: "rowfile", Options: map[string]string{"sync": mode, "segment_size": "64KiB"}}
	dir := t.TempDir()
	ctx := context.Background()
	eng, err := l.OpenEngine(ctx, block, dir)
	if err != nil {
		t.Fatal(err)
	}
	pe := eng.(*processEngine)
	closed := false
	defer func() {
		if !closed {
			eng.Close()
		}
		if t.Failed() {
			t.Logf("host log (warnings and errors):\n%s", tailOf(logs.String(), 8000))
		}
	}()

	var lsns atomic.Uint64
	put := func(key string) (crashWrite, error) {
		lsn := lsns.Add(1)
		w := crashWrite{key: key, value: fmt.Sprintf("%s@%d", key, lsn), lsn: lsn}
		cctx, cancel := context.WithTimeout(ctx, crashCallTimeout)
		defer cancel()
		err := eng.Apply(cctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte(w.key), Value: []byte(w.value), LSN: w.lsn}})
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("apply %s hung for %v", key, crashCallTimeout)
		}
		return w, err
	}

	rec := &crashLog{}
	for round := range crashRounds() {
		pid := pe.PID()
		if pid == 0 {
			t.Fatalf("round %d: no plugin process", round)
		}
		var stop atomic.Bool
		var writes atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := range crashWriters {
			wg.Go(func() {
				for i := 0; !stop.Load() && writes.Add(1) <= crashRoundWrites; i++ {
					rec.record(put(fmt.Sprintf("r%02d/w%d/%06d", round, w, i)))
				}
			})
		}

		delay := time.Duration(2+rng.IntN(crashMaxKillDelay-1)) * time.Millisecond
		time.Sleep(delay) // not a synchronisation: the fault injection's random moment, under the writers' load
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("round %d: kill plugin %d: %v", round, pid, err)
		}
		ackedAtKill := rec.acks()
		// Keep writing until the restarted plugin acknowledged a few writes, or a bound.
		acksAtRestart := -1
		testutil.Eventually(t.Context(), crashRoundTime-time.Since(start), func() bool {
			if writes.Load() >= crashRoundWrites {
				return true
			}
			if acksAtRestart < 0 {
				if p := pe.PID(); p != 0 && p != pid {
					acksAtRestart = rec.acks()
				}
				return false
			}
			return rec.acks()-acksAtRestart >= crashAfterRestart
		})
		stop.Store(true)
		wg.Wait()

		// The plugin must be back: a write goes through (the first may still see
		// the crash if no writer noticed it).
		n, probeErr := 0, error(nil)
		if !testutil.Eventually(t.Context(), crashProbeTime, func() bool {
			w, err := put(fmt.Sprintf("r%02d/probe%d", round, n))
			rec.record(w, err)
			n, probeErr = n+1, err
			return err == nil
		}) {
			t.Fatalf("round %d: plugin not back %v after the kill: %v", round, crashProbeTime, probeErr)
		}
		newPID := pe.PID()
		acks, errs := rec.round()
		t.Logf("round %d: killed pid %d after %v (%d acked before the kill); %d writes: %d acknowledged, %d failed; new pid %d; %v",
			round, pid, delay, ackedAtKill, writes.Load(), acks, errs, newPID, time.Since(start).Round(time.Millisecond))
		if newPID == pid || newPID == 0 {
			t.Fatalf("round %d: plugin pid %d after the kill, was %d: not restarted", round, newPID, pid)
		}
		if errs == 0 {
			t.Errorf("round %d: no write failed although plugin %d was killed under them", round, pid)
		}
	}
	if len(rec.unnamed) > 0 {
		t.Errorf("%d failures do not name the plugin (want %q in the text), e.g.:\n%s",
			len(rec.unnamed), crashPluginNameErr, strings.Join(rec.unnamed, "\n"))
	}
	t.Logf("failures look like: %s", strings.Join(rec.samples, "\n  "))

	if err := eng.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed = true

	// Read everything back through a fresh loader and plugin process.
	l2 := testLoader(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn}))
	eng2, err := l2.OpenEngine(ctx, block, dir)
	if err != nil {
		t.Fatalf("reopen %s: %v", dir, err)
	}
	defer eng2.Close()
	stored := map[string]engines.Row{}
	for row, err := range engines.Scan(ctx, eng2, engines.ScanRange{}) {
		if err != nil {
			t.Fatalf("scan after reopen: %v", err)
		}
		stored[string(row.Key)] = row
	}

	var found, missing, wrong int
	var maxAcked uint64
	var examples []string
	for _, w := range rec.acked {
		maxAcked = max(maxAcked, w.lsn)
		row, ok := stored[w.key]
		switch {
		case !ok:
			missing++
			if len(examples) < 10 {
				examples = append(examples, fmt.Sprintf("missing %s (lsn %d)", w.key, w.lsn))
			}
		case string(row.Value) != w.value || row.LSN != w.lsn:
			wrong++
			if len(examples) < 10 {
				examples = append(examples, fmt.Sprintf("%s: got %q lsn %d, want %q lsn %d", w.key, row.Value, row.LSN, w.value, w.lsn))
			}
		default:
			found++
		}
	}
	// A failed write may or may not have survived, but only whole and unchanged.
	var failedPresent int
	for _, w := range rec.failed {
		if row, ok := stored[w.key]; ok {
			failedPresent++
			if string(row.Value) != w.value || row.LSN != w.lsn {
				t.Errorf("failed write %s survived as %q lsn %d, want %q lsn %d", w.key, row.Value, row.LSN, w.value, w.lsn)
			}
		}
	}
	if extra := len(stored) - found - wrong - failedPresent; extra != 0 {
		t.Errorf("%d stored rows were never written by the test", extra)
	}
	t.Logf("sync=%s: %d acknowledged, %d failed (%d of them stored anyway), %d of %d acknowledged found after reopen",
		mode, len(rec.acked), len(rec.failed), failedPresent, found, len(rec.acked))
	if missing > 0 || wrong > 0 {
		t.Errorf("acknowledged writes lost: %d missing, %d with another value, of %d acknowledged:\n%s",
			missing, wrong, len(rec.acked), strings.Join(examples, "\n"))
	}

	// Get agrees with Scan, and the applied LSN covers every acknowledged write.
	var getErrs int
	for i := 0; i < len(rec.acked); i += 97 {
		w := rec.acked[i]
		row, err := eng2.Get(ctx, []byte(w.key))
		if err != nil || string(row.Value) != w.value {
			if getErrs++; getErrs <= 3 {
				t.Errorf("get %s after reopen: %q, %v; want %q", w.key, row.Value, err, w.value)
			}
		}
	}
	if getErrs > 3 {
		t.Errorf("… %d gets after reopen went wrong in all", getErrs)
	}
	applied, err := eng2.AppliedLSN(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if applied < maxAcked {
		t.Errorf("applied lsn %d after reopen, below the highest acknowledged lsn %d", applied, maxAcked)
	}
}

// TestCallOnRestartedPluginNamesIt: a call that started on a plugin process the
// loader has since replaced (another caller saw the crash and restarted it) meets
// the closed connection, which gRPC reports as "the client connection is
// closing" with code Canceled. It must still fail naming the plugin, and must
// not read as the caller's own cancellation.
func TestCallOnRestartedPluginNamesIt(t *testing.T) {
	ctx := context.Background()
	l := testLoader(nil)
	var restarts atomic.Int64
	l.OnRestart = func(kind, plugin string) {
		if kind == "engine" && plugin == "memory" {
			restarts.Add(1)
		}
	}
	eng, err := l.OpenEngine(ctx, Block{Plugin: "memory"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	pe := eng.(*processEngine)
	old, gen, err := pe.current(ctx) // what a call in flight holds
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pe.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !pe.replaced(gen) && time.Now().Before(deadline) {
		pe.Stats(ctx) // another caller notices the crash; the plugin is restarted
	}
	if !pe.replaced(gen) {
		t.Fatal("plugin not restarted")
	}
	if n := restarts.Load(); n != 1 {
		t.Errorf("OnRestart called %d times for one restart, want 1 (kind engine, plugin memory)", n)
	}
	raw := old.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), LSN: 1}})
	if raw == nil {
		t.Fatal("apply on the killed plugin's client succeeded")
	}
	got := pe.check("apply", gen, raw)
	if !strings.Contains(got.Error(), "engine plugin memory failed during apply") {
		t.Errorf("call on the replaced plugin failed with %q (raw %q), want an error naming the plugin", got, raw)
	}
	if errors.Is(got, context.Canceled) {
		t.Errorf("call on the replaced plugin reads as cancelled by the caller: %v", got)
	}
	// The caller's own cancellation stays what it is.
	if got := pe.check("apply", gen, context.Canceled); got != context.Canceled {
		t.Errorf("caller's cancellation came back as %v", got)
	}
}

// tailOf returns the last n bytes of s.
func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

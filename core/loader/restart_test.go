package loader

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRestartDoesNotBlockCalls: a restart that takes long (the new plugin
// never completes its handshake) does not hold the lock that calls take: a
// call made meanwhile waits for it only as long as its ctx allows, and Close
// stops the restart instead of waiting for every attempt.
func TestRestartDoesNotBlockCalls(t *testing.T) {
	ctx := context.Background()
	eng, err := testLoader(nil).OpenEngine(ctx, Block{Plugin: "memory"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			eng.Close()
		}
	}()
	pe := eng.(*processEngine)
	hang := filepath.Join(t.TempDir(), "hang.sh")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const startTimeout = time.Second
	pe.l = &Loader{Self: hang, Engines: bundled, StartTimeout: startTimeout, MaxRestarts: 100}
	if err := syscall.Kill(pe.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	restarter := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, err = pe.Stats(ctx) // meets the dead plugin, and restarts it
		}
		restarter <- err
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for restarting := false; !restarting; {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal("no restart began")
		}
		pe.mu.RLock()
		restarting = pe.restarting != nil
		pe.mu.RUnlock()
	}

	callCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = pe.Get(callCtx, []byte("k"))
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > startTimeout {
		t.Fatalf("a call during the restart: %v after %v; want its ctx's deadline error after about 200ms", err, took)
	}
	t.Logf("a call during the restart: %v", err)

	start = time.Now()
	if err := eng.Close(); err != nil {
		t.Fatalf("close during a restart: %v", err)
	}
	closed = true
	// Close waits for the attempt in progress (bounded by StartTimeout),
	// not for the 100 attempts.
	if took := time.Since(start); took > startTimeout+2*time.Second {
		t.Fatalf("close during a restart took %v", took)
	}
	select {
	case err := <-restarter:
		t.Logf("the call that met the death: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the call that met the death did not return after Close")
	}
}

// TestPartitionerRestartDoesNotBlockCalls is TestRestartDoesNotBlockCalls
// for a partitioner plugin.
func TestPartitionerRestartDoesNotBlockCalls(t *testing.T) {
	ctx := context.Background()
	part, err := testLoader(nil).OpenPartitioner(ctx, Block{Plugin: "hash"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			part.Close()
		}
	}()
	pp := part.(*processPartitioner)
	hang := filepath.Join(t.TempDir(), "hang.sh")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const startTimeout = time.Second
	pp.l = &Loader{Self: hang, Partitioners: bundledPartitioners, StartTimeout: startTimeout, MaxRestarts: 100}
	if err := syscall.Kill(pp.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	keys, out := [][]byte{[]byte("k")}, make([]int, 1)
	restarter := make(chan error, 1)
	go func() { restarter <- pp.Locate(ctx, keys, make([]int, 1)) }() // meets the dead plugin, and restarts it
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for restarting := false; !restarting; {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatal("no restart began")
		}
		pp.mu.RLock()
		restarting = pp.restarting != nil
		pp.mu.RUnlock()
	}

	callCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = pp.Locate(callCtx, keys, out)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > startTimeout {
		t.Fatalf("a call during the restart: %v after %v; want its ctx's deadline error after about 200ms", err, took)
	}

	start = time.Now()
	if err := part.Close(); err != nil {
		t.Fatalf("close during a restart: %v", err)
	}
	closed = true
	if took := time.Since(start); took > startTimeout+2*time.Second {
		t.Fatalf("close during a restart took %v", took)
	}
	select {
	case err := <-restarter:
		if err == nil {
			t.Fatal("the call that met the death succeeded; want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call that met the death did not return after Close")
	}
}

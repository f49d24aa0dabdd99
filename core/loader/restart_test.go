package loader

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/plugdb/plugdb/internal/testutil"
)

// TestRestartDoesNotBlockCalls: a restart that takes long (the new plugin
// never completes its handshake) does not hold the lock that calls take: a
// call made meanwhile waits for it only as long as its ctx allows, and Close
// stops the restart instead of waiting for every attempt. For an engine and
// a partitioner plugin, which share the supervisor.
func TestRestartDoesNotBlockCalls(t *testing.T) {
	ctx := context.Background()
	t.Run("engine", func(t *testing.T) {
		eng, err := testLoader(nil).OpenEngine(ctx, Block{Plugin: "memory"}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		pe := eng.(*processEngine)
		checkRestartDoesNotBlockCalls(t, &pe.supervised, eng.Close,
			func(l *Loader) { l.Engines = bundled },
			func(ctx context.Context) error { _, err := pe.Get(ctx, []byte("k")); return err })
	})
	t.Run("partitioner", func(t *testing.T) {
		part, err := testLoader(nil).OpenPartitioner(ctx, Block{Plugin: "hash"}, 4)
		if err != nil {
			t.Fatal(err)
		}
		pp := part.(*processPartitioner)
		checkRestartDoesNotBlockCalls(t, &pp.supervised, part.Close,
			func(l *Loader) { l.Partitioners = bundledPartitioners },
			func(ctx context.Context) error { return pp.Locate(ctx, [][]byte{[]byte("k")}, make([]int, 1)) })
	})
}

// checkRestartDoesNotBlockCalls kills the plugin s supervises, points its
// loader at a "plugin" that never answers its handshake (bundle sets the
// kind's bundled names on that loader), has call meet the death so that a
// restart begins, and checks that a call during the restart returns at its
// ctx's deadline and that closePlugin ends the restart.
func checkRestartDoesNotBlockCalls[C pluginClient](t *testing.T, s *supervised[C], closePlugin func() error, bundle func(*Loader), call func(context.Context) error) {
	t.Helper()
	closed := false
	defer func() {
		if !closed {
			closePlugin()
		}
	}()
	hang := filepath.Join(t.TempDir(), "hang.sh")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const startTimeout = time.Second
	s.l = &Loader{Self: hang, StartTimeout: startTimeout, MaxRestarts: 100}
	bundle(s.l)
	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	restarter := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			err = call(ctx) // meets the dead plugin, and restarts it
		}
		restarter <- err
	}()
	testutil.WaitFor(t, 10*time.Second, func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.restarting != nil
	}, "a restart to begin")

	callCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := call(callCtx)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > startTimeout {
		t.Fatalf("a call during the restart: %v after %v; want its ctx's deadline error after about 200ms", err, took)
	}

	start = time.Now()
	if err := closePlugin(); err != nil {
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

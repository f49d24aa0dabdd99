package loader

import (
	"context"
	"fmt"
	"sync"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/plugins"
)

// pluginClient is the host side of a plugin kind (*plugins.EngineClient, …).
type pluginClient interface {
	// CloseContext closes what the plugin opened.
	CloseContext(ctx context.Context) error
}

// instance is one plugin process: its go-plugin client, the kind's client
// dispensed from it, and the tail of its stderr.
type instance[C pluginClient] struct {
	client *goplugin.Client
	c      C
	stderr *tailBuffer
}

// supervised is a plugin of any kind in a process: it starts the process,
// and restarts it when it dies (bounded attempts, with backoff). The kinds
// embed it and add their own calls, each of which takes the live client with
// current and hands its error to check (or to its own policy).
//
// A restart does not hold mu while it starts the new process or waits
// between attempts: it marks the plugin restarting (calls wait for that
// with their ctx), starts the process without the lock, and swaps the new
// client in under the lock.
type supervised[C pluginClient] struct {
	l     *Loader
	kind  plugins.Kind
	block Block
	// versions are the kind's go-plugin plugin sets; ready prepares the
	// client of a started process (opens the engine, configures the
	// partitioner, …), and what names that step in its errors ("open DIR").
	versions map[int]goplugin.PluginSet
	ready    func(context.Context, C) error
	what     string
	// errClosed is the kind's ErrClosed: the errors of a closed plugin, or
	// of one that could not be restarted, wrap it.
	errClosed error

	// closing ends at Close: a restart in progress stops starting and
	// waiting.
	closing  context.Context
	closeNow context.CancelFunc

	mu         sync.RWMutex
	live       instance[C]
	gen        int           // incremented by each restart
	restarting chan struct{} // non-nil while a restart runs; closed when it ends
	closed     bool
	failed     error // set when restarts are exhausted or after Close
}

// start starts the first plugin process.
func (s *supervised[C]) start(ctx context.Context) error {
	in, err := s.launch(ctx)
	if err != nil {
		return err
	}
	s.live = in
	s.closing, s.closeNow = context.WithCancel(context.Background())
	return nil
}

// launch starts a plugin process, dispenses the kind's client from it and
// makes it ready.
func (s *supervised[C]) launch(ctx context.Context) (instance[C], error) {
	stderr := newTailBuffer(20)
	client, raw, err := s.l.startClient(s.kind, s.block, s.versions, stderr)
	if err != nil {
		return instance[C]{}, err
	}
	c, ok := raw.(C)
	if !ok {
		client.Kill()
		return instance[C]{}, fmt.Errorf("plugin %s dispensed %T, not %s", s.block.Plugin, raw, article(s.kind))
	}
	if err := s.ready(ctx, c); err != nil {
		client.Kill()
		if status.Code(err) == codes.Unimplemented {
			return instance[C]{}, fmt.Errorf("plugin %s is not %s plugin (it does not serve the %s service): %w", s.block.Plugin, article(s.kind), s.kind, wrongKind{err})
		}
		return instance[C]{}, fmt.Errorf("%s plugin %s: %s: %w", s.kind, s.block.Plugin, s.what, err)
	}
	return instance[C]{client: client, c: c, stderr: stderr}, nil
}

// client returns the live client, as it is, without waiting for a restart:
// for what the plugin answered when it started (an engine's Interfaces, a
// replicator's Addr).
func (s *supervised[C]) client() C {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.live.c
}

// current returns the live client and its generation; while a restart runs
// it waits for it, or for ctx.
func (s *supervised[C]) current(ctx context.Context) (C, int, error) {
	for {
		s.mu.RLock()
		c, gen, failed, restarting := s.live.c, s.gen, s.failed, s.restarting
		s.mu.RUnlock()
		var none C
		if failed != nil {
			return none, gen, failed
		}
		if restarting == nil {
			return c, gen, nil
		}
		select {
		case <-restarting:
		case <-ctx.Done():
			return none, gen, fmt.Errorf("%s plugin %s is restarting: %w", s.kind, s.block.Plugin, ctx.Err())
		}
	}
}

// check inspects err from a call op made on generation gen: a dead or
// unreachable plugin turns into an error that names it, and the plugin is
// restarted.
func (s *supervised[C]) check(op string, gen int, err error) error {
	if !s.crashed(gen, err) {
		return err
	}
	crash := fmt.Errorf("%s plugin %s failed during %s (restarting it; last output: %q): %w", s.kind, s.block.Plugin, op, s.tail(), err)
	s.restart(gen)
	return crash
}

// crashed reports whether err from a call on generation gen is the plugin
// process dying or unreachable rather than an answer from it.
func (s *supervised[C]) crashed(gen int, err error) bool {
	return err != nil && (plugins.IsTransport(err) || s.exited(gen))
}

// exited reports whether the process of generation gen is seen exited.
func (s *supervised[C]) exited(gen int) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return gen == s.gen && s.live.client != nil && s.live.client.Exited()
}

// replaced reports whether the plugin of generation gen was restarted since.
func (s *supervised[C]) replaced(gen int) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return gen != s.gen
}

// tail returns the last lines the live process wrote to stderr.
func (s *supervised[C]) tail() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.live.stderr.String()
}

// restart replaces the plugin of generation gen, unless another caller
// already did or is doing it (then it waits for that restart to end). The
// slow part, starting processes and waiting between attempts, runs without
// mu; Close ends it early.
func (s *supervised[C]) restart(gen int) {
	s.mu.Lock()
	if gen != s.gen || s.failed != nil {
		s.mu.Unlock()
		return
	}
	if ch := s.restarting; ch != nil {
		s.mu.Unlock()
		<-ch
		return
	}
	done := make(chan struct{})
	s.restarting = done
	old, tail := s.live.client, s.live.stderr.String()
	s.mu.Unlock()
	defer close(done) // after the lock is released and any new process killed

	log := s.l.logger().Named(string(s.kind) + "." + s.block.Plugin)
	log.Error(string(s.kind)+" plugin died; restarting", "last_output", tail)
	old.Kill()
	var err error
	for attempt := 1; attempt <= s.l.maxRestarts(); attempt++ {
		ctx, cancel := context.WithTimeout(s.closing, 2*s.l.startTimeout())
		in, startErr := s.launch(ctx)
		cancel()
		err = startErr
		if err == nil {
			s.mu.Lock()
			s.restarting = nil
			if s.closed {
				s.mu.Unlock()
				in.client.Kill()
				return
			}
			s.live = in
			s.gen++
			s.mu.Unlock()
			log.Info(string(s.kind)+" plugin restarted", "attempt", attempt)
			if s.l.OnRestart != nil {
				s.l.OnRestart(string(s.kind), s.block.Plugin)
			}
			return
		}
		log.Error(string(s.kind)+" plugin restart failed", "attempt", attempt, "max", s.l.maxRestarts(), "error", err)
		if attempt == s.l.maxRestarts() || !backoff(s.closing, attempt) {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restarting = nil
	if s.failed == nil { // Close sets its own
		s.failed = fmt.Errorf("%s plugin %s: gave up after %d restarts: %v: %w", s.kind, s.block.Plugin, s.l.maxRestarts(), err, s.errClosed)
	}
}

// Close closes the plugin and ends its process; closing one that failed
// (it could not be restarted, or a replicator died) only ends the process:
// its calls go on returning the error that reported the failure. The plugin's Close is bounded by the loader's close
// timeout, and runs without mu; a restart in progress is stopped and waited
// for.
func (s *supervised[C]) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.closeNow()
	restarting := s.restarting
	failed := s.failed
	if failed == nil { // else calls go on failing with what they got
		s.failed = fmt.Errorf("%s plugin %s: %w", s.kind, s.block.Plugin, s.errClosed)
	}
	s.mu.Unlock()
	if restarting != nil {
		<-restarting // it found Close, and killed what it started
	}
	s.mu.Lock()
	live := s.live
	s.live.client = nil
	s.mu.Unlock()
	var err error
	if restarting == nil && failed == nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.l.closeTimeout())
		err = live.c.CloseContext(ctx)
		cancel()
	}
	live.client.Kill()
	if err != nil {
		return fmt.Errorf("close %s plugin %s: %w", s.kind, s.block.Plugin, err)
	}
	return nil
}

// PID returns the plugin process's id (for tests and status), or 0.
func (s *supervised[C]) PID() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.live.client == nil {
		return 0
	}
	if rc := s.live.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

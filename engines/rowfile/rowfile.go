// Package rowfile is plugdb's default storage engine: segmented append-only row
// files with a CRC per row, an in-memory index (hash or ordered btree), group
// commit, crash recovery that truncates a torn tail, and background compaction.
//
// Files in the engine's folder:
//
//	000001.seg …       segments (format.go); the highest id is the one appended to
//	000007.compact     compaction output, renamed over 000007.seg once complete
//	restore.tmp/       segments of a Restore in progress
//	RESTORE            a committed Restore's marker until its files are in place
//
// Options (engines.Options.Params): index (hash | btree), sync (always | batch |
// none), segment_size, max_key_size, max_value_size, compact_threshold,
// compact_interval; see the Opt constants. An engine opened LogBacked commits
// as with sync: none whatever sync says, and Flush (engines.Flusher) fsyncs.
package rowfile

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
)

// Engine is a rowfile engine. Its methods are safe for concurrent use.
type Engine struct {
	dir  string
	opts options
	caps engines.Capabilities
	log  hclog.Logger

	// fsync is f.Sync; tests replace it to inject failures.
	fsync func(*os.File) error
	// hook, set only by tests through withHook, runs at named steps of
	// compaction and Restore and may fail them there. Fixed at open.
	hook func(step string) error

	// cmu serializes compaction and Restore. Lock order: cmu, wmu, mu.
	cmu sync.Mutex

	// The write queue (commit.go).
	wmu     sync.Mutex
	widle   *sync.Cond // signalled on wmu when the writer role falls idle
	queue   []*request
	leading bool     // a request holds the writer role
	active  *segment // segment being appended to; writer-owned
	maxLSN  uint64   // highest LSN written or applied; writer-owned
	nextID  uint64   // next segment id; writer-owned
	wbuf    []byte

	// mu guards the index, the segment list and the counters. Writers hold it only
	// to publish a durable group; readers only to look up and pin.
	mu      sync.RWMutex
	idx     index
	segs    []*segment // published segments by id; the last is being appended to
	applied uint64
	tombs   int64 // tombstone entries in idx

	failed  atomic.Pointer[error] // set once on an I/O error that stops the engine
	closing atomic.Bool

	closeOnce   sync.Once
	closeErr    error
	stopCompact context.CancelFunc
	compactDone chan struct{}
}

var (
	_ engines.Engine               = (*Engine)(nil)
	_ engines.Scanner              = (*Engine)(nil)
	_ engines.Snapshotter          = (*Engine)(nil)
	_ engines.StatsReporter        = (*Engine)(nil)
	_ engines.CapabilitiesReporter = (*Engine)(nil)
	_ engines.Flusher              = (*Engine)(nil)
)

// Open opens (creating or recovering) the rowfile engine in opts.Dir. It matches
// engines.OpenFunc.
func Open(ctx context.Context, opts engines.Options) (engines.Engine, error) {
	e, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// openOption sets an unexported field of an engine being opened; only tests
// use them.
type openOption func(*Engine)

// withHook makes the engine call hook at the named steps of compaction and
// Restore (see Engine.hookStep).
func withHook(hook func(step string) error) openOption {
	return func(e *Engine) { e.hook = hook }
}

func open(ctx context.Context, opts engines.Options, with ...openOption) (*Engine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := parseOptions(opts.Params)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("rowfile: empty Dir: %w", engines.ErrInvalidArgument)
	}
	if st, err := os.Stat(opts.Dir); err != nil {
		return nil, fmt.Errorf("rowfile: open folder: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("rowfile: %s is not a folder: %w", opts.Dir, engines.ErrInvalidArgument)
	}
	if opts.LogBacked {
		// A durable log backs the engine: commit as with sync: none (written
		// to the segment, not fsynced); Flush and Close make it durable.
		o.sync = syncNone
	}
	e := &Engine{
		dir:   opts.Dir,
		opts:  o,
		caps:  engines.Capabilities{Durable: true, MaxKeySize: o.maxKeySize, MaxValueSize: o.maxValueSize},
		fsync: (*os.File).Sync,
		log:   opts.Logger,
		idx:   newIndex(o.index),
	}
	if e.log == nil {
		e.log = hclog.NewNullLogger()
	}
	for _, w := range with {
		w(e)
	}
	e.widle = sync.NewCond(&e.wmu)
	if err := e.recover(); err != nil {
		for _, s := range e.segs {
			s.release()
		}
		return nil, fmt.Errorf("rowfile: open %s: %w", opts.Dir, err)
	}
	if o.compactInterval > 0 {
		cctx, cancel := context.WithCancel(context.Background())
		e.stopCompact = cancel
		e.compactDone = make(chan struct{})
		go e.compactLoop(cctx, o.compactInterval)
	}
	return e, nil
}

// check returns the error every call fails with once the engine is closed or has
// stopped after an I/O error.
func (e *Engine) check() error {
	if p := e.failed.Load(); p != nil {
		return *p
	}
	if e.closing.Load() {
		return fmt.Errorf("rowfile %s: %w", e.dir, engines.ErrClosed)
	}
	return nil
}

// fail stops the engine after an unrecoverable I/O error and returns the error
// every call fails with from now on.
func (e *Engine) fail(err error) error {
	ferr := fmt.Errorf("rowfile %s: stopped after an I/O error: %w: %w", e.dir, err, engines.ErrClosed)
	e.failed.CompareAndSwap(nil, &ferr)
	return *e.failed.Load()
}

// Get returns the live row for key, or an error wrapping engines.ErrNotFound. The
// row is read from its segment and verified against its CRC.
func (e *Engine) Get(ctx context.Context, key []byte) (engines.Row, error) {
	if err := ctx.Err(); err != nil {
		return engines.Row{}, err
	}
	if err := engines.CheckKey(e.caps, key); err != nil {
		return engines.Row{}, fmt.Errorf("rowfile: get: %w", err)
	}
	e.mu.RLock()
	if err := e.check(); err != nil {
		e.mu.RUnlock()
		return engines.Row{}, err
	}
	en, ok := e.idx.get(key)
	if !ok || en.tomb {
		e.mu.RUnlock()
		return engines.Row{}, fmt.Errorf("rowfile: get %q: %w", key, engines.ErrNotFound)
	}
	en.seg.acquire()
	e.mu.RUnlock()
	defer en.seg.release()
	row, err := readRow(string(key), en)
	if err != nil {
		return engines.Row{}, fmt.Errorf("rowfile: get %q: %w", key, err)
	}
	return row, nil
}

// AppliedLSN returns the highest LSN applied (0 for a new engine).
func (e *Engine) AppliedLSN(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.check(); err != nil {
		return 0, err
	}
	return e.applied, nil
}

// Flush makes every group committed before the call durable and returns the
// applied LSN it covers (engines.Flusher). With sync always or batch (and not
// LogBacked) every group was fsynced when it was committed and Flush fsyncs
// nothing; otherwise it fsyncs the active segment (sealed ones were fsynced
// when they were rolled), holding the writer role for that fsync. A failed
// fsync stops the engine.
func (e *Engine) Flush(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("rowfile: flush: %w", err)
	}
	if err := e.check(); err != nil {
		return 0, err
	}
	e.lockWriter()
	defer e.wmu.Unlock()
	if err := e.check(); err != nil {
		return 0, err
	}
	e.mu.RLock()
	lsn := e.applied
	e.mu.RUnlock()
	if e.opts.sync != syncNone || e.active == nil {
		return lsn, nil
	}
	if err := e.fsync(e.active.f); err != nil {
		return 0, e.fail(fmt.Errorf("flush: fsync segment %s: %w", e.active.name(), err))
	}
	return lsn, nil
}

// Stats returns the live keys, the bytes of all segment files and the share of
// record bytes that are garbage (overwritten or deleted rows awaiting compaction).
func (e *Engine) Stats(ctx context.Context) (engines.Stats, error) {
	if err := ctx.Err(); err != nil {
		return engines.Stats{}, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.check(); err != nil {
		return engines.Stats{}, err
	}
	st := engines.Stats{Keys: int64(e.idx.len()) - e.tombs}
	var records, garbage int64
	for _, s := range e.segs {
		st.BytesOnDisk += s.size
		records += s.size - fileHeaderSize
		garbage += s.garbage()
	}
	if records > 0 {
		st.GarbageRatio = min(max(float64(garbage)/float64(records), 0), 1)
	}
	return st, nil
}

// Capabilities reports durability and the configured key and value limits.
func (e *Engine) Capabilities() engines.Capabilities { return e.caps }

// Close stops compaction, waits for writes in flight, fsyncs the active segment
// and closes the files. Later calls fail with engines.ErrClosed.
func (e *Engine) Close() error {
	first := false
	e.closeOnce.Do(func() {
		first = true
		failed := e.failed.Load() != nil
		e.closing.Store(true)
		if e.stopCompact != nil {
			e.stopCompact()
			<-e.compactDone
		}
		e.cmu.Lock()
		defer e.cmu.Unlock()
		e.lockWriter()
		defer e.wmu.Unlock()
		if !failed && e.failed.Load() == nil && e.active != nil {
			if err := e.fsync(e.active.f); err != nil {
				e.closeErr = fmt.Errorf("rowfile %s: close: fsync segment %s: %w", e.dir, e.active.name(), err)
			}
		}
		e.mu.Lock()
		segs := e.segs
		e.segs = nil
		e.mu.Unlock()
		for _, s := range segs {
			s.release()
		}
		if p := e.failed.Load(); p != nil && e.closeErr == nil {
			e.closeErr = *p
		}
	})
	if !first {
		return fmt.Errorf("rowfile %s: close: %w", e.dir, engines.ErrClosed)
	}
	return e.closeErr
}

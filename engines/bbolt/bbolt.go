// Package bbolt is a plugdb storage engine on go.etcd.io/bbolt, a single-file
// copy-on-write B+tree with ACID transactions.
//
// The engine's folder holds one file, plugdb.bolt, with these buckets:
//
//	rows      key → 8-byte big-endian LSN, then the value
//	meta      "version" (format, 1), "lsn" (applied LSN), "keys" (live keys);
//	          numbers are 8-byte big-endian
//	restore   a Restore in progress: its rows, in a nested bucket "rows"
//
// Apply commits one bbolt write transaction per group of concurrent Apply calls
// (group commit, commit.go), so each batch is atomic and, with sync: always,
// durable before Apply returns. Scan reads in short read transactions of at most
// scanChunkRows rows; Snapshot holds one read transaction until its rows are read
// or its context ends (scan.go). Restore stages rows in the restore bucket and
// moves them over rows in one final transaction (restore.go).
//
// Options (engines.Options.Params):
//
//	sync               always (default): fsync every commit, as bbolt does by default;
//	                   none: no fsync (bbolt's NoSync); the file is fsynced at
//	                   Close. A process crash loses nothing, an OS crash or power
//	                   loss can lose recent commits or leave the file unusable.
//	                   An engine opened LogBacked commits so whatever sync says,
//	                   and Flush (engines.Flusher) fsyncs the file.
//	max_key_size       largest key in bytes: 1 to 32768 (bbolt's limit), default 1024
//	max_value_size     largest value in bytes: 1 to 1GiB, default 1MiB
//	initial_mmap_size  bytes of address space bbolt maps at Open, default 1GiB;
//	                   0: bbolt's own (32KiB, doubling). Growing the mapping waits
//	                   for every open read transaction, a Snapshot's included, so
//	                   a mapping larger than the data keeps writes from stalling
//	                   behind a Snapshot being read. It reserves address space,
//	                   not memory or disk.
//
// Sizes take a KiB, MiB or GiB suffix.
package bbolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/plugdb/plugdb/engines"
)

// FileName is the engine's file in its folder.
const FileName = "plugdb.bolt"

// lockTimeout is how long Open waits for the file lock another process or
// another open engine holds.
const lockTimeout = time.Second

const formatVersion = 1

var (
	bucketRows    = []byte("rows")
	bucketMeta    = []byte("meta")
	bucketRestore = []byte("restore")

	metaVersion = []byte("version")
	metaLSN     = []byte("lsn")
	metaKeys    = []byte("keys")
)

// Engine is a bbolt engine. Its methods are safe for concurrent use.
type Engine struct {
	path string
	opts options
	caps engines.Capabilities
	// logBacked: opened with engines.Options.LogBacked, so commits are not
	// fsynced (bbolt's NoSync) whatever sync says; Flush and Close fsync.
	logBacked bool

	// mu guards db, which is nil once closed. Every transaction but a
	// Snapshot's runs under mu.RLock, so Close, under mu.Lock, waits for them.
	mu sync.RWMutex
	db *bolt.DB

	// failed is set once a commit fails: the file's state on disk is then
	// unknown, and every call fails with this error, which wraps ErrClosed.
	failed atomic.Pointer[error]

	// The group commit queue (commit.go).
	wmu     sync.Mutex
	queue   []*request
	leading bool // a request holds the writer role

	// snaps are the open Snapshots, released by Close.
	snapMu sync.Mutex
	snaps  map[*snapshot]struct{}

	// restoreMu serializes Restores, which share the restore bucket.
	restoreMu sync.Mutex
}

var (
	_ engines.Engine               = (*Engine)(nil)
	_ engines.Scanner              = (*Engine)(nil)
	_ engines.Snapshotter          = (*Engine)(nil)
	_ engines.StatsReporter        = (*Engine)(nil)
	_ engines.CapabilitiesReporter = (*Engine)(nil)
	_ engines.Flusher              = (*Engine)(nil)
)

// Open opens (creating if need be) the bbolt engine in opts.Dir. It matches
// engines.OpenFunc.
func Open(ctx context.Context, opts engines.Options) (engines.Engine, error) {
	e, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func open(ctx context.Context, opts engines.Options) (*Engine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := parseOptions(opts.Params)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("bbolt: empty Dir: %w", engines.ErrInvalidArgument)
	}
	if st, err := os.Stat(opts.Dir); err != nil {
		return nil, fmt.Errorf("bbolt: open folder: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("bbolt: %s is not a folder: %w", opts.Dir, engines.ErrInvalidArgument)
	}
	if opts.LogBacked {
		o.noSync = true
	}
	path := filepath.Join(opts.Dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         lockTimeout,
		NoSync:          o.noSync,
		InitialMmapSize: o.initialMmapSize,
		FreelistType:    bolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("bbolt: open %s: the file is locked by another process or another open engine (waited %s): %w",
			path, lockTimeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("bbolt: open %s: not a readable bbolt file: %w: %w", path, err, engines.ErrCorrupt)
	case err != nil:
		return nil, fmt.Errorf("bbolt: open %s: %w", path, err)
	}
	if err := db.Update(initFile); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bbolt: open %s: %w", path, err)
	}
	return &Engine{
		path:      path,
		opts:      o,
		logBacked: opts.LogBacked,
		caps:      engines.Capabilities{Durable: true, MaxKeySize: o.maxKeySize, MaxValueSize: o.maxValueSize},
		db:        db,
		snaps:     map[*snapshot]struct{}{},
	}, nil
}

// initFile creates the buckets of a new file, checks the format of an existing
// one and drops what an interrupted Restore left.
func initFile(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if tx.Bucket(bucketRows) != nil {
			return fmt.Errorf("bucket %q without bucket %q: %w", bucketRows, bucketMeta, engines.ErrCorrupt)
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketRows); err != nil {
			return err
		}
		return putUint(meta, metaVersion, formatVersion)
	}
	v, err := getUint(meta, metaVersion)
	if err != nil {
		return err
	}
	if v != formatVersion {
		return fmt.Errorf("format version %d, want %d: %w", v, formatVersion, engines.ErrCorrupt)
	}
	if tx.Bucket(bucketRows) == nil {
		return fmt.Errorf("no bucket %q: %w", bucketRows, engines.ErrCorrupt)
	}
	if tx.Bucket(bucketRestore) != nil {
		return tx.DeleteBucket(bucketRestore)
	}
	return nil
}

func putUint(b *bolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, binary.BigEndian.AppendUint64(nil, v))
}

// getUint reads a number from the meta bucket; a missing one is 0.
func getUint(b *bolt.Bucket, key []byte) (uint64, error) {
	v := b.Get(key)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("meta %q: %d bytes, want 8: %w", key, len(v), engines.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// encodeValue returns the stored form of a value: its LSN, then its bytes.
func encodeValue(lsn uint64, value []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), lsn), value...)
}

// decodeRow copies a stored row out of bbolt's memory.
func decodeRow(k, v []byte) (engines.Row, error) {
	if len(v) < 8 {
		return engines.Row{}, fmt.Errorf("row %q: stored value of %d bytes, want at least 8: %w", k, len(v), engines.ErrCorrupt)
	}
	return engines.Row{
		Key:   append([]byte(nil), k...),
		Value: append([]byte(nil), v[8:]...),
		LSN:   binary.BigEndian.Uint64(v),
	}, nil
}

func (e *Engine) closedErr(op string) error {
	return fmt.Errorf("bbolt %s: %s: %w", e.path, op, engines.ErrClosed)
}

// fail stops the engine after a failed commit and returns the error every call
// fails with from now on.
func (e *Engine) fail(err error) error {
	ferr := fmt.Errorf("bbolt %s: stopped after a failed commit: %w: %w", e.path, err, engines.ErrClosed)
	e.failed.CompareAndSwap(nil, &ferr)
	return *e.failed.Load()
}

// view runs fn in a read transaction under mu.RLock.
func (e *Engine) view(op string, fn func(*bolt.Tx) error) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.usable(op); err != nil {
		return err
	}
	return e.db.View(fn)
}

// usable returns the error a call fails with on a closed or stopped engine;
// the caller holds mu.
func (e *Engine) usable(op string) error {
	if e.db == nil {
		return e.closedErr(op)
	}
	if p := e.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Get returns the live row for key, or an error wrapping engines.ErrNotFound.
func (e *Engine) Get(ctx context.Context, key []byte) (engines.Row, error) {
	if err := ctx.Err(); err != nil {
		return engines.Row{}, err
	}
	if err := engines.CheckKey(e.caps, key); err != nil {
		return engines.Row{}, fmt.Errorf("bbolt: get: %w", err)
	}
	var row engines.Row
	err := e.view("get", func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRows).Get(key)
		if v == nil {
			return fmt.Errorf("bbolt: get %q: %w", key, engines.ErrNotFound)
		}
		var err error
		if row, err = decodeRow(key, v); err != nil {
			return fmt.Errorf("bbolt: get: %w", err)
		}
		return nil
	})
	return row, err
}

// AppliedLSN returns the highest LSN applied (0 for a new engine), or the LSN
// last restored.
func (e *Engine) AppliedLSN(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var lsn uint64
	err := e.view("applied lsn", func(tx *bolt.Tx) error {
		var err error
		lsn, err = getUint(tx.Bucket(bucketMeta), metaLSN)
		return err
	})
	return lsn, err
}

// Flush makes every commit before the call durable and returns the applied
// LSN it covers (engines.Flusher): with sync: always every commit was fsynced
// already; with sync: none or LogBacked it fsyncs the file (bbolt's Sync).
func (e *Engine) Flush(ctx context.Context) (uint64, error) {
	lsn, err := e.AppliedLSN(ctx)
	if err != nil || !e.opts.noSync {
		return lsn, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if err := e.usable("flush"); err != nil {
		return 0, err
	}
	if err := e.db.Sync(); err != nil {
		return 0, e.fail(fmt.Errorf("flush: fsync: %w", err))
	}
	return lsn, nil
}

// Stats returns the live keys (a counter kept in the meta bucket), the size of
// the file, and as GarbageRatio the share of the file's used pages (those below
// its high-water mark) that are free: pages of overwritten or deleted rows that
// later commits reuse. bbolt never shrinks its file, so this is space a compaction
// (bbolt compact) would give back. The file may extend past the high-water mark:
// bbolt grows it ahead of need, in steps of up to 16MiB.
func (e *Engine) Stats(ctx context.Context) (engines.Stats, error) {
	if err := ctx.Err(); err != nil {
		return engines.Stats{}, err
	}
	var st engines.Stats
	err := e.view("stats", func(tx *bolt.Tx) error {
		keys, err := getUint(tx.Bucket(bucketMeta), metaKeys)
		if err != nil {
			return err
		}
		st.Keys = int64(keys)
		fi, err := os.Stat(e.path)
		if err != nil {
			return fmt.Errorf("bbolt: stats: %w", err)
		}
		st.BytesOnDisk = fi.Size()
		ds := e.db.Stats()
		free := int64(ds.FreePageN+ds.PendingPageN) * int64(e.db.Info().PageSize)
		if used := tx.Size(); used > 0 {
			st.GarbageRatio = min(max(float64(free)/float64(used), 0), 1)
		}
		return nil
	})
	return st, err
}

// Capabilities reports a durable engine with the configured size limits.
func (e *Engine) Capabilities() engines.Capabilities { return e.caps }

// Close waits for the transactions in flight, ends the open Snapshots (their
// rows then yield an error wrapping ErrClosed), fsyncs the file with sync: none
// and closes it. Later calls fail with engines.ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.db == nil {
		return e.closedErr("close")
	}
	e.snapMu.Lock()
	snaps := make([]*snapshot, 0, len(e.snaps))
	for s := range e.snaps {
		snaps = append(snaps, s)
	}
	e.snapMu.Unlock()
	for _, s := range snaps {
		e.release(s, e.closedErr("snapshot"))
	}
	var errs []error
	if e.opts.noSync && e.failed.Load() == nil {
		if err := e.db.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("bbolt %s: close: fsync: %w", e.path, err))
		}
	}
	if err := e.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bbolt %s: close: %w", e.path, err))
	}
	e.db = nil
	if p := e.failed.Load(); p != nil {
		errs = append(errs, *p)
	}
	return errors.Join(errs...)
}

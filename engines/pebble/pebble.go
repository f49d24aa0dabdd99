// Package pebble is a plugdb storage engine on CockroachDB's Pebble
// (github.com/cockroachdb/pebble/v2), an LSM key-value store: a write-ahead log
// that groups concurrent fsyncs, memtables flushed to sorted tables, background
// compaction and a block cache.
//
// The engine owns its folder (engines.Options.Dir) and keeps pebble's files in it
// directly (MANIFEST-*, OPTIONS-*, *.log, *.sst, LOCK). A second Open of a folder
// in use fails: pebble locks the LOCK file. Keys are stored under prefixes (see
// format.go): 'r'+key holds a row (8-byte big-endian LSN, then the value); the
// applied LSN is kept under a meta key, written in the same pebble batch as the
// mutations it covers, so both survive a crash together.
//
// LogBacked (engines.Options) changes nothing here: pebble.NoSync leaves the
// WAL's last block in pebble's own buffer until a later sync or a full block,
// so a kill -9 could lose a batch Apply returned for, which LogBacked forbids.
// Commits follow sync as below (with always, pebble shares one fsync among
// concurrent commits), and Flush (engines.Flusher) syncs the WAL.
//
// Options (engines.Options.Params):
//
//	sync            always (default): each Apply commits with pebble.Sync (the WAL
//	                is fsynced before Apply returns; pebble shares one fsync among
//	                concurrent commits); none: pebble.NoSync (a crash of the
//	                machine may lose the last writes; Close still syncs)
//	max_key_size    largest key in bytes, 1..1MiB (default 1024)
//	max_value_size  largest value in bytes, 1..1GiB (default 1MiB)
//	cache_size      pebble's block cache in bytes, 1MiB..1024GiB (default 8MiB,
//	                pebble's own default)
//
// The pebble.Options used: CacheSize from cache_size; a bloom filter of 10 bits
// per key in the tables of every level (pebble has none by default; with it a
// Get skips the tables that cannot hold the key); FormatMajorVersion pinned to
// FormatValueSeparation (the newest format of pebble v2.1, pinned so a pebble
// upgrade does not silently ratchet the files); Merger, the max-LSN merge of the
// meta key; Logger, an adapter to the engine's hclog logger (pebble's info lines
// at debug level). Everything else is pebble's default: 4MiB memtables (writes
// stall at 2 queued), L0 compaction at a read amplification of 4 (writes stop
// at 12), 64MiB Lbase, 2MiB L0 tables (doubling per level), 512KiB
// BytesPerSync, one compaction at a time, snappy compression, no value
// separation. Restore commits with pebble.Sync in both sync modes.
package pebble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
)

// maxBatchBytes bounds the bytes of keys and values one pebble batch takes: a
// pebble batch cannot grow to 4GiB (it panics), so Apply and Restore refuse
// larger ones with an error first.
const maxBatchBytes = 3 << 30

// batchOverhead is what a batch entry costs besides its key and value: the
// kind byte, two varint lengths, the row prefix and the LSN.
const batchOverhead = 1 + 2*5 + 1 + lsnSize

// Engine is a pebble engine. Its methods are safe for concurrent use.
type Engine struct {
	dir  string
	opts options
	caps engines.Capabilities
	wo   *pebbledb.WriteOptions

	// mu guards db: calls that use db hold it shared; Close holds it exclusively,
	// so it waits for the calls in flight and later calls see db == nil.
	mu sync.RWMutex
	db *pebbledb.DB // nil once closed

	// rmu keeps Restore apart from Apply: Apply holds it shared, Restore
	// exclusively, so no Apply commits between a Restore's batch and its LSN.
	// Lock order: rmu, mu, cmu.
	rmu sync.RWMutex

	// applied caches the applied LSN (the meta key's value) so AppliedLSN reads
	// nothing; raised after each commit, set by Restore.
	applied atomic.Uint64

	// cmu guards cursors: the open iterators and snapshots, which Close releases
	// before it closes db (pebble refuses to close with them open).
	cmu     sync.Mutex
	cursors map[*cursor]struct{}
}

var (
	_ engines.Engine               = (*Engine)(nil)
	_ engines.Scanner              = (*Engine)(nil)
	_ engines.Snapshotter          = (*Engine)(nil)
	_ engines.StatsReporter        = (*Engine)(nil)
	_ engines.CapabilitiesReporter = (*Engine)(nil)
	_ engines.Flusher              = (*Engine)(nil)
)

// Open opens (creating or recovering) the pebble engine in opts.Dir. It matches
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
		return nil, fmt.Errorf("pebble: empty Dir: %w", engines.ErrInvalidArgument)
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	po := &pebbledb.Options{
		CacheSize:          o.cacheSize,
		FormatMajorVersion: pebbledb.FormatValueSeparation,
		Merger:             lsnMerger,
		Logger:             logger{log},
	}
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10) // and every level below, which inherit it
	db, err := pebbledb.Open(opts.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("pebble: open %s (a folder holds one open engine at a time): %w", opts.Dir, err)
	}
	lsn, err := readLSN(db)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("pebble: open %s: %w", opts.Dir, err)
	}
	e := &Engine{
		dir:     opts.Dir,
		opts:    o,
		caps:    engines.Capabilities{Durable: true, MaxKeySize: o.maxKeySize, MaxValueSize: o.maxValueSize},
		wo:      pebbledb.NoSync,
		db:      db,
		cursors: map[*cursor]struct{}{},
	}
	if o.sync {
		e.wo = pebbledb.Sync
	}
	e.applied.Store(lsn)
	return e, nil
}

// reader is what readLSN needs of a *pebble.DB or *pebble.Snapshot.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

// readLSN reads the applied LSN from the meta key (0 if there is none).
func readLSN(r reader) (uint64, error) {
	v, closer, err := r.Get(metaLSN)
	if errors.Is(err, pebbledb.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read applied lsn: %w", err)
	}
	defer closer.Close()
	return decodeLSN(v)
}

func (e *Engine) closedErr(op string) error {
	return fmt.Errorf("pebble %s: %s: %w", e.dir, op, engines.ErrClosed)
}

// raise makes the cached applied LSN at least lsn.
func (e *Engine) raise(lsn uint64) {
	for {
		cur := e.applied.Load()
		if lsn <= cur || e.applied.CompareAndSwap(cur, lsn) {
			return
		}
	}
}

// Get returns the live row for key, or an error wrapping engines.ErrNotFound.
func (e *Engine) Get(ctx context.Context, key []byte) (engines.Row, error) {
	if err := ctx.Err(); err != nil {
		return engines.Row{}, fmt.Errorf("pebble: get: %w", err)
	}
	if err := engines.CheckKey(e.caps, key); err != nil {
		return engines.Row{}, fmt.Errorf("pebble: get: %w", err)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return engines.Row{}, e.closedErr("get")
	}
	k := rowKey(key)
	v, closer, err := e.db.Get(k)
	if errors.Is(err, pebbledb.ErrNotFound) {
		return engines.Row{}, fmt.Errorf("pebble: get %q: %w", key, engines.ErrNotFound)
	}
	if err != nil {
		return engines.Row{}, fmt.Errorf("pebble: get %q: %w", key, err)
	}
	row, err := decodeRow(k, v) // copies v, which is valid until closer.Close
	closer.Close()
	return row, err
}

// Apply validates the batch with engines.CheckBatch, then writes it as one
// pebble batch, its highest LSN merged into the meta key, committed with
// pebble.Sync (sync: always) or pebble.NoSync (sync: none). It reads nothing.
func (e *Engine) Apply(ctx context.Context, batch []engines.Mutation) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pebble: apply: %w", err)
	}
	if err := engines.CheckBatch(e.caps, batch); err != nil {
		return fmt.Errorf("pebble: apply: %w", err)
	}
	size := 0
	for _, m := range batch {
		size += batchOverhead + len(m.Key) + len(m.Value)
	}
	if size > maxBatchBytes {
		return fmt.Errorf("pebble: apply: batch of %d bytes exceeds the %d bytes one pebble batch holds: %w", size, maxBatchBytes, engines.ErrInvalidArgument)
	}
	e.rmu.RLock()
	defer e.rmu.RUnlock()
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return e.closedErr("apply")
	}
	if len(batch) == 0 {
		return nil
	}
	b := e.db.NewBatch()
	defer b.Close()
	for _, m := range batch {
		if m.Op == engines.OpPut {
			putRow(b, m.Key, m.Value, m.LSN)
		} else {
			deleteRow(b, m.Key)
		}
	}
	top := batch[len(batch)-1].LSN
	if err := b.Merge(metaLSN, encodeLSN(top), nil); err != nil {
		return fmt.Errorf("pebble: apply: %w", err)
	}
	if err := b.Commit(e.wo); err != nil {
		return fmt.Errorf("pebble %s: apply: commit: %w", e.dir, err)
	}
	e.raise(top)
	return nil
}

// AppliedLSN returns the highest LSN applied (0 for a new engine), from memory.
func (e *Engine) AppliedLSN(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return 0, e.closedErr("applied lsn")
	}
	return e.applied.Load(), nil
}

// Stats counts the live keys with a scan of the rows and adds up the sizes of
// the files in the folder as BytesOnDisk (pebble's Metrics.DiskSpaceUsage
// leaves out the WAL file being written).
//
// GarbageRatio is the share of the key and value bytes the scan stepped over
// that were not live rows: older versions of overwritten keys and deletion
// tombstones, in memtables and tables, that compaction has not dropped yet. It
// is a lower bound: pebble's iterator skips, without counting them, the rows a
// range deletion covers (the old rows after a Restore) and some of the versions
// below a point deletion.
func (e *Engine) Stats(ctx context.Context) (engines.Stats, error) {
	if err := ctx.Err(); err != nil {
		return engines.Stats{}, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return engines.Stats{}, e.closedErr("stats")
	}
	it, err := e.db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: rowsLower, UpperBound: rowsUpper})
	if err != nil {
		return engines.Stats{}, fmt.Errorf("pebble: stats: %w", err)
	}
	var st engines.Stats
	var live uint64
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return engines.Stats{}, fmt.Errorf("pebble: stats: %w", err)
		}
		live += uint64(len(it.Key()) + len(v))
		if st.Keys++; st.Keys%4096 == 0 {
			if err := ctx.Err(); err != nil {
				it.Close()
				return engines.Stats{}, fmt.Errorf("pebble: stats: %w", err)
			}
		}
	}
	is := it.Stats().InternalStats
	if err := it.Close(); err != nil {
		return engines.Stats{}, fmt.Errorf("pebble: stats: count keys: %w", err)
	}
	if stepped := is.KeyBytes + is.ValueBytes; stepped > live {
		st.GarbageRatio = float64(stepped-live) / float64(stepped)
	}
	if st.BytesOnDisk, err = dirBytes(e.dir); err != nil {
		return engines.Stats{}, fmt.Errorf("pebble: stats: %w", err)
	}
	return st, nil
}

// Capabilities reports durability and the configured key and value limits.
func (e *Engine) Capabilities() engines.Capabilities { return e.caps }

// Flush makes every commit before the call durable and returns the applied
// LSN it covers (engines.Flusher): with sync: always every commit was synced
// already; with sync: none it syncs the WAL (an empty pebble.Sync write,
// which waits for every earlier commit's WAL record to be synced).
func (e *Engine) Flush(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("pebble: flush: %w", err)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.db == nil {
		return 0, e.closedErr("flush")
	}
	lsn := e.applied.Load()
	if e.opts.sync {
		return lsn, nil
	}
	if err := e.db.LogData(nil, pebbledb.Sync); err != nil {
		return 0, fmt.Errorf("pebble %s: flush: sync the WAL: %w", e.dir, err)
	}
	return lsn, nil
}

// Close waits for the calls in flight, releases the open scans and snapshots
// (their loops end with an error wrapping engines.ErrClosed) and closes pebble,
// which syncs the WAL. Later calls fail with engines.ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.db == nil {
		return e.closedErr("close")
	}
	db := e.db
	e.db = nil
	e.cmu.Lock()
	cursors := e.cursors
	e.cursors = nil
	e.cmu.Unlock()
	for c := range cursors {
		_ = c.release() // the owner's loop is ending; its error is of no use now
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("pebble %s: close: %w", e.dir, err)
	}
	return nil
}

// logger adapts an hclog.Logger to pebble.Logger.
type logger struct{ l hclog.Logger }

// Infof logs at debug level: pebble's info lines ("Found 0 WALs") are
// routine, one or more per open.
func (g logger) Infof(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }

// Errorf logs at error level.
func (g logger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }

// Fatalf logs at error level and panics: pebble calls it when it cannot go on
// (a failed MANIFEST write, say) and expects it not to return.
func (g logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	g.l.Error("pebble fatal error: " + msg)
	panic("pebble: " + msg)
}

// dirBytes adds up the sizes of the files below dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile (an obsolete table or WAL)
		}
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return n, nil
}

package pebble

import (
	"bytes"
	"errors"
	"iter"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
)

func openTest(t *testing.T, dir string, params map[string]string) *Engine {
	t.Helper()
	e, err := open(t.Context(), engines.Options{Dir: dir, Params: params})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil && !errors.Is(err, engines.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

func put(k string, v []byte, lsn uint64) engines.Mutation {
	return engines.Mutation{Op: engines.OpPut, Key: []byte(k), Value: v, LSN: lsn}
}

func apply(t *testing.T, e *Engine, ms ...engines.Mutation) {
	t.Helper()
	if err := e.Apply(t.Context(), ms); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func wantLSN(t *testing.T, e *Engine, want uint64) {
	t.Helper()
	got, err := e.AppliedLSN(t.Context())
	if err != nil || got != want {
		t.Fatalf("applied lsn: got %d, %v; want %d", got, err, want)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil)
	if err != nil {
		t.Fatalf("no options: %v", err)
	}
	if o != defaultOptions() || !o.sync || o.maxKeySize != 1024 || o.maxValueSize != 1<<20 || o.cacheSize != 8<<20 {
		t.Errorf("defaults: got %+v", o)
	}

	o, err = parseOptions(map[string]string{"sync": " none ", "max_key_size": "4KiB", "max_value_size": "2M", "cache_size": "64MiB"})
	if err != nil {
		t.Fatalf("valid options: %v", err)
	}
	if want := (options{sync: false, maxKeySize: 4096, maxValueSize: 2 << 20, cacheSize: 64 << 20}); o != want {
		t.Errorf("valid options: got %+v, want %+v", o, want)
	}

	for _, c := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"sync": "batch"}, `pebble: option sync: bad value "batch": allowed always | none`},
		{map[string]string{"sync": ""}, `option sync: bad value "": allowed always | none`},
		{map[string]string{"max_key_size": "0"}, `option max_key_size: bad value "0": allowed a size from 1 to 1048576 bytes`},
		{map[string]string{"max_key_size": "2MiB"}, `option max_key_size: bad value "2MiB"`},
		{map[string]string{"max_value_size": "-1"}, `option max_value_size: bad value "-1": allowed a size from 1 to 1073741824 bytes`},
		{map[string]string{"max_value_size": "lots"}, `option max_value_size: bad value "lots"`},
		{map[string]string{"cache_size": "1KiB"}, `option cache_size: bad value "1KiB": allowed a size from 1MiB to 1024GiB`},
		{map[string]string{"index": "btree"}, `pebble: unknown option "index" (value "btree"): allowed cache_size, max_key_size, max_value_size, sync`},
		// Several bad options: the first name in sorted order is reported.
		{map[string]string{"zzz": "1", "sync": "x"}, `option sync: bad value "x"`},
	} {
		_, err := parseOptions(c.params)
		if !errors.Is(err, engines.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error wrapping ErrInvalidArgument containing %q", c.params, err, c.want)
		}
		// Open refuses them before touching the folder.
		dir := t.TempDir()
		if e, err := Open(t.Context(), engines.Options{Dir: dir, Params: c.params}); !errors.Is(err, engines.ErrInvalidArgument) {
			t.Errorf("open with %v: got %v, %v; want ErrInvalidArgument", c.params, e, err)
		}
	}
}

func TestOpenCapabilities(t *testing.T) {
	e := openTest(t, t.TempDir(), map[string]string{"max_key_size": "16", "max_value_size": "32"})
	if got, want := e.Capabilities(), (engines.Capabilities{Durable: true, MaxKeySize: 16, MaxValueSize: 32}); got != want {
		t.Errorf("capabilities: got %+v, want %+v", got, want)
	}
	if _, err := Open(t.Context(), engines.Options{}); !errors.Is(err, engines.ErrInvalidArgument) {
		t.Errorf("open with an empty Dir: got %v, want ErrInvalidArgument", err)
	}
}

// TestOpenTwice: pebble's LOCK file keeps a second engine off a folder in use;
// once the first is closed, the folder opens again with its data.
func TestOpenTwice(t *testing.T) {
	dir := t.TempDir()
	e := openTest(t, dir, nil)
	apply(t, e, put("k", []byte("v"), 1))
	e2, err := Open(t.Context(), engines.Options{Dir: dir})
	if err == nil {
		e2.Close()
		t.Fatalf("second open of %s while the first is open: got nil error", dir)
	}
	if !strings.Contains(err.Error(), "a folder holds one open engine at a time") || !strings.Contains(err.Error(), dir) {
		t.Errorf("second open: got %q, want it to name the folder and say it is in use", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	e = openTest(t, dir, nil)
	r, err := e.Get(t.Context(), []byte("k"))
	if err != nil || string(r.Value) != "v" || r.LSN != 1 {
		t.Errorf("get after reopen: got %+v, %v", r, err)
	}
}

// TestLSNMergeThroughCompaction: batches that commit below the applied LSN
// leave it alone, also once the meta key's merge operands are flushed and
// compacted into tables; a Restore's lower LSN replaces them all.
func TestLSNMergeThroughCompaction(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	e := openTest(t, dir, nil)
	for _, lsn := range []uint64{5, 9, 3, 7} {
		apply(t, e, put("a", []byte{byte(lsn)}, lsn))
		if err := e.db.Flush(); err != nil { // one table per operand
			t.Fatalf("flush: %v", err)
		}
	}
	apply(t, e, put("b", nil, 2)) // an operand left in the memtable
	wantLSN(t, e, 9)
	if err := e.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	e = openTest(t, dir, nil)
	wantLSN(t, e, 9)
	lsn, rows, err := e.Snapshot(ctx)
	if err != nil || lsn != 9 {
		t.Fatalf("snapshot: lsn %d, %v; want 9", lsn, err)
	}
	for range rows {
	}

	if err := e.Restore(ctx, 4, func(yield func(engines.Row, error) bool) {
		yield(engines.Row{Key: []byte("c"), Value: []byte("x"), LSN: 4}, nil)
	}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	wantLSN(t, e, 4)
	apply(t, e, put("d", nil, 3)) // below the restored LSN
	if err := e.db.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if err := e.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	e = openTest(t, dir, nil)
	wantLSN(t, e, 4)
	if _, err := e.Get(ctx, []byte("a")); !errors.Is(err, engines.ErrNotFound) {
		t.Errorf("get of a row the restore removed: got %v, want ErrNotFound", err)
	}
	st, err := e.Stats(ctx)
	if err != nil || st.Keys != 2 {
		t.Errorf("stats after restore: got %+v, %v; want 2 keys (c, d)", st, err)
	}
}

// TestCloseReleasesCursors: Close ends open scans and snapshots, which pebble
// would otherwise report as leaked; their loops end with ErrClosed.
func TestCloseReleasesCursors(t *testing.T) {
	ctx := t.Context()
	e := openTest(t, t.TempDir(), nil)
	for i := range 10 {
		apply(t, e, put(string(rune('a'+i)), []byte("v"), uint64(i+1)))
	}
	_, unread, err := e.Snapshot(ctx) // never ranged, ctx never cancelled
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	_, snapRows, err := e.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	next, stop := iter.Pull2(snapRows) // a snapshot read partway
	defer stop()
	for i := range 2 {
		if _, err, ok := next(); err != nil || !ok {
			t.Fatalf("snapshot row %d: %v (more: %v)", i, err, ok)
		}
	}

	n := 0
	var last error
	for _, err := range e.Scan(ctx, engines.ScanRange{}) {
		if err != nil {
			last = err
			break
		}
		if n++; n == 3 {
			if err := e.Close(); err != nil {
				t.Errorf("close during a scan and a snapshot: %v", err)
			}
		}
	}
	if n != 3 || !errors.Is(last, engines.ErrClosed) {
		t.Errorf("scan: %d rows, then %v; want 3 rows, then an error wrapping ErrClosed", n, last)
	}
	if _, err, _ := next(); !errors.Is(err, engines.ErrClosed) {
		t.Errorf("snapshot read partway, after close: got %v, want ErrClosed", err)
	}
	for _, err := range unread {
		if !errors.Is(err, engines.ErrClosed) {
			t.Errorf("unread snapshot after close: got %v, want ErrClosed", err)
		}
	}
}

func TestSnapshotRowsReadTwice(t *testing.T) {
	e := openTest(t, t.TempDir(), nil)
	apply(t, e, put("a", []byte("1"), 1))
	_, rows, err := e.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	n := 0
	for _, err := range rows {
		if err != nil {
			t.Fatalf("first read: %v", err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("first read: %d rows, want 1", n)
	}
	for _, err := range rows {
		if err == nil || !strings.Contains(err.Error(), "read once already") {
			t.Errorf("second read: got %v, want an error saying the rows were read", err)
		}
	}
}

// TestStatsBytesOnDisk: a megabyte of incompressible values shows in
// BytesOnDisk, in the WAL or in tables.
func TestStatsBytesOnDisk(t *testing.T) {
	e := openTest(t, t.TempDir(), nil)
	rng := rand.New(rand.NewPCG(1, 2))
	const n, size = 256, 4096
	for i := range n {
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		apply(t, e, put(string(rune(0x100+i)), v, uint64(i+1)))
	}
	st, err := e.Stats(t.Context())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if st.Keys != n || st.BytesOnDisk < n*size || st.GarbageRatio < 0 || st.GarbageRatio > 1 {
		t.Errorf("stats: got %+v; want %d keys, at least %d bytes on disk, a garbage ratio in [0, 1]", st, n, n*size)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	if _, err := decodeRow([]byte("rk"), []byte{1, 2, 3}); !errors.Is(err, engines.ErrCorrupt) {
		t.Errorf("row value shorter than its lsn: got %v, want ErrCorrupt", err)
	}
	if _, err := decodeRow([]byte("mk"), make([]byte, 8)); !errors.Is(err, engines.ErrCorrupt) {
		t.Errorf("meta key as a row: got %v, want ErrCorrupt", err)
	}
	if _, err := decodeLSN([]byte{1}); !errors.Is(err, engines.ErrCorrupt) {
		t.Errorf("short lsn: got %v, want ErrCorrupt", err)
	}
	r, err := decodeRow([]byte("rk"), append(encodeLSN(7), 'v'))
	if err != nil || string(r.Key) != "k" || string(r.Value) != "v" || r.LSN != 7 {
		t.Errorf("decode: got %+v, %v", r, err)
	}
}

func TestLoggerFatalfPanics(t *testing.T) {
	var buf bytes.Buffer
	l := logger{hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug})}
	l.Infof("hello %d", 1)
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "disk gone") {
				t.Errorf("Fatalf: recovered %v, want a panic naming the message", r)
			}
		}()
		l.Fatalf("disk %s", "gone")
		t.Errorf("Fatalf returned")
	}()
	if s := buf.String(); !strings.Contains(s, "[DEBUG] hello 1") || !strings.Contains(s, "pebble fatal error: disk gone") {
		t.Errorf("log: got %q", s)
	}
}

// TestStatsGarbageRatio: overwriting every row with a value of the same size
// leaves half the stored bytes dead until compaction drops the old versions.
func TestStatsGarbageRatio(t *testing.T) {
	ctx := t.Context()
	e := openTest(t, t.TempDir(), nil)
	ratio := func() float64 {
		t.Helper()
		st, err := e.Stats(ctx)
		if err != nil || st.Keys != 100 {
			t.Fatalf("stats: %+v, %v; want 100 keys", st, err)
		}
		return st.GarbageRatio
	}
	key := func(i int) string { return string([]byte{'k', byte(i)}) }
	for i := range 100 {
		apply(t, e, put(key(i), bytes.Repeat([]byte{1}, 100), uint64(i+1)))
	}
	if g := ratio(); g != 0 {
		t.Errorf("garbage ratio of fresh rows: got %v, want 0", g)
	}
	for i := range 100 {
		apply(t, e, put(key(i), bytes.Repeat([]byte{2}, 100), uint64(101+i)))
	}
	if g := ratio(); g != 0.5 {
		t.Errorf("garbage ratio with every row overwritten once: got %v, want 0.5", g)
	}
	if err := e.db.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if err := e.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if g := ratio(); g != 0 {
		t.Errorf("garbage ratio after a full compaction: got %v, want 0", g)
	}
}

package bbolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/plugdb/plugdb/engines"
)

func openT(t *testing.T, dir string, params map[string]string) *Engine {
	t.Helper()
	e, err := open(context.Background(), engines.Options{Dir: dir, Params: params})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func apply(t *testing.T, e *Engine, batch ...engines.Mutation) {
	t.Helper()
	if err := e.Apply(context.Background(), batch); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func put(k string, v []byte, lsn uint64) engines.Mutation {
	return engines.Mutation{Op: engines.OpPut, Key: []byte(k), Value: v, LSN: lsn}
}

func del(k string, lsn uint64) engines.Mutation {
	return engines.Mutation{Op: engines.OpDelete, Key: []byte(k), LSN: lsn}
}

func key(i int) string { return fmt.Sprintf("k%06d", i) }

func collect(t *testing.T, seq iter.Seq2[engines.Row, error]) []engines.Row {
	t.Helper()
	var rows []engines.Row
	for r, err := range seq {
		if err != nil {
			t.Fatalf("rows: %v", err)
		}
		rows = append(rows, r)
	}
	return rows
}

func checkKeys(t *testing.T, rows []engines.Row, want []string) {
	t.Helper()
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d", len(rows), len(want))
	}
	for i, r := range rows {
		if string(r.Key) != want[i] {
			t.Fatalf("row %d: key %q, want %q", i, r.Key, want[i])
		}
	}
}

func keyRange(from, to int) []string {
	var ks []string
	for i := from; i < to; i++ {
		ks = append(ks, key(i))
	}
	return ks
}

func TestOptions(t *testing.T) {
	o, err := parseOptions(map[string]string{
		"sync": " none ", "max_key_size": "2KiB", "max_value_size": "16M", "initial_mmap_size": "2GiB",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := options{noSync: true, maxKeySize: 2048, maxValueSize: 16 << 20, initialMmapSize: 2 << 30}
	if o != want {
		t.Errorf("parsed %+v, want %+v", o, want)
	}
	if o, err := parseOptions(nil); err != nil || o != defaultOptions() || o.noSync {
		t.Errorf("no params: %+v, %v; want the defaults with sync: always", o, err)
	}

	for _, c := range []struct {
		params map[string]string
		want   []string // substrings of the error
	}{
		{map[string]string{"sync": "batch"}, []string{`option sync: bad value "batch"`, "always | none"}},
		{map[string]string{"sync": ""}, []string{`option sync: bad value ""`, "always | none"}},
		{map[string]string{"max_key_size": "0"}, []string{"option max_key_size", "from 1 to 32768"}},
		{map[string]string{"max_key_size": "32769"}, []string{"option max_key_size", "from 1 to 32768"}},
		{map[string]string{"max_key_size": "big"}, []string{`bad value "big"`}},
		{map[string]string{"max_value_size": "2GiB"}, []string{"option max_value_size", "from 1 to 1073741824"}},
		{map[string]string{"max_value_size": "-1"}, []string{"option max_value_size"}},
		{map[string]string{"initial_mmap_size": "0"}, []string{"option initial_mmap_size", "64MiB to 64GiB"}},
		{map[string]string{"initial_mmap_size": "65GiB"}, []string{"option initial_mmap_size", "64MiB to 64GiB"}},
		{map[string]string{"index": "btree"}, []string{`unknown option "index"`, "allowed initial_mmap_size, max_key_size, max_value_size, sync"}},
	} {
		_, err := parseOptions(c.params)
		if !errors.Is(err, engines.ErrInvalidArgument) {
			t.Errorf("%v: got %v, want an error wrapping ErrInvalidArgument", c.params, err)
			continue
		}
		for _, s := range c.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%v: error %q does not contain %q", c.params, err, s)
			}
		}
	}
}

func TestCapabilitiesFollowOptions(t *testing.T) {
	e := openT(t, t.TempDir(), map[string]string{"max_key_size": "8", "max_value_size": "4"})
	if got, want := e.Capabilities(), (engines.Capabilities{Durable: true, MaxKeySize: 8, MaxValueSize: 4}); got != want {
		t.Fatalf("capabilities %+v, want %+v", got, want)
	}
	err := e.Apply(context.Background(), []engines.Mutation{put("k", []byte("12345"), 1)})
	if !errors.Is(err, engines.ErrInvalidArgument) || !strings.Contains(err.Error(), "max_value_size 4") {
		t.Fatalf("5-byte value with max_value_size 4: got %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, engines.Options{}); !errors.Is(err, engines.ErrInvalidArgument) {
		t.Errorf("empty Dir: got %v, want ErrInvalidArgument", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, engines.Options{Dir: file}); !errors.Is(err, engines.ErrInvalidArgument) {
		t.Errorf("Dir is a file: got %v, want ErrInvalidArgument", err)
	}
	if _, err := Open(ctx, engines.Options{Dir: filepath.Join(t.TempDir(), "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing Dir: got %v, want an error wrapping ErrNotExist", err)
	}

	garbage := t.TempDir()
	if err := os.WriteFile(filepath.Join(garbage, FileName), bytes.Repeat([]byte("not bbolt "), 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, engines.Options{Dir: garbage})
	if !errors.Is(err, engines.ErrCorrupt) || !strings.Contains(err.Error(), FileName) {
		t.Errorf("a file that is not bbolt's: got %v, want ErrCorrupt naming %s", err, FileName)
	}
}

func TestOpenFormatChecks(t *testing.T) {
	for name, tamper := range map[string]func(tx *bolt.Tx) error{
		"version": func(tx *bolt.Tx) error { return putUint(tx.Bucket(bucketMeta), metaVersion, 7) },
		"no rows": func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketRows) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			e := openT(t, dir, nil)
			if err := e.update("test", tamper); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(context.Background(), engines.Options{Dir: dir}); !errors.Is(err, engines.ErrCorrupt) {
				t.Fatalf("reopen: got %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestSecondOpenFailsWhileLocked(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, nil)
	apply(t, e, put("a", []byte("1"), 1))
	_, err := Open(context.Background(), engines.Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "locked by another process or another open engine") {
		t.Fatalf("second open of %s: got %v, want a lock error", dir, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openT(t, dir, nil)
	if r, err := e2.Get(context.Background(), []byte("a")); err != nil || string(r.Value) != "1" {
		t.Fatalf("get after reopen: %v, %v", r, err)
	}
}

func TestScanChunks(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), nil)
	const n = 3*scanChunkRows + 17
	var batch []engines.Mutation
	for i := range n {
		batch = append(batch, put(key(i), []byte{byte(i)}, uint64(i+1)))
	}
	apply(t, e, batch...)

	all := collect(t, e.Scan(ctx, engines.ScanRange{}))
	checkKeys(t, all, keyRange(0, n))
	for i, r := range all {
		if r.LSN != uint64(i+1) || !bytes.Equal(r.Value, []byte{byte(i)}) {
			t.Fatalf("row %d: %+v", i, r)
		}
	}
	for _, c := range []struct {
		r    engines.ScanRange
		want []string
	}{
		{engines.ScanRange{Limit: scanChunkRows}, keyRange(0, scanChunkRows)},
		{engines.ScanRange{Limit: scanChunkRows + 1}, keyRange(0, scanChunkRows+1)},
		{engines.ScanRange{Start: []byte(key(100)), Limit: 600}, keyRange(100, 700)},
		{engines.ScanRange{Start: []byte(key(10)), End: []byte(key(10 + 2*scanChunkRows))}, keyRange(10, 10+2*scanChunkRows)},
		{engines.ScanRange{Start: []byte(key(700)), End: []byte(key(700))}, nil},
	} {
		checkKeys(t, collect(t, e.Scan(ctx, c.r)), c.want)
	}

	// Writes between chunks: keys deleted ahead of the scan are not seen, keys
	// added ahead are.
	var got []string
	lsn := uint64(n)
	for r, err := range e.Scan(ctx, engines.ScanRange{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(r.Key))
		if len(got) == scanChunkRows {
			lsn++
			apply(t, e, del(key(2*scanChunkRows), lsn), put(key(2*scanChunkRows)+"x", nil, lsn+1))
			lsn++
		}
	}
	want := keyRange(0, n)
	want[2*scanChunkRows] += "x"
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("scan with writes between chunks: got %d keys, want %d (%v)", len(got), len(want), got[2*scanChunkRows])
	}
}

func TestScanChunkBytes(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), nil)
	big := bytes.Repeat([]byte{0xab}, 512<<10)
	const n = 20 // 10MiB: three chunks by size
	for i := range n {
		apply(t, e, put(key(i), big, uint64(i+1)))
	}
	rows := collect(t, e.Scan(ctx, engines.ScanRange{}))
	checkKeys(t, rows, keyRange(0, n))
	for i, r := range rows {
		if !bytes.Equal(r.Value, big) {
			t.Fatalf("row %d: value of %d bytes", i, len(r.Value))
		}
	}
	rows, more, err := e.scanChunk(nil, false, nil, scanChunkRows)
	if err != nil || !more || len(rows) != scanChunkBytes/len(big) {
		t.Fatalf("first chunk: %d rows, more %v, %v; want %d rows and more", len(rows), more, err, scanChunkBytes/len(big))
	}
}

func TestSnapshotEndsAtClose(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), nil)
	for i := range 5 {
		apply(t, e, put(key(i), []byte("v"), uint64(i+1)))
	}
	_, unread, err := e.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, partly, err := e.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next, stop := iter.Pull2(partly)
	defer stop()
	if r, err, ok := next(); !ok || err != nil || string(r.Key) != key(0) {
		t.Fatalf("first snapshot row: %v, %v, %v", r, err, ok)
	}
	// Close ends both snapshots' read transactions instead of waiting for them.
	if err := e.Close(); err != nil {
		t.Fatalf("close with open snapshots: %v", err)
	}
	if _, err, _ := next(); !errors.Is(err, engines.ErrClosed) {
		t.Errorf("snapshot row after Close: got %v, want ErrClosed", err)
	}
	for _, err := range unread {
		if !errors.Is(err, engines.ErrClosed) {
			t.Errorf("unread snapshot after Close: got %v, want ErrClosed", err)
		}
		break
	}
}

func TestSnapshotReadOnce(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), nil)
	apply(t, e, put("a", []byte("1"), 1), put("b", []byte("2"), 2))
	_, rows, err := e.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, collect(t, rows), []string{"a", "b"})
	for _, err := range rows {
		if !errors.Is(err, errSnapshotRead) {
			t.Errorf("second range over snapshot rows: got %v, want %v", err, errSnapshotRead)
		}
	}
	if open := openSnapshots(e); open != 0 {
		t.Errorf("%d snapshots still registered after their rows were read", open)
	}
}

func TestSnapshotCancelReleases(t *testing.T) {
	e := openT(t, t.TempDir(), nil)
	apply(t, e, put("a", []byte("1"), 1))
	ctx, cancel := context.WithCancel(context.Background())
	_, rows, err := e.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := openSnapshots(e); n != 1 {
		t.Fatalf("%d open snapshots, want 1", n)
	}
	cancel()
	// The release runs on the context's AfterFunc goroutine.
	for openSnapshots(e) > 0 {
		runtime.Gosched()
	}
	n := 0
	for _, err := range rows {
		if n++; !errors.Is(err, context.Canceled) {
			t.Errorf("rows of a cancelled snapshot: got %v, want context.Canceled", err)
		}
	}
	if n != 1 {
		t.Errorf("rows of a cancelled snapshot: %d items, want 1 (the error)", n)
	}
}

func openSnapshots(e *Engine) int {
	e.snapMu.Lock()
	defer e.snapMu.Unlock()
	return len(e.snaps)
}

// bigRows yields n rows, then err if it is not nil.
func bigRows(n int, err error) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		for i := range n {
			if !yield(engines.Row{Key: []byte(key(i)), Value: []byte("restored"), LSN: uint64(i + 1)}, nil) {
				return
			}
		}
		if err != nil {
			yield(engines.Row{}, err)
		}
	}
}

func TestRestoreInChunks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openT(t, dir, nil)
	apply(t, e, put("old", []byte("x"), 1), put(key(3), []byte("old"), 2))
	const n = 2*restoreChunkRows + 5

	// A source that fails after two chunks were staged leaves the old contents
	// and no staging bucket.
	srcErr := errors.New("source failed")
	if err := e.Restore(ctx, 99, bigRows(n, srcErr)); !errors.Is(err, srcErr) {
		t.Fatalf("restore from a failing source: got %v, want %v", err, srcErr)
	}
	checkKeys(t, collect(t, e.Scan(ctx, engines.ScanRange{})), []string{key(3), "old"})
	if lsn, _ := e.AppliedLSN(ctx); lsn != 2 {
		t.Errorf("applied lsn after a failed restore: %d, want 2", lsn)
	}
	checkNoStaging(t, e)

	if err := e.Restore(ctx, 50, bigRows(n, nil)); err != nil {
		t.Fatal(err)
	}
	rows := collect(t, e.Scan(ctx, engines.ScanRange{}))
	checkKeys(t, rows, keyRange(0, n))
	if r := rows[3]; string(r.Value) != "restored" || r.LSN != 4 {
		t.Errorf("restored row 3: %+v", r)
	}
	st, err := e.Stats(ctx)
	if err != nil || st.Keys != n {
		t.Errorf("stats after restore: %+v, %v; want %d keys", st, err, n)
	}
	if lsn, _ := e.AppliedLSN(ctx); lsn != 50 {
		t.Errorf("applied lsn after restore: %d, want 50", lsn)
	}
	checkNoStaging(t, e)

	// Duplicate keys in the source count once.
	dup := func(yield func(engines.Row, error) bool) {
		_ = yield(engines.Row{Key: []byte("a"), Value: []byte("1"), LSN: 1}, nil) &&
			yield(engines.Row{Key: []byte("a"), Value: []byte("2"), LSN: 2}, nil)
	}
	if err := e.Restore(ctx, 2, dup); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.Stats(ctx); st.Keys != 1 {
		t.Errorf("restore with a duplicate key: %d keys, want 1", st.Keys)
	}
	if r, err := e.Get(ctx, []byte("a")); err != nil || string(r.Value) != "2" {
		t.Errorf("restore with a duplicate key: get %+v, %v; want the later row", r, err)
	}
}

func checkNoStaging(t *testing.T, e *Engine) {
	t.Helper()
	err := e.view("test", func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRestore) != nil {
			return errors.New("the restore bucket is still there")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestOpenDropsInterruptedRestore: rows staged by a Restore that never finished
// (a crash) are dropped at Open, and the old contents stay.
func TestOpenDropsInterruptedRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openT(t, dir, nil)
	apply(t, e, put("old", []byte("x"), 7))
	err := e.update("test", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketRestore)
		if err != nil {
			return err
		}
		rows, err := b.CreateBucket(bucketRows)
		if err != nil {
			return err
		}
		return rows.Put([]byte("new"), encodeValue(1, []byte("y")))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openT(t, dir, nil)
	checkKeys(t, collect(t, e.Scan(ctx, engines.ScanRange{})), []string{"old"})
	checkNoStaging(t, e)
	if lsn, _ := e.AppliedLSN(ctx); lsn != 7 {
		t.Errorf("applied lsn: %d, want 7", lsn)
	}
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openT(t, dir, nil)
	v := bytes.Repeat([]byte("v"), 1000)
	lsn := uint64(0)
	for i := range 2000 {
		lsn++
		apply(t, e, put(key(i), v, lsn))
	}
	st, err := e.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != 2000 || st.BytesOnDisk != fi.Size() || st.BytesOnDisk < 2000*1000 {
		t.Fatalf("stats %+v; want 2000 keys and %d bytes on disk (the file's size)", st, fi.Size())
	}
	before := st.GarbageRatio
	var batch []engines.Mutation
	for i := range 1900 {
		lsn++
		batch = append(batch, del(key(i), lsn))
	}
	apply(t, e, batch...)
	st, err = e.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != 100 || !(st.GarbageRatio > before && st.GarbageRatio > 0.5 && st.GarbageRatio <= 1) {
		t.Fatalf("after deleting 1900 of 2000 keys: %+v; want 100 keys and a garbage ratio above 0.5 (was %v)", st, before)
	}
}

// TestConcurrentApplies: writers that apply at once end with every
// batch applied, and the key count and applied LSN right.
func TestConcurrentApplies(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), nil)
	const writers, per = 8, 50
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range per {
				lsn := uint64(w*per + i + 1)
				k := fmt.Sprintf("w%d-%03d", w, i)
				if err := e.Apply(ctx, []engines.Mutation{put(k, []byte(k), lsn)}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, err := e.Stats(ctx)
	if err != nil || st.Keys != writers*per {
		t.Fatalf("stats %+v, %v; want %d keys", st, err, writers*per)
	}
	if lsn, _ := e.AppliedLSN(ctx); lsn != writers*per {
		t.Fatalf("applied lsn %d, want %d", lsn, writers*per)
	}
	for w := range writers {
		for i := range per {
			k := fmt.Sprintf("w%d-%03d", w, i)
			if r, err := e.Get(ctx, []byte(k)); err != nil || string(r.Value) != k || r.LSN != uint64(w*per+i+1) {
				t.Fatalf("get %s: %+v, %v", k, r, err)
			}
		}
	}
}

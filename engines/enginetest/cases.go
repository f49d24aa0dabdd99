package enginetest

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/plugdb/plugdb/engines"
)

func testGetPutDelete(t T, h Harness) {
	e := open(t, h, t.TempDir())
	w := newWriter(t, e)
	k := key(1)
	checkNotFound(t, e, k)

	w.apply(put(k, value(1, 1)))
	checkGet(t, e, engines.Row{Key: k, Value: value(1, 1), LSN: 1})

	w.apply(put(k, value(1, 2)))
	checkGet(t, e, engines.Row{Key: k, Value: value(1, 2), LSN: 2})

	w.apply(del(k))
	checkNotFound(t, e, k)

	w.apply(del(k))      // deleted already
	w.apply(del(key(2))) // never written
	checkNotFound(t, e, key(2))
	checkLSN(t, e, 5)

	// An empty value is a live row, not a deletion.
	w.apply(put(key(3), []byte{}))
	checkGet(t, e, engines.Row{Key: key(3), Value: nil, LSN: 6})
	checkRows(t, e, w.want())
}

func testBuffersOwned(t T, h Harness) {
	e := open(t, h, t.TempDir())
	w := newWriter(t, e)
	for i := range 3 {
		w.apply(put(key(i), value(i, 1)))
	}

	// The engine must not keep the caller's buffers after Apply returns.
	k, v := key(9), value(9, 1)
	w.apply(put(k, v))
	scribble(k)
	scribble(v)
	checkRows(t, e, w.want())

	// Buffers the engine returns belong to the caller.
	r, err := e.Get(t.Context(), key(0))
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	scribble(r.Key)
	scribble(r.Value)
	if _, ok := engines.AsScanner(e); ok {
		for _, r := range scan(t, e, engines.ScanRange{}) {
			scribble(r.Key)
			scribble(r.Value)
		}
	}
	if s, ok := engines.AsSnapshotter(e); ok {
		_, rows, err := s.Snapshot(t.Context())
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		for _, r := range collect(t, "snapshot", rows) {
			scribble(r.Key)
			scribble(r.Value)
		}
	}
	checkRows(t, e, w.want())
}

func testBatchAtomic(t T, h Harness) {
	e := open(t, h, t.TempDir())
	w := newWriter(t, e)
	w.apply(put(key(1), value(1, 1)), put(key(2), value(2, 1)), put(key(3), value(3, 1)))
	checkRows(t, e, w.want())

	// One batch of puts, an overwrite and deletes; later mutations of a key win.
	w.apply(
		put(key(4), value(4, 1)),
		put(key(1), value(1, 2)),
		del(key(2)),
		put(key(5), value(5, 1)),
		put(key(5), value(5, 2)),
		put(key(6), value(6, 1)),
		del(key(6)),
	)
	checkRows(t, e, w.want())
	checkLSN(t, e, w.lsn)

	// Batches that start well (a delete, an overwrite, a new key) and end with
	// one invalid mutation must apply nothing.
	n := w.lsn
	good := []engines.Mutation{
		withLSN(del(key(1)), n+1),
		withLSN(put(key(3), value(3, 9)), n+2),
		withLSN(put(key(10), value(10, 1)), n+3),
	}
	bad := map[string]engines.Mutation{
		"lsn repeated":          withLSN(put(key(11), value(11, 1)), n+3),
		"lsn decreasing":        withLSN(put(key(11), value(11, 1)), n+2),
		"empty key":             withLSN(put(nil, value(11, 1)), n+4),
		"delete with empty key": withLSN(del([]byte{}), n+4),
		"unknown op":            {Op: engines.Op(9), Key: key(11), Value: value(11, 1), LSN: n + 4},
	}
	caps := engines.CapabilitiesOf(e)
	if caps.MaxKeySize > 0 && caps.MaxKeySize < maxAlloc {
		bad["oversize key"] = withLSN(put(make([]byte, caps.MaxKeySize+1), value(11, 1)), n+4)
	}
	if caps.MaxValueSize > 0 && caps.MaxValueSize < maxAlloc {
		bad["oversize value"] = withLSN(put(key(11), make([]byte, caps.MaxValueSize+1)), n+4)
	}
	for name, m := range bad {
		batch := append(append([]engines.Mutation(nil), good...), m)
		wantInvalid(t, "batch ending with "+name, e.Apply(t.Context(), batch))
		checkRows(t, e, w.want())
		checkNotFound(t, e, key(10))
		checkLSN(t, e, w.lsn)
	}

	// LSN 0 is never valid.
	wantInvalid(t, "batch at lsn 0", e.Apply(t.Context(), []engines.Mutation{withLSN(put(key(12), value(12, 1)), 0)}))
	checkNotFound(t, e, key(12))
	checkLSN(t, e, w.lsn)

	// An empty batch changes nothing.
	if err := e.Apply(t.Context(), nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	checkRows(t, e, w.want())
	checkLSN(t, e, w.lsn)
}

// scanKeys are keys whose byte order trips up encodings: prefixes, 0x00 and 0xff.
var scanKeys = [][]byte{
	{0x00}, {0x00, 0x00}, {0x00, 0xff}, {0x01},
	[]byte("a"), []byte("a\x00"), []byte("a\x00\x00"), []byte("a\xff"), []byte("ab"), []byte("b"),
	{0x7f}, {0x80}, {0xff}, {0xff, 0x00}, {0xff, 0xff},
}

func testScan(t T, h Harness) {
	e := open(t, h, t.TempDir())
	needScanner(t, e)
	w := newWriter(t, e)
	keys := append([][]byte(nil), scanKeys...)
	for i := range 30 {
		keys = append(keys, key(i))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for i := 0; i < len(keys); {
		n := min(1+rng.IntN(4), len(keys)-i)
		var batch []engines.Mutation
		for j, k := range keys[i : i+n] {
			batch = append(batch, put(k, value(i+j, 1)))
		}
		w.apply(batch...)
		i += n
	}
	deleted := key(7)
	w.apply(del(deleted), del([]byte("a\x00")), del([]byte{0xff}))
	want := w.want()
	checkRows(t, e, want)

	bounds := [][]byte{
		nil, {0x00}, {0x00, 0x00}, {0x00, 0x01}, []byte("a"), []byte("a\x00"), []byte("a\x00\x01"),
		key(5), deleted, key(29), {0x80}, {0xff}, {0xff, 0xff}, {0xff, 0xff, 0xff},
	}
	for _, start := range bounds {
		for _, end := range bounds {
			for _, limit := range []int{0, 1, 3, -1} {
				r := engines.ScanRange{Start: start, End: end, Limit: limit}
				if !diffRows(t, fmtRange(r), scan(t, e, r), inRange(want, r)) {
					return
				}
			}
		}
	}
	r := engines.ScanRange{Start: []byte("a"), End: []byte{}}
	diffRows(t, "empty non-nil End means no upper bound: "+fmtRange(r), scan(t, e, r), inRange(want, r))
	r = engines.ScanRange{Limit: len(want) + 10}
	diffRows(t, "limit above the row count: "+fmtRange(r), scan(t, e, r), want)
}

func testScanStopEarly(t T, h Harness) {
	e := open(t, h, t.TempDir())
	s := needScanner(t, e)
	w := newWriter(t, e)
	for i := range 20 {
		w.apply(put(key(i), value(i, 1)))
	}
	n := 0
	for r, err := range s.Scan(t.Context(), engines.ScanRange{}) {
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		if _, err := e.Get(t.Context(), r.Key); err != nil {
			t.Errorf("get %q inside a scan loop: %v", r.Key, err)
		}
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Errorf("scan yielded %d rows before the break, want 3", n)
	}
	// The engine keeps working after a scan stopped early.
	w.apply(put(key(100), value(100, 1)), del(key(0)))
	checkRows(t, e, w.want())

	// Two scans read in turns are independent.
	want := w.want()
	next1, stop1 := iter.Pull2(s.Scan(t.Context(), engines.ScanRange{}))
	defer stop1()
	next2, stop2 := iter.Pull2(s.Scan(t.Context(), engines.ScanRange{Start: want[5].Key}))
	defer stop2()
	for i := range 5 {
		for s, next := range []func() (engines.Row, error, bool){next1, next2} {
			r, err, ok := next()
			if err != nil || !ok {
				t.Fatalf("interleaved scan %d, row %d: %v (more: %v)", s+1, i, err, ok)
			}
			if wr := want[i+5*s]; !rowEqual(r, wr) {
				t.Errorf("interleaved scan %d, row %d: got %s, want %s", s+1, i, fmtRow(r), fmtRow(wr))
			}
		}
	}
	stop1()
	stop2()
	w.apply(put(key(101), value(101, 1)))
	checkRows(t, e, w.want())
}

func testLSNMonotonic(t T, h Harness) {
	e := open(t, h, t.TempDir())
	w := newWriter(t, e)
	checkLSN(t, e, 0)
	wantInvalid(t, "lsn 0 on a new engine", e.Apply(t.Context(), []engines.Mutation{withLSN(put(key(1), value(1, 0)), 0)}))
	checkLSN(t, e, 0)

	w.applyFrom(5, put(key(1), value(1, 5)))
	checkLSN(t, e, 5)

	// Concurrent batches may arrive out of LSN order: a batch below AppliedLSN
	// is applied, and AppliedLSN stays the highest.
	w.applyFrom(3, put(key(2), value(2, 3)))
	checkLSN(t, e, 5)

	// Gaps are fine, and deletes count.
	w.applyFrom(100, put(key(1), value(1, 100)))
	w.applyFrom(101, del(key(3)))
	checkLSN(t, e, 101)

	// A batch moves AppliedLSN to its last LSN, unless that is lower.
	w.applyFrom(102, put(key(4), value(4, 1)), del(key(1)))
	w.applyFrom(110, put(key(5), value(5, 1)))
	checkLSN(t, e, 110)
	w.applyFrom(50, put(key(6), value(6, 1)), put(key(7), value(7, 1)))
	checkLSN(t, e, 110)
	checkRows(t, e, w.want())
}

func testLSNPersisted(t T, h Harness) {
	dir := t.TempDir()
	e := open(t, h, dir)
	if !engines.CapabilitiesOf(e).Durable {
		t.Skipf("engine is not durable (its Capabilities, or engines.DefaultCapabilities, say Durable false), so it keeps no applied LSN across reopen")
	}
	w := newWriter(t, e)
	w.apply(put(key(1), value(1, 1)))
	w.apply(put(key(2), value(2, 1)), put(key(3), value(3, 1)))
	w.applyFrom(7, del(key(2))) // a gap
	w.applyFrom(20, put(key(9), value(9, 1)))
	w.applyFrom(15, put(key(10), value(10, 1))) // out of order
	closeEngine(t, e)

	e = open(t, h, dir)
	w.e = e
	checkLSN(t, e, 20)
	checkRows(t, e, w.want())
	w.apply(put(key(5), value(5, 1)))
	checkLSN(t, e, 21)

	w.applyFrom(30, put(key(11), value(11, 1)))
	closeEngine(t, e)
	e = open(t, h, dir)
	checkLSN(t, e, 30)
	checkRows(t, e, w.want())
}

func testReopen(t T, h Harness) {
	dir := t.TempDir()
	e := open(t, h, dir)
	if !engines.CapabilitiesOf(e).Durable {
		t.Skipf("engine is not durable (its Capabilities, or engines.DefaultCapabilities, say Durable false), so it keeps no data across reopen")
	}
	w := newWriter(t, e)
	for i := range 30 {
		w.apply(put(key(i), value(i, 1)))
	}
	w.apply(put(key(3), value(3, 2)), del(key(4)), put([]byte{0xff}, []byte{}), put([]byte{0x00}, []byte{0x00}))
	w.apply(del(key(5)), del(key(500)))
	closeEngine(t, e)

	e = open(t, h, dir)
	w.e = e
	checkRows(t, e, w.want())
	checkLSN(t, e, w.lsn)
	checkKeys(t, e, len(w.rows))

	// Writes after recovery survive the next reopen too.
	w.apply(put(key(4), value(4, 3)), del(key(6)), put(key(40), value(40, 1)))
	closeEngine(t, e)
	e = open(t, h, dir)
	w.e = e
	checkRows(t, e, w.want())
	checkLSN(t, e, w.lsn)
	checkKeys(t, e, len(w.rows))
}

func fill(w *writer, n int) {
	for i := range n {
		w.apply(put(key(i), value(i, 1)))
	}
	w.apply(put(key(1), value(1, 2)), del(key(2)), put([]byte{0x00}, []byte{0xff, 0x00}))
	w.apply(del(key(n - 1)))
}

func testSnapshotRestore(t T, h Harness) {
	ctx := t.Context()
	a := open(t, h, t.TempDir())
	sa := needSnapshotter(t, a)
	wa := newWriter(t, a)
	fill(wa, 30)

	dirB := t.TempDir()
	b := open(t, h, dirB)
	wb := newWriter(t, b)
	wb.apply(put(key(1000), value(1000, 1)), put(key(1), value(1, 7)))
	wb.apply(put(key(3), value(3, 7)))

	lsn, rows, err := sa.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if lsn != wa.lsn {
		t.Errorf("snapshot lsn: got %d, want %d", lsn, wa.lsn)
	}
	if err := engines.Restore(ctx, b, lsn, rows); err != nil {
		t.Fatalf("restore a snapshot of A into B: %v", err)
	}
	want := wa.want()
	checkRows(t, b, want)
	checkLSN(t, b, lsn)
	if _, ok := engines.AsScanner(a); ok {
		diffRows(t, "scan of B against scan of A", scan(t, b, engines.ScanRange{}), scan(t, a, engines.ScanRange{}))
	}

	// B goes on from the restored LSN.
	wb = &writer{t: t, e: b, lsn: lsn, rows: maps.Clone(wa.rows)}
	wb.apply(put(key(50), value(50, 1)))
	checkRows(t, b, wb.want())

	if engines.CapabilitiesOf(b).Durable {
		closeEngine(t, b)
		b = open(t, h, dirB)
		wb.e = b
		checkRows(t, b, wb.want())
		checkLSN(t, b, wb.lsn)
	}

	// Restoring the snapshot of an empty engine empties B.
	c := open(t, h, t.TempDir())
	lsn, rows, err = engines.Snapshot(ctx, c)
	if err != nil {
		t.Fatalf("snapshot of an empty engine: %v", err)
	}
	if lsn != 0 {
		t.Errorf("snapshot of an empty engine: lsn %d, want 0", lsn)
	}
	if err := engines.Restore(ctx, b, lsn, rows); err != nil {
		t.Fatalf("restore an empty snapshot: %v", err)
	}
	checkRows(t, b, nil)
	checkLSN(t, b, 0)
	checkKeys(t, b, 0)
}

func testSnapshotPointInTime(t T, h Harness) {
	ctx := t.Context()
	e := open(t, h, t.TempDir())
	s := needSnapshotter(t, e)
	w := newWriter(t, e)
	fill(w, 20)
	before, lsnBefore := w.want(), w.lsn

	lsn, rows, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// Writes after the snapshot was taken, before it is read.
	w.apply(put(key(100), value(100, 1)), put(key(0), value(0, 2)), del(key(3)))
	w.apply(put(key(101), value(101, 1)))

	got := collect(t, "snapshot", rows)
	if lsn != lsnBefore {
		t.Errorf("snapshot lsn: got %d, want %d", lsn, lsnBefore)
	}
	diffRows(t, "snapshot taken before later writes", got, before)
	checkRows(t, e, w.want())
	checkLSN(t, e, w.lsn)

	// Restoring an engine from its own older snapshot rolls it back, LSN included.
	if err := s.Restore(ctx, lsn, seqOf(got)); err != nil {
		t.Fatalf("restore from an older snapshot: %v", err)
	}
	checkRows(t, e, before)
	checkLSN(t, e, lsnBefore)
}

func testSnapshotCancel(t T, h Harness) {
	e := open(t, h, t.TempDir())
	s := needSnapshotter(t, e)
	w := newWriter(t, e)
	fill(w, 10)

	// A snapshot never read, then cancelled.
	ctx, cancel := context.WithCancel(t.Context())
	if _, _, err := s.Snapshot(ctx); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	cancel()

	// A snapshot read partway, then cancelled.
	ctx, cancel = context.WithCancel(t.Context())
	_, rows, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	for _, err := range rows {
		if err != nil {
			t.Fatalf("snapshot rows: %v", err)
		}
		break
	}
	cancel()

	// The engine released both: it writes, reads, snapshots and closes.
	w.apply(put(key(50), value(50, 1)), del(key(0)))
	checkRows(t, e, w.want())
	_, rows, err = s.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("snapshot after cancelled ones: %v", err)
	}
	diffRows(t, "snapshot after cancelled ones", collect(t, "snapshot", rows), w.want())
	closeEngine(t, e)
}

func testRestoreFailure(t T, h Harness) {
	ctx := t.Context()
	e := open(t, h, t.TempDir())
	s := needSnapshotter(t, e)
	w := newWriter(t, e)
	fill(w, 10)
	want := w.want()

	fresh := []engines.Row{
		{Key: key(200), Value: value(200, 1), LSN: 1},
		{Key: key(201), Value: value(201, 1), LSN: 2},
	}
	srcErr := errors.New("enginetest: snapshot source failed")
	failing := func(yield func(engines.Row, error) bool) {
		for _, r := range fresh {
			if !yield(r, nil) {
				return
			}
		}
		yield(engines.Row{}, srcErr)
	}
	if err := s.Restore(ctx, w.lsn+100, failing); err == nil {
		t.Errorf("restore from rows that end in an error: got nil error")
	}
	checkRows(t, e, want)
	checkLSN(t, e, w.lsn)

	badRow := append(fresh[:1:1], engines.Row{Key: nil, Value: value(0, 1), LSN: 3})
	wantInvalid(t, "restore of a row with an empty key", s.Restore(ctx, w.lsn+100, seqOf(badRow)))
	checkRows(t, e, want)
	checkLSN(t, e, w.lsn)

	w.apply(put(key(99), value(99, 1)))
	checkRows(t, e, w.want())
}

func testSizeLimits(t T, h Harness) {
	ctx := t.Context()
	e := open(t, h, t.TempDir())
	w := newWriter(t, e)
	caps := engines.CapabilitiesOf(e)
	one := func(m engines.Mutation) error {
		return e.Apply(ctx, []engines.Mutation{withLSN(m, w.lsn+1)})
	}

	wantInvalid(t, "put with a nil key", one(put(nil, value(0, 1))))
	wantInvalid(t, "put with an empty key", one(put([]byte{}, value(0, 1))))
	wantInvalid(t, "delete with an empty key", one(del(nil)))
	_, err := e.Get(ctx, nil)
	wantInvalid(t, "get with an empty key", err)

	switch {
	case caps.MaxKeySize == 0:
		t.Logf("no key size limit; checking a 4096-byte key")
		k := bytes.Repeat([]byte{0xff, 0x00}, 2048)
		w.apply(put(k, value(1, 1)))
	case caps.MaxKeySize >= maxAlloc:
		t.Logf("key size limit %d is too large to check", caps.MaxKeySize)
	default:
		k := bytes.Repeat([]byte{0xff}, caps.MaxKeySize)
		k[0] = 0x00
		w.apply(put(k, value(1, 1)))
		over := append(bytes.Clone(k), 0x00)
		wantLimitError(t, "put with a key of MaxKeySize+1 bytes", one(put(over, value(1, 1))), caps.MaxKeySize)
		_, err := e.Get(ctx, over)
		wantLimitError(t, "get with a key of MaxKeySize+1 bytes", err, caps.MaxKeySize)
	}

	switch {
	case caps.MaxValueSize == 0:
		t.Logf("no value size limit; checking a 64 KiB value")
		w.apply(put(key(2), bytes.Repeat([]byte{0x00, 0xff}, 32<<10)))
	case caps.MaxValueSize >= maxAlloc:
		t.Logf("value size limit %d is too large to check", caps.MaxValueSize)
	default:
		v := bytes.Repeat([]byte{0x00, 0xff}, (caps.MaxValueSize+1)/2)[:caps.MaxValueSize]
		w.apply(put(key(2), v))
		over := append(bytes.Clone(v), 0xff)
		wantLimitError(t, "put with a value of MaxValueSize+1 bytes", one(put(key(3), over)), caps.MaxValueSize)
	}
	checkRows(t, e, w.want())
	checkLSN(t, e, w.lsn)
}

func testStats(t T, h Harness) {
	dir := t.TempDir()
	e := open(t, h, dir)
	if _, ok := engines.AsStatsReporter(e); !ok {
		t.Skipf("engine does not implement engines.StatsReporter (optional)")
	}
	w := newWriter(t, e)
	checkKeys(t, e, 0)

	for i := range 10 {
		w.apply(put(key(i), value(i, 1)))
	}
	checkKeys(t, e, 10)

	w.apply(put(key(0), value(0, 2)), put(key(1), value(1, 2)), put(key(2), value(2, 2)))
	checkKeys(t, e, 10)

	w.apply(del(key(0)), del(key(3)), del(key(5)), del(key(9)))
	checkKeys(t, e, 6)

	w.apply(del(key(3)), del(key(100)))
	checkKeys(t, e, 6)

	bad := []engines.Mutation{withLSN(put(key(20), value(20, 1)), w.lsn+1), withLSN(put(nil, nil), w.lsn+2)}
	wantInvalid(t, "batch ending with an empty key", e.Apply(t.Context(), bad))
	checkKeys(t, e, 6)

	w.apply(put(key(30), value(30, 1)), del(key(30)))
	checkKeys(t, e, 6)

	if engines.CapabilitiesOf(e).Durable {
		closeEngine(t, e)
		e = open(t, h, dir)
		checkKeys(t, e, 6)
	}
}

func testClosed(t T, h Harness) {
	ctx := t.Context()
	e := open(t, h, t.TempDir())
	w := newWriter(t, e)
	w.apply(put(key(1), value(1, 1)))
	closeEngine(t, e)

	_, err := e.Get(ctx, key(1))
	wantClosed(t, "Get", err)
	wantClosed(t, "Apply", e.Apply(ctx, []engines.Mutation{withLSN(put(key(2), value(2, 1)), 2)}))

	if s, ok := engines.AsScanner(e); ok {
		err = nil
		for r, rerr := range s.Scan(ctx, engines.ScanRange{}) {
			if rerr != nil {
				err = rerr
				break
			}
			t.Errorf("Scan after Close yielded %s", fmtRow(r))
		}
		wantClosed(t, "Scan", err)
	}

	if s, ok := engines.AsSnapshotter(e); ok {
		_, rows, err := s.Snapshot(ctx)
		if err == nil {
			for _, rerr := range rows {
				if err = rerr; err != nil {
					break
				}
			}
		}
		wantClosed(t, "Snapshot", err)
		wantClosed(t, "Restore", s.Restore(ctx, 5, seqOf(nil)))
	}

	_, err = e.AppliedLSN(ctx)
	wantClosed(t, "AppliedLSN", err)
	if s, ok := engines.AsStatsReporter(e); ok {
		_, err = s.Stats(ctx)
		wantClosed(t, "Stats", err)
	}
	_ = engines.CapabilitiesOf(e)
	if err := e.Close(); err != nil && !errors.Is(err, engines.ErrClosed) {
		t.Errorf("second Close: got %v, want nil or an error wrapping ErrClosed", err)
	}
}

// testConcurrent runs writers, readers and scanners at once. Writers apply
// concurrently, with LSNs from one counter, so batches reach the engine in any
// order. Each goroutine owns a key prefix, so what it reads of its own keys is
// exactly what it wrote.
func testConcurrent(t T, h Harness) {
	const workers, ops = 16, 60
	ctx := t.Context()
	e := open(t, h, t.TempDir())
	scanner, canScan := engines.AsScanner(e)
	snapshotter, canSnapshot := engines.AsSnapshotter(e)
	stats, hasStats := engines.AsStatsReporter(e)

	var lsn atomic.Uint64
	apply := func(ms ...engines.Mutation) (uint64, error) {
		top := lsn.Add(uint64(len(ms)))
		batch := make([]engines.Mutation, len(ms))
		for i, m := range ms {
			batch[i] = withLSN(m, top-uint64(len(ms)-1-i))
		}
		return top, e.Apply(ctx, batch)
	}

	owned := make([]map[string]engines.Row, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			own := map[string]engines.Row{}
			owned[g] = own
			prefix := []byte{0x00, byte(g), 0xff}
			gkey := func(i int) []byte { return append(bytes.Clone(prefix), byte(i%12), 0x00) }
			ownRange := engines.ScanRange{Start: []byte{0x00, byte(g)}, End: []byte{0x00, byte(g) + 1}}
			var last, seen uint64
			for i := range ops {
				k := gkey(i)
				var batch []engines.Mutation
				if i%5 == 4 {
					batch = append(batch, del(k))
				} else {
					batch = append(batch, put(k, value(g, i)))
				}
				if i%3 == 0 {
					batch = append(batch, put(gkey(i+5), value(g, -i)))
				}
				top, err := apply(batch...)
				if err != nil {
					t.Errorf("worker %d: apply %s: %v", g, fmtBatch(batch), err)
					return
				}
				last = top
				for j, m := range batch {
					if m.Op == engines.OpPut {
						own[string(m.Key)] = engines.Row{Key: m.Key, Value: m.Value, LSN: top - uint64(len(batch)-1-j)}
					} else {
						delete(own, string(m.Key))
					}
				}

				// Reads without the lock.
				r, err := e.Get(ctx, k)
				if w, ok := own[string(k)]; ok {
					if err != nil || !rowEqual(r, w) {
						t.Errorf("worker %d: get %q: got %s, %v; want %s", g, k, fmtRow(r), err, fmtRow(w))
					}
				} else if !errors.Is(err, engines.ErrNotFound) {
					t.Errorf("worker %d: get deleted %q: got %s, %v; want ErrNotFound", g, k, fmtRow(r), err)
				}
				got, err := e.AppliedLSN(ctx)
				if err != nil || got < max(last, seen) {
					t.Errorf("worker %d: applied lsn %d, %v; want at least %d (its last lsn) and %d (seen before)", g, got, err, last, seen)
				}
				seen = got
				if canScan && i%10 == 0 && !concurrentScan(t, g, scanner.Scan(ctx, ownRange), own) {
					return
				}
				if canSnapshot && i%15 == 7 {
					_, rows, err := snapshotter.Snapshot(ctx)
					if err != nil {
						t.Errorf("worker %d: snapshot: %v", g, err)
						return
					}
					if !concurrentSorted(t, g, rows) {
						return
					}
				}
				if hasStats && i%15 == 7 {
					if _, err := stats.Stats(ctx); err != nil {
						t.Errorf("worker %d: stats: %v", g, err)
					}
				}
				if canScan && i%15 == 11 && !concurrentSorted(t, g, scanner.Scan(ctx, engines.ScanRange{Start: prefix, Limit: 7})) {
					return
				}
			}
			if canScan {
				concurrentScan(t, g, scanner.Scan(ctx, ownRange), own)
			}
		})
	}
	wg.Wait()

	all := map[string]engines.Row{}
	for _, own := range owned {
		maps.Copy(all, own)
	}
	checkRows(t, e, sortedRows(all))
	checkLSN(t, e, lsn.Load())
	checkKeys(t, e, len(all))
}

// concurrentScan checks that rows holds exactly own; it reports with Errorf only,
// as it runs off the case's goroutine.
func concurrentScan(t T, g int, rows iter.Seq2[engines.Row, error], own map[string]engines.Row) bool {
	var got []engines.Row
	for r, err := range rows {
		if err != nil {
			t.Errorf("worker %d: scan: %v", g, err)
			return false
		}
		got = append(got, r)
	}
	want := sortedRows(own)
	if len(got) != len(want) {
		t.Errorf("worker %d: scan of its own keys: got %d rows, want %d", g, len(got), len(want))
		return false
	}
	for i := range got {
		if !rowEqual(got[i], want[i]) {
			t.Errorf("worker %d: scan of its own keys: row %d: got %s, want %s", g, i, fmtRow(got[i]), fmtRow(want[i]))
			return false
		}
	}
	return true
}

// concurrentSorted checks that rows yields no error and keys in strictly rising order.
func concurrentSorted(t T, g int, rows iter.Seq2[engines.Row, error]) bool {
	var prev []byte
	for r, err := range rows {
		if err != nil {
			t.Errorf("worker %d: scan: %v", g, err)
			return false
		}
		if prev != nil && bytes.Compare(prev, r.Key) >= 0 {
			t.Errorf("worker %d: scan yielded %q after %q", g, r.Key, prev)
			return false
		}
		prev = r.Key
	}
	return true
}

// testLogBackedFlush checks an engine opened LogBacked that implements
// engines.Flusher: Apply makes batches visible, Flush returns the applied LSN
// and what was flushed survives Close and a re-Open, LogBacked or not.
func testLogBackedFlush(t T, h Harness) {
	lh, ok := h.(LogBackedHarness)
	if !ok {
		t.Skipf("the harness cannot open an engine LogBacked (it is not an enginetest.LogBackedHarness)")
	}
	ctx := t.Context()
	dir := t.TempDir()
	openLogBacked := func() engines.Engine {
		t.Helper()
		e, err := lh.OpenLogBacked(ctx, dir, nil)
		if err != nil {
			t.Fatalf("open %s LogBacked: %v", dir, err)
		}
		t.Cleanup(func() {
			if err := e.Close(); err != nil && !errors.Is(err, engines.ErrClosed) {
				t.Errorf("close: %v", err)
			}
		})
		return e
	}
	e := openLogBacked()
	f, ok := engines.AsFlusher(e)
	if !ok {
		t.Skipf("engine does not implement engines.Flusher (optional)")
	}
	flush := func(want uint64) {
		t.Helper()
		got, err := f.Flush(ctx)
		if err != nil {
			t.Fatalf("flush: %v", err)
		}
		if got != want {
			t.Errorf("flush: got durable lsn %d, want the applied lsn %d", got, want)
		}
	}
	flush(0) // a new engine
	w := newWriter(t, e)
	for i := range 20 {
		w.apply(put(key(i), value(i, 1)))
	}
	w.apply(put(key(3), value(3, 2)), del(key(4)))
	checkRows(t, e, w.want()) // visible before any Flush
	flush(w.lsn)
	w.apply(put(key(30), value(30, 1)), del(key(5)))
	flush(w.lsn)
	flush(w.lsn) // nothing new: the same lsn
	if !engines.CapabilitiesOf(e).Durable {
		closeEngine(t, e)
		_, err := f.Flush(ctx)
		wantClosed(t, "flush", err)
		return
	}
	w.apply(put(key(31), value(31, 1))) // not flushed: Close makes it durable
	closeEngine(t, e)
	_, err := f.Flush(ctx)
	wantClosed(t, "flush", err)

	e = openLogBacked()
	w.e = e
	checkRows(t, e, w.want())
	checkLSN(t, e, w.lsn)
	f, _ = engines.AsFlusher(e)
	flush(w.lsn)
	w.apply(put(key(32), value(32, 1)))
	flush(w.lsn)
	closeEngine(t, e)

	// The files are the engine's usual ones: an Open without LogBacked reads them.
	e = open(t, h, dir)
	checkRows(t, e, w.want())
	checkLSN(t, e, w.lsn)
}

// testMissingOptional checks the error of each optional interface the engine
// lacks: it wraps errors.ErrUnsupported and names the interface, whether the
// host calls the engine through the helpers (engines.Scan, …) or, on a proxy
// such as a plugin's client, which has every method, calls the method itself.
func testMissingOptional(t T, h Harness) {
	ctx := t.Context()
	e := open(t, h, t.TempDir())
	has := engines.InterfacesOf(e)
	if has.Scanner && has.Snapshotter && has.StatsReporter {
		t.Skipf("engine implements every optional interface the host calls through a helper")
	}
	check := func(iface string, err error) {
		t.Helper()
		if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "engines."+iface) {
			t.Errorf("%s missing: got error %v, want one wrapping errors.ErrUnsupported that names engines.%s", iface, err, iface)
		}
	}
	firstErr := func(rows iter.Seq2[engines.Row, error]) error {
		for r, err := range rows {
			if err != nil {
				return err
			}
			t.Errorf("scan of an engine without Scanner yielded %s", fmtRow(r))
		}
		return nil
	}
	if !has.Scanner {
		check("Scanner", firstErr(engines.Scan(ctx, e, engines.ScanRange{})))
		if s, ok := e.(engines.Scanner); ok {
			check("Scanner", firstErr(s.Scan(ctx, engines.ScanRange{})))
		}
	}
	if !has.Snapshotter {
		_, _, err := engines.Snapshot(ctx, e)
		check("Snapshotter", err)
		check("Snapshotter", engines.Restore(ctx, e, 1, seqOf(nil)))
		if s, ok := e.(engines.Snapshotter); ok {
			_, _, err := s.Snapshot(ctx)
			check("Snapshotter", err)
			check("Snapshotter", s.Restore(ctx, 1, seqOf(nil)))
		}
	}
	if !has.StatsReporter {
		st, err := engines.StatsOf(ctx, e)
		check("StatsReporter", err)
		if st != (engines.Stats{}) {
			t.Errorf("stats of an engine without StatsReporter: got %+v, want zeros", st)
		}
		if s, ok := e.(engines.StatsReporter); ok {
			_, err := s.Stats(ctx)
			check("StatsReporter", err)
		}
	}
	// The engine still works.
	w := newWriter(t, e)
	w.apply(put(key(1), value(1, 1)))
	checkRows(t, e, w.want())
}

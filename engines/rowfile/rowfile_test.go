package rowfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/internal/testutil"
)

// --- helpers ---------------------------------------------------------------

func openT(t testing.TB, dir string, params map[string]string, with ...openOption) *Engine {
	t.Helper()
	p := map[string]string{"compact_interval": "0"}
	maps.Copy(p, params)
	e, err := open(context.Background(), engines.Options{Dir: dir, Params: p}, with...)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func closeT(t testing.TB, e *Engine) {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// model applies batches to an engine and tracks the rows they leave.
type model struct {
	t    testing.TB
	e    *Engine
	lsn  uint64
	rows map[string]engines.Row
}

func newModel(t testing.TB, e *Engine) *model {
	return &model{t: t, e: e, rows: map[string]engines.Row{}}
}

func put(k, v string) engines.Mutation {
	return engines.Mutation{Op: engines.OpPut, Key: []byte(k), Value: []byte(v)}
}

func del(k string) engines.Mutation { return engines.Mutation{Op: engines.OpDelete, Key: []byte(k)} }

func (m *model) apply(ms ...engines.Mutation) {
	m.t.Helper()
	batch := slices.Clone(ms)
	for i := range batch {
		m.lsn++
		batch[i].LSN = m.lsn
	}
	if err := m.e.Apply(context.Background(), batch); err != nil {
		m.t.Fatalf("apply: %v", err)
	}
	m.record(batch)
}

func (m *model) record(batch []engines.Mutation) {
	for _, mu := range batch {
		if mu.Op == engines.OpPut {
			m.rows[string(mu.Key)] = engines.Row{Key: bytes.Clone(mu.Key), Value: bytes.Clone(mu.Value), LSN: mu.LSN}
		} else {
			delete(m.rows, string(mu.Key))
		}
	}
}

func (m *model) clone() map[string]engines.Row { return maps.Clone(m.rows) }

func sorted(rows map[string]engines.Row) []engines.Row {
	return slices.SortedFunc(maps.Values(rows), func(a, b engines.Row) int { return bytes.Compare(a.Key, b.Key) })
}

func rowEq(a, b engines.Row) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.LSN == b.LSN
}

func fmtRow(r engines.Row) string { return fmt.Sprintf("{%q=%q lsn %d}", r.Key, r.Value, r.LSN) }

func scanAll(t testing.TB, e engines.Scanner, r engines.ScanRange) []engines.Row {
	t.Helper()
	var out []engines.Row
	for row, err := range e.Scan(context.Background(), r) {
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		out = append(out, row)
	}
	return out
}

func diff(t testing.TB, what string, got, want []engines.Row) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Fatalf("%s: got %d rows, want %d; first missing %s", what, len(got), len(want), fmtRow(want[i]))
		case i >= len(want):
			t.Fatalf("%s: got %d rows, want %d; first extra %s", what, len(got), len(want), fmtRow(got[i]))
		case !rowEq(got[i], want[i]):
			t.Fatalf("%s: row %d: got %s, want %s", what, i, fmtRow(got[i]), fmtRow(want[i]))
		}
	}
}

// check verifies that e holds exactly rows, by a full scan, a Get of each and the
// key count.
func check(t testing.TB, e *Engine, rows map[string]engines.Row) {
	t.Helper()
	want := sorted(rows)
	diff(t, "full scan", scanAll(t, e, engines.ScanRange{}), want)
	for _, w := range want {
		got, err := e.Get(context.Background(), w.Key)
		if err != nil || !rowEq(got, w) {
			t.Fatalf("get %q: got %s, %v; want %s", w.Key, fmtRow(got), err, fmtRow(w))
		}
	}
	st, err := e.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if st.Keys != int64(len(rows)) {
		t.Fatalf("stats: %d keys, want %d", st.Keys, len(rows))
	}
}

func checkLSN(t testing.TB, e *Engine, want uint64) {
	t.Helper()
	got, err := e.AppliedLSN(context.Background())
	if err != nil || got != want {
		t.Fatalf("applied lsn: got %d, %v; want %d", got, err, want)
	}
}

func checkNotFound(t testing.TB, e *Engine, k string) {
	t.Helper()
	r, err := e.Get(context.Background(), []byte(k))
	if !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("get %q: got %s, %v; want ErrNotFound", k, fmtRow(r), err)
	}
}

// copyDir copies the engine folder src (files and restore.tmp/) to a new folder.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	copyTree(t, src, dst)
	return dst
}

func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		s, d := filepath.Join(src, de.Name()), filepath.Join(dst, de.Name())
		if de.IsDir() {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			copyTree(t, s, d)
			continue
		}
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if _, ok := parseSegName(de.Name()); ok {
			out = append(out, de.Name())
		}
	}
	return out
}

func val(i, gen int) string {
	return fmt.Sprintf("value-%04d-gen-%d-%s", i, gen, strings.Repeat("x", i%7))
}
func key(i int) string { return fmt.Sprintf("key-%05d", i) }

var indexes = []string{"hash", "btree"}

// --- tests -----------------------------------------------------------------

func TestRoundTrip(t *testing.T) {
	for _, ix := range indexes {
		t.Run(ix, func(t *testing.T) {
			e := openT(t, t.TempDir(), map[string]string{"index": ix})
			m := newModel(t, e)
			checkLSN(t, e, 0)
			checkNotFound(t, e, "nope")
			for i := range 50 {
				m.apply(put(key(i), val(i, 1)))
			}
			m.apply(put(key(3), val(3, 2)), del(key(4)), put(key(60), ""), del(key(999)))
			m.apply(put(key(5), val(5, 2)), put(key(5), val(5, 3)), del(key(6)), put(key(6), val(6, 2)))
			check(t, e, m.rows)
			checkLSN(t, e, m.lsn)
			checkNotFound(t, e, key(4))

			want := sorted(m.rows)
			for _, r := range []engines.ScanRange{
				{Start: []byte(key(10)), End: []byte(key(20))},
				{Start: []byte(key(10)), Limit: 3},
				{End: []byte(key(2))},
				{Start: []byte("zzz")},
				{Start: []byte(key(4)), End: []byte(key(5))}, // deleted key only
			} {
				var exp []engines.Row
				for _, w := range want {
					if bytes.Compare(w.Key, r.Start) >= 0 && (len(r.End) == 0 || bytes.Compare(w.Key, r.End) < 0) && (r.Limit <= 0 || len(exp) < r.Limit) {
						exp = append(exp, w)
					}
				}
				diff(t, fmt.Sprintf("scan %q..%q limit %d", r.Start, r.End, r.Limit), scanAll(t, e, r), exp)
			}
		})
	}
}

func TestReopenKeepsData(t *testing.T) {
	for _, ix := range indexes {
		for _, sync := range []string{"always", "batch", "none"} {
			t.Run(ix+"_"+sync, func(t *testing.T) {
				dir := t.TempDir()
				params := map[string]string{"index": ix, "sync": sync, "segment_size": "4KiB"}
				e := openT(t, dir, params)
				m := newModel(t, e)
				for i := range 200 {
					m.apply(put(key(i%80), val(i, i/80)))
					if i%9 == 0 {
						m.apply(del(key(i%70)), put(key(1000+i), val(i, 0)))
					}
				}
				closeT(t, e)
				if n := len(segFiles(t, dir)); n < 3 {
					t.Fatalf("%d segments, want several", n)
				}
				e = openT(t, dir, params)
				m.e = e
				check(t, e, m.rows)
				checkLSN(t, e, m.lsn)
				m.apply(put("after", "reopen"), del(key(1)))
				closeT(t, e)
				e = openT(t, dir, params)
				check(t, e, m.rows)
				checkLSN(t, e, m.lsn)
			})
		}
	}
}

// A mutation whose LSN is not above its key's newest one is stale: it does not
// replace the newer version, now or after recovery.
func TestStaleMutationLoses(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, nil)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("new"), LSN: 10}}))
	must(e.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("old"), LSN: 5}, {Op: engines.OpPut, Key: []byte("j"), Value: []byte("j"), LSN: 6}}))
	must(e.Apply(ctx, []engines.Mutation{{Op: engines.OpDelete, Key: []byte("k"), LSN: 7}}))
	want := map[string]engines.Row{
		"k": {Key: []byte("k"), Value: []byte("new"), LSN: 10},
		"j": {Key: []byte("j"), Value: []byte("j"), LSN: 6},
	}
	check(t, e, want)
	checkLSN(t, e, 10)
	closeT(t, e)
	e = openT(t, dir, nil)
	check(t, e, want)
	checkLSN(t, e, 10)
}

// TestGroupCommitShares checks that writers arriving during an fsync are committed
// together, by one more fsync.
func TestGroupCommitShares(t *testing.T) {
	const writers = 20
	dir := t.TempDir()
	e := openT(t, dir, map[string]string{"sync": "batch"})
	var fsyncs atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	e.fsync = func(f *os.File) error {
		if fsyncs.Add(1) == 1 {
			close(started)
			<-release
		}
		return f.Sync()
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	apply := func(i int) {
		defer wg.Done()
		errs <- e.Apply(context.Background(), []engines.Mutation{{Op: engines.OpPut, Key: []byte(key(i)), Value: []byte(val(i, 0)), LSN: uint64(i + 1)}})
	}
	wg.Add(1)
	go apply(0)
	<-started // writer 0 leads and sits in its fsync
	for i := 1; i < writers; i++ {
		wg.Add(1)
		go apply(i)
	}
	testutil.WaitFor(t, 30*time.Second, func() bool {
		e.wmu.Lock()
		defer e.wmu.Unlock()
		return len(e.queue) == writers-1
	}, "every other writer to queue behind the leader")
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	if n := fsyncs.Load(); n != 2 {
		t.Errorf("%d fsyncs for %d writers, want 2 (one for the leader, one shared by the rest)", n, writers)
	}
	closeT(t, e)
	e = openT(t, dir, nil)
	st, _ := e.Stats(context.Background())
	if st.Keys != writers {
		t.Fatalf("after reopen: %d keys, want %d", st.Keys, writers)
	}
}

// TestGroupCommitConcurrent runs many writers with LSNs from one counter (so
// batches arrive out of LSN order) and checks that all of them survive reopen.
func TestGroupCommitConcurrent(t *testing.T) {
	for _, ix := range indexes {
		t.Run(ix, func(t *testing.T) {
			const writers, batches = 32, 40
			dir := t.TempDir()
			params := map[string]string{"index": ix, "sync": "batch", "segment_size": "16KiB"}
			e := openT(t, dir, params)
			var lsn atomic.Uint64
			var wg sync.WaitGroup
			owned := make([]map[string]engines.Row, writers)
			for w := range writers {
				owned[w] = map[string]engines.Row{}
				wg.Go(func() {
					for i := range batches {
						n := 1 + i%3
						top := lsn.Add(uint64(n))
						batch := make([]engines.Mutation, n)
						for j := range batch {
							k := fmt.Sprintf("w%02d-%03d", w, (i*3+j)%50)
							batch[j] = engines.Mutation{Op: engines.OpPut, Key: []byte(k), Value: []byte(val(i, w)), LSN: top - uint64(n-1-j)}
							if (i+j)%7 == 6 {
								batch[j].Op, batch[j].Value = engines.OpDelete, nil
							}
						}
						if err := e.Apply(context.Background(), batch); err != nil {
							t.Errorf("writer %d: %v", w, err)
							return
						}
						for _, mu := range batch {
							if mu.Op == engines.OpPut {
								owned[w][string(mu.Key)] = engines.Row{Key: mu.Key, Value: mu.Value, LSN: mu.LSN}
							} else {
								delete(owned[w], string(mu.Key))
							}
						}
					}
				})
			}
			wg.Wait()
			all := map[string]engines.Row{}
			for _, o := range owned {
				maps.Copy(all, o)
			}
			check(t, e, all)
			checkLSN(t, e, lsn.Load())
			closeT(t, e)
			e = openT(t, dir, params)
			check(t, e, all)
			checkLSN(t, e, lsn.Load())
		})
	}
}

// tornFixture writes batches into one segment and returns the folder, the segment
// name, and after each batch the file size and the rows.
func tornFixture(t *testing.T) (dir, seg string, ends []int64, states []map[string]engines.Row) {
	dir = t.TempDir()
	e := openT(t, dir, nil)
	m := newModel(t, e)
	states = append(states, m.clone())
	ends = append(ends, e.active.wsize)
	for i := range 14 {
		switch i % 3 {
		case 0:
			m.apply(put(key(i), val(i, 1)))
		case 1:
			m.apply(put(key(i), val(i, 1)), put(key(i-1), val(i-1, 2)), del(key(i-2)))
		case 2:
			m.apply(del(key(i-1)), put(key(i), val(i, 1)))
		}
		states = append(states, m.clone())
		ends = append(ends, e.active.wsize)
	}
	seg = e.active.name()
	closeT(t, e)
	return dir, seg, ends, states
}

// TestTornTail cuts the last segment at every offset within its last batches and
// checks that reopening keeps every batch written whole before the cut and nothing
// of the one cut through.
func TestTornTail(t *testing.T) {
	src, seg, ends, states := tornFixture(t)
	data, err := os.ReadFile(filepath.Join(src, seg))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != ends[len(ends)-1] {
		t.Fatalf("segment is %d bytes, want %d", len(data), ends[len(ends)-1])
	}
	work := t.TempDir()
	from := ends[len(ends)-5]
	for cut := from; cut < int64(len(data)); cut++ {
		dir := filepath.Join(work, fmt.Sprint(cut))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, seg), data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		b := 0 // the last batch that ends at or before the cut
		for b+1 < len(ends) && ends[b+1] <= cut {
			b++
		}
		e, err := open(context.Background(), engines.Options{Dir: dir, Params: map[string]string{"compact_interval": "0"}})
		if err != nil {
			t.Fatalf("cut at %d: open: %v", cut, err)
		}
		check(t, e, states[b])
		checkLSN(t, e, lsnOf(t, states, b))
		st, _ := os.Stat(filepath.Join(dir, seg))
		if st.Size() != ends[b] {
			t.Fatalf("cut at %d: segment truncated to %d, want %d", cut, st.Size(), ends[b])
		}
		// The engine goes on writing after the truncated tail.
		m := &model{t: t, e: e, lsn: 1000, rows: maps.Clone(states[b])}
		m.apply(put("after", "cut"))
		closeT(t, e)
		e = openT(t, dir, nil)
		check(t, e, m.rows)
		closeT(t, e)
		os.RemoveAll(dir)
	}
}

// lsnOf is the applied LSN after batch b of the torn fixture: batch i carries LSNs
// up to the number of mutations so far.
func lsnOf(t *testing.T, states []map[string]engines.Row, b int) uint64 {
	t.Helper()
	n := uint64(0)
	for i := range b {
		n += []uint64{1, 3, 2}[i%3]
	}
	return n
}

// TestTornTailGarbage appends junk that holds no valid batch: zeros, random bytes,
// a half header, a whole record whose CRC fails.
func TestTornTailGarbage(t *testing.T) {
	src, seg, ends, states := tornFixture(t)
	data, _ := os.ReadFile(filepath.Join(src, seg))
	last := len(ends) - 1
	bad := appendRecord(nil, kindPut, flagBegin|flagCommit, 999, []byte("zz"), []byte("torn"))
	bad[len(bad)-1] ^= 1
	incomplete := appendRecord(nil, kindPut, flagBegin, 999, []byte("zz"), []byte("no commit"))
	for name, junk := range map[string][]byte{
		"zeros":                                  make([]byte, 300),
		"random":                                 []byte("\x13\x99\xff\x00garbage that is not a record at all ......................."),
		"half header":                            bad[:10],
		"crc mismatch":                           bad,
		"uncommitted batch":                      incomplete,
		"uncommitted batch and a partial record": append(slices.Clone(incomplete), bad[:30]...),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, seg), append(slices.Clone(data), junk...), 0o644)
			e := openT(t, dir, nil)
			check(t, e, states[last])
			st, _ := os.Stat(filepath.Join(dir, seg))
			if st.Size() != ends[last] {
				t.Fatalf("segment truncated to %d, want %d", st.Size(), ends[last])
			}
		})
	}
}

// TestCorruptMiddle flips every bit of a record followed by valid batches: Open must
// fail with ErrCorrupt naming the file and offset.
func TestCorruptMiddle(t *testing.T) {
	src, seg, ends, _ := tornFixture(t)
	data, _ := os.ReadFile(filepath.Join(src, seg))
	recStart, recEnd := ends[5], ends[6] // a whole batch in the middle
	dir := t.TempDir()
	path := filepath.Join(dir, seg)
	for off := recStart; off < recEnd; off++ {
		for bit := range 8 {
			b := slices.Clone(data)
			b[off] ^= 1 << bit
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			e, err := open(context.Background(), engines.Options{Dir: dir, Params: map[string]string{"compact_interval": "0"}})
			if err == nil {
				e.Close()
				t.Fatalf("flip bit %d of byte %d: Open succeeded, want ErrCorrupt", bit, off)
			}
			if !errors.Is(err, engines.ErrCorrupt) || !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), "offset") {
				t.Fatalf("flip bit %d of byte %d: got %v, want ErrCorrupt naming %s and an offset", bit, off, err, seg)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, b) {
				t.Fatalf("flip bit %d of byte %d: Open changed the corrupt file", bit, off)
			}
		}
	}
}

// TestCorruptSealedSegment damages the tail of a segment that is not the last one:
// only the last segment can be torn, so this is corruption.
func TestCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, map[string]string{"segment_size": "4KiB"})
	m := newModel(t, e)
	for i := range 200 {
		m.apply(put(key(i), val(i, 0)))
	}
	closeT(t, e)
	segs := segFiles(t, dir)
	if len(segs) < 2 {
		t.Fatal("want several segments")
	}
	first := filepath.Join(dir, segs[0])
	st, _ := os.Stat(first)
	os.Truncate(first, st.Size()-5)
	_, err := open(context.Background(), engines.Options{Dir: dir})
	if !errors.Is(err, engines.ErrCorrupt) || !strings.Contains(err.Error(), segs[0]) {
		t.Fatalf("open with a cut sealed segment: got %v, want ErrCorrupt naming %s", err, segs[0])
	}
}

// TestCorruptRead damages rows on disk under an open engine: Get and Scan must
// report ErrCorrupt, never a wrong value.
func TestCorruptRead(t *testing.T) {
	for _, ix := range indexes {
		t.Run(ix, func(t *testing.T) {
			dir := t.TempDir()
			e := openT(t, dir, map[string]string{"index": ix})
			m := newModel(t, e)
			for i := range 20 {
				m.apply(put(key(i), val(i, 0)))
			}
			victim := []byte(key(7))
			en, _ := e.idx.get(victim)
			f, err := os.OpenFile(filepath.Join(dir, en.seg.name()), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, at := range []int64{
				en.off + recHeaderSize + int64(len(victim)) + 3, // value
				en.off + recHeaderSize + 1,                      // key
				en.off + 6,                                      // lsn
			} {
				var b [1]byte
				f.ReadAt(b[:], at)
				b[0] ^= 0x10
				f.WriteAt(b[:], at)
				r, err := e.Get(context.Background(), victim)
				if !errors.Is(err, engines.ErrCorrupt) {
					t.Fatalf("get after damage at %d: got %s, %v; want ErrCorrupt", at, fmtRow(r), err)
				}
				var scanErr error
				for r, err := range e.Scan(context.Background(), engines.ScanRange{}) {
					if err != nil {
						scanErr = err
						break
					}
					if want := m.rows[string(r.Key)]; !rowEq(r, want) {
						t.Fatalf("scan after damage: got %s, want %s", fmtRow(r), fmtRow(want))
					}
				}
				if !errors.Is(scanErr, engines.ErrCorrupt) {
					t.Fatalf("scan after damage at %d: got %v, want ErrCorrupt", at, scanErr)
				}
				b[0] ^= 0x10
				f.WriteAt(b[:], at)
			}
			check(t, e, m.rows)
		})
	}
}

func TestBatchSpanningSegmentSize(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, map[string]string{"segment_size": "4KiB"})
	m := newModel(t, e)
	m.apply(put("small", "row"))
	var big []engines.Mutation
	for i := range 100 { // ~10 KiB: more than a segment
		big = append(big, put(key(i), strings.Repeat("v", 80)))
	}
	m.apply(big...)
	m.apply(put("after", "big"))
	closeT(t, e)
	segs := segFiles(t, dir)
	if len(segs) != 3 {
		t.Fatalf("segments %v, want 3: the big batch alone in the middle one", segs)
	}
	e = openT(t, dir, nil)
	check(t, e, m.rows)
	closeT(t, e)

	// Cut the big batch (in the last segment) anywhere: none of it survives.
	dir2 := t.TempDir()
	e = openT(t, dir2, map[string]string{"segment_size": "4KiB"})
	m = newModel(t, e)
	m.apply(put("small", "row"))
	before := m.clone()
	m.apply(big...)
	seg := e.active.name()
	closeT(t, e)
	data, _ := os.ReadFile(filepath.Join(dir2, seg))
	for _, cut := range []int{fileHeaderSize + 1, len(data) / 3, len(data) / 2, len(data) - 1} {
		d := t.TempDir()
		copyTree(t, dir2, d)
		os.WriteFile(filepath.Join(d, seg), data[:cut], 0o644)
		e := openT(t, d, nil)
		check(t, e, before)
	}
}

func TestCompaction(t *testing.T) {
	for _, ix := range indexes {
		t.Run(ix, func(t *testing.T) {
			dir := t.TempDir()
			params := map[string]string{"index": ix, "segment_size": "4KiB"}
			e := openT(t, dir, params)
			m := newModel(t, e)
			for gen := range 5 {
				for i := range 100 {
					m.apply(put(key(i), val(i, gen)))
				}
			}
			for i := 0; i < 100; i += 3 {
				m.apply(del(key(i)))
			}
			before, _ := e.Stats(context.Background())
			if before.GarbageRatio < 0.5 {
				t.Fatalf("garbage ratio %v before compaction, want most rows dead", before.GarbageRatio)
			}
			if err := e.Compact(context.Background()); err != nil {
				t.Fatalf("compact: %v", err)
			}
			after, _ := e.Stats(context.Background())
			if after.BytesOnDisk >= before.BytesOnDisk/2 {
				t.Fatalf("bytes on disk %d after compaction, %d before: want far fewer", after.BytesOnDisk, before.BytesOnDisk)
			}
			if after.GarbageRatio != 0 {
				t.Fatalf("garbage ratio %v after a full compaction, want 0", after.GarbageRatio)
			}
			if e.tombs != 0 {
				t.Fatalf("%d tombstones left after a full compaction, want 0", e.tombs)
			}
			check(t, e, m.rows)
			checkLSN(t, e, m.lsn)
			onDisk := dirBytes(t, dir)
			if onDisk != after.BytesOnDisk {
				t.Fatalf("Stats says %d bytes on disk, the folder holds %d", after.BytesOnDisk, onDisk)
			}
			m.apply(put(key(0), "back"), del(key(1)))
			closeT(t, e)
			e = openT(t, dir, params)
			check(t, e, m.rows)
			checkLSN(t, e, m.lsn)
			if e.tombs != 1 {
				t.Fatalf("%d tombstones after reopen, want 1", e.tombs)
			}
			// Compaction again, now of a recovered engine.
			if err := e.Compact(context.Background()); err != nil {
				t.Fatalf("compact: %v", err)
			}
			check(t, e, m.rows)
		})
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	var n int64
	for _, name := range segFiles(t, dir) {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// TestCompactionKeepsTombstones compacts only the segment holding a tombstone while
// an older segment still holds the deleted key's put: the key must stay deleted
// after reopen.
func TestCompactionKeepsTombstones(t *testing.T) {
	dir := t.TempDir()
	params := map[string]string{"segment_size": "4KiB"}
	e := openT(t, dir, params)
	m := newModel(t, e)
	m.apply(put("victim", "old value"))
	for i := range 150 {
		m.apply(put(key(i), val(i, 0)))
	}
	m.apply(del("victim"))
	for i := range 5 {
		m.apply(put(key(i), val(i, 1))) // garbage in the tombstone's segment too
	}
	for i := range 100 {
		m.apply(put(key(1000+i), val(i, 0))) // seal it
	}
	en, _ := e.idx.get([]byte("victim"))
	if !en.tomb || en.seg.id == e.segs[0].id || en.seg == e.segs[len(e.segs)-1] {
		t.Fatalf("fixture: tombstone in segment %d, want a sealed one after the first", en.seg.id)
	}
	e.cmu.Lock()
	err := e.compactSegment(context.Background(), en.seg)
	e.cmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	checkNotFound(t, e, "victim")
	closeT(t, e)
	e = openT(t, dir, params)
	checkNotFound(t, e, "victim")
	check(t, e, m.rows)
}

// TestCompactionCrash copies the folder at each step of a compaction, as a crash
// there would leave it, and checks every copy reopens with all rows; and a partly
// written compaction output is ignored.
func TestCompactionCrash(t *testing.T) {
	dir := t.TempDir()
	params := map[string]string{"segment_size": "4KiB"}
	copies := map[string]string{}
	copyAtStep := withHook(func(step string) error {
		if _, ok := copies[step]; !ok {
			copies[step] = copyDir(t, dir)
		}
		return nil
	})
	e := openT(t, dir, params, copyAtStep)
	m := newModel(t, e)
	for gen := range 3 {
		for i := range 60 {
			m.apply(put(key(i), val(i, gen)))
		}
	}
	for i := 0; i < 60; i += 4 {
		m.apply(del(key(i)))
	}
	if err := e.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"compact:written", "compact:synced", "compact:renamed"} {
		d, ok := copies[step]
		if !ok {
			t.Fatalf("no copy at step %s", step)
		}
		if step != "compact:renamed" && !hasSuffix(t, d, compactExt) {
			t.Fatalf("copy at %s holds no %s file", step, compactExt)
		}
		e2 := openT(t, d, params)
		check(t, e2, m.rows)
		checkLSN(t, e2, m.lsn)
		if hasSuffix(t, d, compactExt) {
			t.Fatalf("copy at %s: Open left a %s file", step, compactExt)
		}
	}

	// A compaction output cut short, beside its intact segment.
	closeT(t, e)
	segs := segFiles(t, dir)
	data, _ := os.ReadFile(filepath.Join(dir, segs[0]))
	os.WriteFile(filepath.Join(dir, strings.TrimSuffix(segs[0], segExt)+compactExt), data[:len(data)/2], 0o644)
	e = openT(t, dir, params, withHook(func(step string) error {
		if step == "compact:synced" {
			return errors.New("injected")
		}
		return nil
	}))
	m.e = e
	check(t, e, m.rows)
	if hasSuffix(t, dir, compactExt) {
		t.Fatalf("Open left a %s file", compactExt)
	}

	// A failed compaction step (this engine's hook fails compact:synced)
	// leaves the engine as it was.
	m.apply(put(key(1), "x"), put(key(2), "y"))
	if err := e.Compact(context.Background()); err == nil {
		t.Fatal("compact with a failing step: nil error")
	}
	check(t, e, m.rows)
	if hasSuffix(t, dir, compactExt) {
		t.Fatalf("failed compaction left a %s file", compactExt)
	}
}

func hasSuffix(t *testing.T, dir, suffix string) bool {
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if strings.HasSuffix(de.Name(), suffix) {
			return true
		}
	}
	return false
}

// TestSnapshotSurvivesCompaction reads a snapshot after its rows were overwritten
// and their segments compacted away.
func TestSnapshotSurvivesCompaction(t *testing.T) {
	for _, ix := range indexes {
		t.Run(ix, func(t *testing.T) {
			e := openT(t, t.TempDir(), map[string]string{"index": ix, "segment_size": "4KiB"})
			m := newModel(t, e)
			for i := range 100 {
				m.apply(put(key(i), val(i, 0)))
			}
			want, wantLSN := m.clone(), m.lsn
			lsn, rows, err := e.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// A scan started before the compaction too.
			next, stop := iterPull(e.Scan(context.Background(), engines.ScanRange{}))
			defer stop()
			first, err, _ := next()
			if err != nil {
				t.Fatal(err)
			}
			for gen := 1; gen < 4; gen++ {
				for i := range 100 {
					m.apply(put(key(i), val(i, gen)))
				}
			}
			for i := range 50 {
				m.apply(del(key(i)))
			}
			if err := e.Compact(context.Background()); err != nil {
				t.Fatal(err)
			}
			if lsn != wantLSN {
				t.Fatalf("snapshot lsn %d, want %d", lsn, wantLSN)
			}
			var got []engines.Row
			for r, err := range rows {
				if err != nil {
					t.Fatalf("snapshot rows: %v", err)
				}
				got = append(got, r)
			}
			diff(t, "snapshot after compaction", got, sorted(want))
			scanned := []engines.Row{first}
			for {
				r, err, ok := next()
				if !ok {
					break
				}
				if err != nil {
					t.Fatalf("scan: %v", err)
				}
				scanned = append(scanned, r)
			}
			diff(t, "scan begun before compaction", scanned, sorted(want))
			check(t, e, m.rows)
		})
	}
}

func TestSnapshotRestore(t *testing.T) {
	for _, ix := range indexes {
		t.Run(ix, func(t *testing.T) {
			params := map[string]string{"index": ix, "segment_size": "4KiB"}
			a := openT(t, t.TempDir(), params)
			ma := newModel(t, a)
			for i := range 150 {
				ma.apply(put(key(i), val(i, 0)))
			}
			ma.apply(del(key(3)), put(key(4), ""))

			dirB := t.TempDir()
			b := openT(t, dirB, params)
			mb := newModel(t, b)
			for i := range 80 {
				mb.apply(put(key(i*7), "b"), del(key(i)))
			}
			lsn, rows, err := a.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Restore(context.Background(), lsn, rows); err != nil {
				t.Fatalf("restore: %v", err)
			}
			check(t, b, ma.rows)
			checkLSN(t, b, lsn)
			if b.tombs != 0 {
				t.Fatalf("%d tombstones after restore", b.tombs)
			}
			mb.rows, mb.lsn = ma.clone(), lsn
			mb.apply(put("after", "restore"), del(key(5)))
			closeT(t, b)
			if _, err := os.Stat(filepath.Join(dirB, restoreDir)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s left behind: %v", restoreDir, err)
			}
			b = openT(t, dirB, params)
			check(t, b, mb.rows)
			checkLSN(t, b, mb.lsn)
			if err := b.Compact(context.Background()); err != nil {
				t.Fatal(err)
			}
			check(t, b, mb.rows)
		})
	}
}

// TestRestoreCrash copies the folder at each step of a Restore: before the commit
// the copy reopens with the old contents, after it with the new ones.
func TestRestoreCrash(t *testing.T) {
	params := map[string]string{"segment_size": "4KiB"}
	dir := t.TempDir()
	copies := map[string]string{}
	e := openT(t, dir, params, withHook(func(step string) error {
		copies[step] = copyDir(t, dir)
		return nil
	}))
	m := newModel(t, e)
	for i := range 100 {
		m.apply(put(key(i), val(i, 0)))
	}
	old, oldLSN := m.clone(), m.lsn
	fresh := map[string]engines.Row{}
	for i := range 120 {
		k := fmt.Sprintf("new-%03d", i)
		fresh[k] = engines.Row{Key: []byte(k), Value: []byte(val(i, 9)), LSN: uint64(i + 1)}
	}
	if err := e.Restore(context.Background(), 500, seq(sorted(fresh))); err != nil {
		t.Fatal(err)
	}
	check(t, e, fresh)
	checkLSN(t, e, 500)

	before := openT(t, copies["restore:written"], params)
	check(t, before, old)
	checkLSN(t, before, oldLSN)
	if _, err := os.Stat(filepath.Join(copies["restore:written"], restoreDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("abandoned %s not removed", restoreDir)
	}

	// After the commit, with the roll-forward interrupted at each point.
	committed := copies["restore:committed"]
	if _, err := os.Stat(filepath.Join(committed, restoreMarker)); err != nil {
		t.Fatalf("copy after commit has no marker: %v", err)
	}
	after := openT(t, copyDir(t, committed), params)
	check(t, after, fresh)
	checkLSN(t, after, 500)

	partial := copyDir(t, committed) // one restored file moved in already
	des, _ := os.ReadDir(filepath.Join(partial, restoreDir))
	os.Rename(filepath.Join(partial, restoreDir, des[0].Name()), filepath.Join(partial, des[0].Name()))
	after = openT(t, partial, params)
	check(t, after, fresh)
	checkLSN(t, after, 500)
}

func TestRestoreRejects(t *testing.T) {
	e := openT(t, t.TempDir(), map[string]string{"max_value_size": "16"})
	m := newModel(t, e)
	m.apply(put("a", "1"))
	for name, rows := range map[string][]engines.Row{
		"lsn above restore lsn": {{Key: []byte("x"), Value: []byte("y"), LSN: 11}},
		"oversized value":       {{Key: []byte("x"), Value: bytes.Repeat([]byte("v"), 17), LSN: 1}},
		"empty key":             {{Key: nil, Value: []byte("y"), LSN: 1}},
	} {
		if err := e.Restore(context.Background(), 10, seq(rows)); !errors.Is(err, engines.ErrInvalidArgument) {
			t.Fatalf("%s: got %v, want ErrInvalidArgument", name, err)
		}
		check(t, e, m.rows)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"index", "lsm", "hash or btree"},
		{"sync", "sometimes", "always, batch or none"},
		{"segment_size", "12", "4KiB"},
		{"segment_size", "lots", "4KiB"},
		{"max_key_size", "0", "1 to"},
		{"max_value_size", "2GiB", "1 to"},
		{"compact_threshold", "1.5", "ratio"},
		{"compact_interval", "-1s", "duration"},
		{"colour", "blue", "allowed compact_interval"},
	} {
		_, err := Open(context.Background(), engines.Options{Dir: t.TempDir(), Params: map[string]string{tc.name: tc.value}})
		if !errors.Is(err, engines.ErrInvalidArgument) {
			t.Errorf("%s=%s: got %v, want ErrInvalidArgument", tc.name, tc.value, err)
			continue
		}
		for _, s := range []string{tc.name, tc.value, tc.want} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s=%s: error %q does not mention %q", tc.name, tc.value, err, s)
			}
		}
	}
	e := openT(t, t.TempDir(), map[string]string{"segment_size": "64MiB", "max_key_size": "8", "max_value_size": "1KiB", "compact_threshold": "0.25", "compact_interval": "1h"})
	if c := e.Capabilities(); c != (engines.Capabilities{Durable: true, MaxKeySize: 8, MaxValueSize: 1024}) {
		t.Fatalf("capabilities %+v", c)
	}
	if e.opts.segmentSize != 64<<20 || e.opts.compactThreshold != 0.25 {
		t.Fatalf("options %+v", e.opts)
	}
	err := e.Apply(context.Background(), []engines.Mutation{{Op: engines.OpPut, Key: []byte("123456789"), Value: nil, LSN: 1}})
	if !errors.Is(err, engines.ErrInvalidArgument) || !strings.Contains(err.Error(), "max_key_size 8") {
		t.Fatalf("oversized key: %v", err)
	}
}

// TestFsyncFailure: a failed fsync stops the engine; every later call fails with
// ErrClosed naming the original error, and nothing is retried.
func TestFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, nil)
	m := newModel(t, e)
	m.apply(put("a", "1"))
	var calls atomic.Int64
	e.fsync = func(*os.File) error {
		calls.Add(1)
		return errors.New("injected EIO")
	}
	err := e.Apply(context.Background(), []engines.Mutation{{Op: engines.OpPut, Key: []byte("b"), Value: []byte("2"), LSN: 2}})
	if !errors.Is(err, engines.ErrClosed) || !strings.Contains(err.Error(), "injected EIO") {
		t.Fatalf("apply with a failing fsync: got %v, want ErrClosed mentioning the fsync error", err)
	}
	_, gerr := e.Get(context.Background(), []byte("a"))
	aerr := e.Apply(context.Background(), []engines.Mutation{{Op: engines.OpPut, Key: []byte("c"), Value: []byte("3"), LSN: 3}})
	_, lerr := e.AppliedLSN(context.Background())
	for name, err := range map[string]error{"get": gerr, "apply": aerr, "applied lsn": lerr, "close": e.Close()} {
		if !errors.Is(err, engines.ErrClosed) || !strings.Contains(err.Error(), "injected EIO") {
			t.Fatalf("%s after the failure: got %v", name, err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("fsync called %d times, want 1 (never retried)", n)
	}
	e = openT(t, dir, nil)
	if _, err := e.Get(context.Background(), []byte("a")); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
}

func TestClosed(t *testing.T) {
	e := openT(t, t.TempDir(), nil)
	closeT(t, e)
	if err := e.Compact(context.Background()); !errors.Is(err, engines.ErrClosed) {
		t.Fatalf("compact after close: %v", err)
	}
	if err := e.Close(); !errors.Is(err, engines.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}

// TestBackgroundCompaction lets the background loop compact.
func TestBackgroundCompaction(t *testing.T) {
	e := openT(t, t.TempDir(), map[string]string{"segment_size": "4KiB", "compact_interval": "1ms", "compact_threshold": "0.3"})
	m := newModel(t, e)
	for gen := range 6 {
		for i := range 50 {
			m.apply(put(key(i), val(i, gen)))
		}
	}
	testutil.WaitFor(t, time.Minute, func() bool {
		e.mu.RLock()
		defer e.mu.RUnlock()
		for _, s := range e.segs[:len(e.segs)-1] {
			if float64(s.garbage()) >= 0.3*float64(s.size-fileHeaderSize) {
				return false
			}
		}
		return true
	}, "background compaction to collect the garbage of the sealed segments")
	check(t, e, m.rows)
	closeT(t, e)
}

func seq(rows []engines.Row) func(func(engines.Row, error) bool) {
	return func(yield func(engines.Row, error) bool) {
		for _, r := range rows {
			if !yield(r, nil) {
				return
			}
		}
	}
}

func iterPull(s iter.Seq2[engines.Row, error]) (func() (engines.Row, error, bool), func()) {
	return iter.Pull2(s)
}

// TestConcurrentCompaction runs writers that check their own keys, forced and
// background compactions, scans and snapshots at once, then reopens.
func TestConcurrentCompaction(t *testing.T) {
	for _, ix := range indexes {
		t.Run(ix, func(t *testing.T) {
			const writers, ops = 6, 250
			dir := t.TempDir()
			params := map[string]string{"index": ix, "segment_size": "4KiB", "compact_interval": "1ms", "compact_threshold": "0.2"}
			e := openT(t, dir, params)
			ctx := context.Background()
			var lsn atomic.Uint64
			owned := make([]map[string]engines.Row, writers)
			var wg, bg sync.WaitGroup
			stop := make(chan struct{})
			for w := range writers {
				owned[w] = map[string]engines.Row{}
				wg.Go(func() {
					own := owned[w]
					for i := range ops {
						k := []byte(fmt.Sprintf("w%d-%02d", w, i%23))
						m := engines.Mutation{Op: engines.OpPut, Key: k, Value: []byte(val(i, w)), LSN: lsn.Add(1)}
						if i%5 == 4 {
							m.Op, m.Value = engines.OpDelete, nil
						}
						if err := e.Apply(ctx, []engines.Mutation{m}); err != nil {
							t.Errorf("apply: %v", err)
							return
						}
						if m.Op == engines.OpPut {
							own[string(k)] = engines.Row{Key: k, Value: m.Value, LSN: m.LSN}
						} else {
							delete(own, string(k))
						}
						probe := []byte(fmt.Sprintf("w%d-%02d", w, (i*7)%23))
						r, err := e.Get(ctx, probe)
						if want, ok := own[string(probe)]; ok {
							if err != nil || !rowEq(r, want) {
								t.Errorf("get %s: got %s, %v; want %s", probe, fmtRow(r), err, fmtRow(want))
								return
							}
						} else if !errors.Is(err, engines.ErrNotFound) {
							t.Errorf("get deleted %s: got %s, %v", probe, fmtRow(r), err)
							return
						}
					}
				})
			}
			bg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := e.Compact(ctx); err != nil {
						t.Errorf("compact: %v", err)
						return
					}
				}
			})
			bg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, rows, err := e.Snapshot(ctx)
					if err != nil {
						t.Errorf("snapshot: %v", err)
						return
					}
					var prev []byte
					for r, err := range rows {
						if err != nil {
							t.Errorf("snapshot rows: %v", err)
							return
						}
						if prev != nil && bytes.Compare(prev, r.Key) >= 0 {
							t.Errorf("snapshot out of order: %q after %q", r.Key, prev)
							return
						}
						prev = r.Key
					}
					for _, err := range e.Scan(ctx, engines.ScanRange{Start: []byte("w2"), Limit: 5}) {
						if err != nil {
							t.Errorf("scan: %v", err)
							return
						}
					}
				}
			})
			wg.Wait()
			close(stop)
			bg.Wait()
			t.Logf("%d segments created, %d left", e.nextID-1, len(e.segs))
			all := map[string]engines.Row{}
			for _, o := range owned {
				maps.Copy(all, o)
			}
			check(t, e, all)
			checkLSN(t, e, lsn.Load())
			closeT(t, e)
			e = openT(t, dir, params)
			check(t, e, all)
			checkLSN(t, e, lsn.Load())
		})
	}
}

// TestLogBackedFsyncsOnlyInFlush checks that an engine opened LogBacked writes
// each Apply without an fsync, whatever its sync option, and that Flush fsyncs
// once; without LogBacked, sync: batch fsyncs each group and Flush has nothing
// left to fsync.
func TestLogBackedFsyncsOnlyInFlush(t *testing.T) {
	for _, tc := range []struct {
		name             string
		logBacked        bool
		applies, flushes int64 // fsyncs per Apply, per Flush
	}{
		{"log backed", true, 0, 1},
		{"sync batch", false, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e, err := open(ctx, engines.Options{Dir: t.TempDir(), LogBacked: tc.logBacked,
				Params: map[string]string{"compact_interval": "0", "sync": "batch"}})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			var fsyncs atomic.Int64
			e.fsync = func(f *os.File) error { fsyncs.Add(1); return f.Sync() }
			for i := range 5 {
				m := engines.Mutation{Op: engines.OpPut, Key: []byte(key(i)), Value: []byte(val(i, 0)), LSN: uint64(i + 1)}
				if err := e.Apply(ctx, []engines.Mutation{m}); err != nil {
					t.Fatal(err)
				}
			}
			if got := fsyncs.Load(); got != 5*tc.applies {
				t.Errorf("fsyncs after 5 applies: got %d, want %d", got, 5*tc.applies)
			}
			lsn, err := e.Flush(ctx)
			if err != nil || lsn != 5 {
				t.Fatalf("flush: got %d, %v; want 5", lsn, err)
			}
			if got := fsyncs.Load(); got != 5*tc.applies+tc.flushes {
				t.Errorf("fsyncs after flush: got %d, want %d", got, 5*tc.applies+tc.flushes)
			}
		})
	}
}

package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// payloadFor is the deterministic payload of the record starting at first.
func payloadFor(first uint64) []byte {
	n := 20 + int(first%53)
	return bytes.Repeat([]byte{byte(first), byte(first >> 8)}, n)[:n]
}

// gen returns records of epoch continuing after last: count records, the
// i-th covering 1 + i%3 LSNs.
func gen(epoch, last uint64, count int) []Record {
	recs := make([]Record, count)
	for i := range recs {
		first := last + 1
		last = first + uint64(i%3)
		recs[i] = Record{Epoch: epoch, First: first, Last: last, Time: int64(first) * 1000, Payload: payloadFor(first)}
	}
	return recs
}

func openLog(t *testing.T, dir string, segBytes int64) *Log {
	t.Helper()
	l, err := Open(dir, Options{SegmentBytes: segBytes})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func mustAppend(t *testing.T, l *Log, recs ...Record) {
	t.Helper()
	if err := l.Append(recs...); err != nil {
		t.Fatalf("Append %d..%d: %v", recs[0].First, recs[len(recs)-1].Last, err)
	}
}

func sameRecord(a, b Record) bool {
	return a.Epoch == b.Epoch && a.First == b.First && a.Last == b.Last && a.Time == b.Time && bytes.Equal(a.Payload, b.Payload)
}

// readAll reads from `from` to the end in chunks of maxBytes.
func readAll(t *testing.T, l *Log, from uint64, maxBytes int) []Record {
	t.Helper()
	var out []Record
	for {
		recs, err := l.Read(from, maxBytes)
		if err != nil {
			t.Fatalf("Read(%d): %v", from, err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		from = recs[len(recs)-1].Last + 1
	}
}

// checkLog verifies that l holds exactly want.
func checkLog(t *testing.T, l *Log, want []Record) {
	t.Helper()
	if len(want) > 0 {
		if got := l.First(); got != want[0].First {
			t.Fatalf("First = %d, want %d", got, want[0].First)
		}
		if got := l.Last(); got != want[len(want)-1].Last {
			t.Fatalf("Last = %d, want %d", got, want[len(want)-1].Last)
		}
	}
	got := readAll(t, l, l.First(), 300)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !sameRecord(got[i], want[i]) {
			t.Fatalf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestAppendReadAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 512)
	if l.First() != 1 || l.Last() != 0 || l.LastEpoch() != 0 || l.OldestTime() != 0 || l.Size() != 0 {
		t.Fatalf("new log: first %d last %d epoch %d", l.First(), l.Last(), l.LastEpoch())
	}
	if recs, err := l.Read(1, 100); err != nil || len(recs) != 0 {
		t.Fatalf("Read on empty log = %v, %v", recs, err)
	}
	want := gen(1, 0, 100)
	want = append(want, gen(2, want[99].Last, 50)...)
	for i := 0; i < len(want); i += 7 {
		mustAppend(t, l, want[i:min(i+7, len(want))]...)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) < 5 {
		t.Fatalf("only %d segments", len(files))
	}
	if filepath.Base(files[0]) != "00000000000000000001.log" {
		t.Fatalf("first segment %s", files[0])
	}
	checkLog(t, l, want)

	// Read from the middle of a multi-LSN record starts with that record.
	mid := want[40]
	if mid.Last == mid.First {
		mid = want[41]
	}
	recs, err := l.Read(mid.Last, 1)
	if err != nil || len(recs) != 1 || !sameRecord(recs[0], mid) {
		t.Fatalf("Read(%d, 1) = %+v, %v; want %+v", mid.Last, recs, err, mid)
	}
	// maxBytes bounds the payload.
	recs, err = l.Read(1, 200)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range recs {
		total += len(r.Payload)
	}
	if total > 200 || len(recs) < 2 {
		t.Fatalf("Read(1, 200) gave %d records, %d bytes", len(recs), total)
	}
	if recs, err := l.Read(l.Last()+1, 100); err != nil || len(recs) != 0 {
		t.Fatalf("Read past the end = %v, %v", recs, err)
	}
	if got := l.LastEpoch(); got != 2 {
		t.Fatalf("LastEpoch = %d", got)
	}
	if got := l.OldestTime(); got != want[0].Time {
		t.Fatalf("OldestTime = %d", got)
	}
	wantHist := []EpochStart{{1, 1}, {2, want[100].First}}
	if got := l.Epochs(); !slices.Equal(got, wantHist) {
		t.Fatalf("Epochs = %v, want %v", got, wantHist)
	}
	logSize := l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var size int64 // after Close: the active segment's preallocated space is given back
	for _, f := range files {
		st, _ := os.Stat(f)
		size += st.Size()
	}
	if logSize != size {
		t.Fatalf("Size = %d, files hold %d", logSize, size)
	}
	if err := l.Append(gen(2, l.Last(), 1)...); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	l2 := openLog(t, dir, 512)
	checkLog(t, l2, want)
	if got := l2.Epochs(); !slices.Equal(got, wantHist) {
		t.Fatalf("Epochs after reopen = %v, want %v", got, wantHist)
	}
	more := gen(2, l2.Last(), 10)
	mustAppend(t, l2, more...)
	checkLog(t, l2, append(want, more...))
}

func TestAppendInvalid(t *testing.T) {
	l := openLog(t, t.TempDir(), 0)
	mustAppend(t, l, gen(2, 0, 3)...)
	last := l.Last()
	for name, r := range map[string]Record{
		"gap":            {Epoch: 2, First: last + 2, Last: last + 2},
		"overlap":        {Epoch: 2, First: last, Last: last + 1},
		"no epoch":       {Epoch: 0, First: last + 1, Last: last + 1},
		"older epoch":    {Epoch: 1, First: last + 1, Last: last + 1},
		"last < first":   {Epoch: 2, First: last + 1, Last: last},
		"second in call": {Epoch: 3, First: last + 1, Last: last + 1},
	} {
		recs := []Record{r}
		if name == "second in call" {
			recs = append(recs, Record{Epoch: 2, First: last + 2, Last: last + 2})
		}
		if err := l.Append(recs...); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Append = %v, want ErrInvalid", name, err)
		}
		if l.Last() != last {
			t.Fatalf("%s: Last moved to %d", name, l.Last())
		}
	}
	if _, err := l.EpochAt(last + 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("EpochAt past the end: %v", err)
	}
	if e, err := l.EpochAt(0); err != nil || e != 0 {
		t.Errorf("EpochAt(0) = %d, %v", e, err)
	}
}

func TestTornTail(t *testing.T) {
	for _, mode := range []string{"cut", "flip", "garbage"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, 1024)
			want := gen(1, 0, 40)
			mustAppend(t, l, want...)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			files := segFiles(t, dir)
			lastFile := files[len(files)-1]
			b, err := os.ReadFile(lastFile)
			if err != nil {
				t.Fatal(err)
			}
			switch mode {
			case "cut":
				b = b[:len(b)-3]
				want = want[:len(want)-1]
			case "flip":
				b[len(b)-5] ^= 0x40
				want = want[:len(want)-1]
			case "garbage": // a crash after the file grew but before data landed
				b = append(b, make([]byte, 100)...)
			}
			if err := os.WriteFile(lastFile, b, 0o644); err != nil {
				t.Fatal(err)
			}
			l2 := openLog(t, dir, 1024)
			checkLog(t, l2, want)
			// Recovery cut the damage: the data ends where the log says
			// (the file goes on with preallocated zeros only).
			data, err := os.ReadFile(lastFile)
			if err != nil {
				t.Fatal(err)
			}
			end := l2.Size() - sizeBefore(t, files[:len(files)-1])
			if int64(len(data)) < end || !bytes.Equal(data[end:], make([]byte, len(data)-int(end))) {
				t.Fatalf("last segment holds %d bytes after recovery, not zeros after its %d bytes of frames", len(data), end)
			}
			more := gen(1, l2.Last(), 5)
			mustAppend(t, l2, more...)
			if err := l2.Sync(); err != nil {
				t.Fatal(err)
			}
			checkLog(t, l2, append(want, more...))
		})
	}
}

func sizeBefore(t *testing.T, files []string) int64 {
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

func TestTornWholeLastSegment(t *testing.T) {
	// A segment created by a roll whose records never reached the disk.
	dir := t.TempDir()
	l := openLog(t, dir, 1024)
	want := gen(1, 0, 40)
	mustAppend(t, l, want...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if err := os.Truncate(files[len(files)-1], 0); err != nil {
		t.Fatal(err)
	}
	first, ok := parseSegmentName(filepath.Base(files[len(files)-1]))
	if !ok {
		t.Fatal(files)
	}
	for len(want) > 0 && want[len(want)-1].First >= first {
		want = want[:len(want)-1]
	}
	l2 := openLog(t, dir, 1024)
	checkLog(t, l2, want)
	mustAppend(t, l2, gen(1, l2.Last(), 3)...)
}

func TestMidFileCorruption(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 1024)
	mustAppend(t, l, gen(1, 0, 40)...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) < 2 {
		t.Fatalf("%d segments", len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{SegmentBytes: 1024})
	if err == nil {
		t.Fatal("Open of a log with a corrupt older segment succeeded")
	}
	if !strings.Contains(err.Error(), filepath.Base(files[0])) || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("error does not name the file and offset: %v", err)
	}
	// Nothing was cut.
	if b2, _ := os.ReadFile(files[0]); !bytes.Equal(b, b2) {
		t.Fatal("Open modified the corrupt segment")
	}
}

func TestMissingSegment(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 1024)
	mustAppend(t, l, gen(1, 0, 60)...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if err := os.Remove(files[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{SegmentBytes: 1024}); err == nil {
		t.Fatal("Open with a missing middle segment succeeded")
	}
}

func TestTruncateAfter(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 600)
	a := gen(1, 0, 30)
	b := gen(2, a[len(a)-1].Last, 30)
	mustAppend(t, l, a...)
	mustAppend(t, l, b...)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	nfiles := len(segFiles(t, dir))

	// Not a record boundary.
	inside := a[20]
	if inside.Last == inside.First {
		inside = a[21]
	}
	if err := l.TruncateAfter(inside.First); !errors.Is(err, ErrInvalid) {
		t.Fatalf("TruncateAfter inside a record: %v", err)
	}
	// At or past the end: nothing to do.
	if err := l.TruncateAfter(l.Last() + 5); err != nil {
		t.Fatal(err)
	}

	// Drop all of epoch 2 and a few records of epoch 1.
	keep := a[:25]
	cut := keep[len(keep)-1].Last
	if err := l.TruncateAfter(cut); err != nil {
		t.Fatal(err)
	}
	if l.Last() != cut || l.LastEpoch() != 1 {
		t.Fatalf("after truncate: last %d epoch %d", l.Last(), l.LastEpoch())
	}
	if got := l.Epochs(); !slices.Equal(got, []EpochStart{{1, 1}}) {
		t.Fatalf("Epochs = %v", got)
	}
	if len(segFiles(t, dir)) >= nfiles {
		t.Fatalf("segments not removed")
	}
	checkLog(t, l, keep)

	// A different epoch continues the log.
	c := gen(3, cut, 20)
	mustAppend(t, l, c...)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(keep), c...)
	wantHist := []EpochStart{{1, 1}, {3, cut + 1}}
	checkLog(t, l, want)
	if e, err := l.EpochAt(cut + 1); err != nil || e != 3 {
		t.Fatalf("EpochAt(%d) = %d, %v", cut+1, e, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, dir, 600)
	checkLog(t, l2, want)
	if got := l2.Epochs(); !slices.Equal(got, wantHist) {
		t.Fatalf("Epochs after reopen = %v, want %v", got, wantHist)
	}

	// Truncating to the base empties the log.
	if err := l2.TruncateAfter(0); err != nil {
		t.Fatal(err)
	}
	if l2.Last() != 0 || l2.First() != 1 || len(l2.Epochs()) != 0 || len(segFiles(t, dir)) != 0 {
		t.Fatalf("after TruncateAfter(0): first %d last %d epochs %v", l2.First(), l2.Last(), l2.Epochs())
	}
	mustAppend(t, l2, gen(4, 0, 3)...)
	if got := l2.Epochs(); !slices.Equal(got, []EpochStart{{4, 1}}) {
		t.Fatalf("Epochs = %v", got)
	}
}

func TestTrimBefore(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 600)
	a := gen(1, 0, 40)
	b := gen(2, a[len(a)-1].Last, 40)
	want := append(slices.Clone(a), b...)
	mustAppend(t, l, want...)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	hist := l.Epochs()
	files := segFiles(t, dir)

	// Trim up to the start of epoch 2: everything in segments ending
	// before it goes.
	if err := l.TrimBefore(b[0].First); err != nil {
		t.Fatal(err)
	}
	after := segFiles(t, dir)
	if len(after) >= len(files) {
		t.Fatalf("no segment removed: %d -> %d", len(files), len(after))
	}
	first := l.First()
	if first <= 1 || first > b[0].First {
		t.Fatalf("First = %d after trimming before %d", first, b[0].First)
	}
	if filepath.Base(after[0]) != segmentName(first) {
		t.Fatalf("first file %s, First %d", after[0], first)
	}
	if _, err := l.Read(first-1, 100); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Read below First: %v", err)
	}
	if _, err := l.Read(1, 100); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Read(1): %v", err)
	}
	if e, err := l.EpochAt(1); err != nil || e != 1 {
		t.Fatalf("EpochAt(1) = %d, %v", e, err)
	}
	if got := l.Epochs(); !slices.Equal(got, hist) {
		t.Fatalf("Epochs = %v, want %v", got, hist)
	}
	var kept []Record
	for _, r := range want {
		if r.First >= first {
			kept = append(kept, r)
		}
	}
	checkLog(t, l, kept)
	if l.OldestTime() != kept[0].Time {
		t.Fatalf("OldestTime = %d, want %d", l.OldestTime(), kept[0].Time)
	}

	// Trimming everything keeps the active segment.
	if err := l.TrimBefore(l.Last() + 100); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segments after trimming all", n)
	}
	if err := l.TruncateAfter(1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("TruncateAfter below First: %v", err)
	}
	first = l.First()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, dir, 600)
	if l2.First() != first {
		t.Fatalf("First after reopen = %d, want %d", l2.First(), first)
	}
	if e, err := l2.EpochAt(1); err != nil || e != 1 {
		t.Fatalf("EpochAt(1) after reopen = %d, %v", e, err)
	}
	if got := l2.Epochs(); !slices.Equal(got, hist) {
		t.Fatalf("Epochs after reopen = %v, want %v", got, hist)
	}

	// Truncating to First()-1 empties the log; the history stays.
	if err := l2.TruncateAfter(first - 1); err != nil {
		t.Fatal(err)
	}
	if l2.Last() != first-1 || l2.First() != first || l2.LastEpoch() != 2 {
		t.Fatalf("after emptying: first %d last %d epoch %d", l2.First(), l2.Last(), l2.LastEpoch())
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	l3 := openLog(t, dir, 600)
	if l3.Last() != first-1 || l3.LastEpoch() != 2 {
		t.Fatalf("after reopen: last %d epoch %d", l3.Last(), l3.LastEpoch())
	}
	mustAppend(t, l3, gen(2, first-1, 2)...)
}

func TestInterruptedTrim(t *testing.T) {
	// A crash after the epochs file recorded the new base but before the
	// old segments were removed: Open removes them.
	dir := t.TempDir()
	l := openLog(t, dir, 600)
	want := gen(1, 0, 60)
	mustAppend(t, l, want...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	base, ok := parseSegmentName(filepath.Base(files[2]))
	if !ok {
		t.Fatal(files)
	}
	base--
	if err := writeEpochs(dir, epochsFile{base: base, hist: []EpochStart{{1, 1}}}); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, dir, 600)
	if l2.First() != base+1 || len(segFiles(t, dir)) != len(files)-2 {
		t.Fatalf("First %d, %d segments", l2.First(), len(segFiles(t, dir)))
	}
	for len(want) > 0 && want[0].First <= base {
		want = want[1:]
	}
	checkLog(t, l2, want)
}

func TestReset(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 600)
	mustAppend(t, l, gen(1, 0, 50)...)
	if err := l.Reset(5, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Reset(5, 0): %v", err)
	}
	if err := l.Reset(100, 3); err != nil {
		t.Fatal(err)
	}
	check := func(l *Log) {
		t.Helper()
		if l.Last() != 100 || l.First() != 101 || l.LastEpoch() != 3 || l.Size() != 0 || l.OldestTime() != 0 {
			t.Fatalf("after Reset: first %d last %d epoch %d size %d", l.First(), l.Last(), l.LastEpoch(), l.Size())
		}
		if e, err := l.EpochAt(100); err != nil || e != 3 {
			t.Fatalf("EpochAt(100) = %d, %v", e, err)
		}
		if _, err := l.EpochAt(99); !errors.Is(err, ErrCompacted) {
			t.Fatalf("EpochAt(99): %v", err)
		}
		if got := l.Epochs(); !slices.Equal(got, []EpochStart{{3, 100}}) {
			t.Fatalf("Epochs = %v", got)
		}
		if _, err := l.Read(100, 10); !errors.Is(err, ErrCompacted) {
			t.Fatalf("Read(100): %v", err)
		}
		if len(segFiles(t, dir)) != 0 {
			t.Fatal("segments left after Reset")
		}
	}
	check(l)
	if err := l.Append(gen(2, 100, 1)...); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Append of an older epoch after Reset: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, 600)
	check(l)

	// The leader, whose epoch 3 covers LSN 100, agrees up to 100.
	leader := []EpochStart{{1, 1}, {3, 60}}
	if d := Divergence(leader, 150, l.Epochs(), l.Last()); d != 100 {
		t.Fatalf("Divergence = %d, want 100", d)
	}

	a := gen(3, 100, 10)
	b := gen(4, a[len(a)-1].Last, 10)
	mustAppend(t, l, a...)
	mustAppend(t, l, b...)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	wantHist := []EpochStart{{3, 100}, {4, b[0].First}}
	if got := l.Epochs(); !slices.Equal(got, wantHist) {
		t.Fatalf("Epochs = %v, want %v", got, wantHist)
	}
	if err := l.TruncateAfter(100); err != nil { // back to the base
		t.Fatal(err)
	}
	if got := l.Epochs(); !slices.Equal(got, []EpochStart{{3, 100}}) || l.Last() != 100 || l.LastEpoch() != 3 {
		t.Fatalf("after truncating to the base: %v last %d", got, l.Last())
	}
	c := gen(4, 100, 1)
	mustAppend(t, l, c...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, 600)
	checkLog(t, l, c)
	if got, want := l.Epochs(), []EpochStart{{3, 100}, {4, 101}}; !slices.Equal(got, want) {
		t.Fatalf("Epochs = %v, want %v", got, want)
	}

	// Reset(0, 0) makes a new log.
	if err := l.Reset(0, 0); err != nil {
		t.Fatal(err)
	}
	if l.Last() != 0 || l.LastEpoch() != 0 || len(l.Epochs()) != 0 {
		t.Fatalf("after Reset(0, 0): last %d epoch %d", l.Last(), l.LastEpoch())
	}
	mustAppend(t, l, gen(1, 0, 2)...)
}

func TestInterruptedReset(t *testing.T) {
	// A crash after the epochs file announced the Reset but before the
	// segments were removed: Open removes them.
	dir := t.TempDir()
	l := openLog(t, dir, 600)
	mustAppend(t, l, gen(1, 0, 60)...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeEpochs(dir, epochsFile{base: 500, dropAll: true, hist: []EpochStart{{7, 500}}}); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, dir, 600)
	if l2.Last() != 500 || l2.LastEpoch() != 7 || len(segFiles(t, dir)) != 0 {
		t.Fatalf("last %d epoch %d, %d segments", l2.Last(), l2.LastEpoch(), len(segFiles(t, dir)))
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	ef, err := readEpochs(dir)
	if err != nil || ef.dropAll {
		t.Fatalf("epochs file: %+v, %v", ef, err)
	}
}

func TestUnsyncedEpochHistoryRebuilt(t *testing.T) {
	// Records of a new epoch reached the segment but the epochs file was
	// never rewritten: Open rebuilds the history from the records.
	dir := t.TempDir()
	l := openLog(t, dir, 600)
	a := gen(1, 0, 10)
	b := gen(2, a[len(a)-1].Last, 10)
	mustAppend(t, l, a...)
	mustAppend(t, l, b...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, epochsName)); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, dir, 600)
	if got, want := l2.Epochs(), []EpochStart{{1, 1}, {2, b[0].First}}; !slices.Equal(got, want) {
		t.Fatalf("Epochs = %v, want %v", got, want)
	}
}

func TestConcurrentAppendRead(t *testing.T) {
	l := openLog(t, t.TempDir(), 2048)
	const total = 1500
	want := gen(1, 0, total/2)
	want = append(want, gen(2, want[len(want)-1].Last, total/2)...)
	byFirst := make(map[uint64]Record, len(want))
	for _, r := range want {
		byFirst[r.First] = r
	}
	done := make(chan struct{})
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			from := uint64(1)
			for i := 0; i < 20000; i++ {
				select {
				case <-done:
					return
				default:
				}
				recs, err := l.Read(from, 64+g*100)
				if err != nil {
					errs <- err
					return
				}
				for _, r := range recs {
					if w, ok := byFirst[r.First]; !ok || !sameRecord(r, w) {
						errs <- fmt.Errorf("reader %d: bad record %d..%d", g, r.First, r.Last)
						return
					}
				}
				if len(recs) > 0 {
					from = recs[len(recs)-1].Last + 1
				} else if g%2 == 1 {
					from = 1 // odd readers start over
				}
				_ = l.Epochs()
				_, _ = l.EpochAt(l.Last())
			}
		}(g)
	}
	for i := 0; i < len(want); i += 10 {
		if err := l.Append(want[i:min(i+10, len(want))]...); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkLog(t, l, want)
}

func TestConcurrentSyncers(t *testing.T) {
	l := openLog(t, t.TempDir(), 4096)
	var mu sync.Mutex // orders appends; Syncs overlap
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				mu.Lock()
				err := l.Append(gen(1, l.Last(), 2)...)
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				if err := l.Sync(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := len(readAll(t, l, 1, 1<<20)); got != 400 {
		t.Fatalf("%d records", got)
	}
}

func BenchmarkAppendSync(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	batch := make([]Record, 64)
	payload := bytes.Repeat([]byte{'x'}, 100)
	b.SetBytes(int64(len(batch) * len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		last := l.Last()
		for i := range batch {
			batch[i] = Record{Epoch: 1, First: last + 1, Last: last + 1, Payload: payload}
			last++
		}
		if err := l.Append(batch...); err != nil {
			b.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

package wal

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// copyDir copies the log's files as they are on disk now: what a crash of
// the process (not of the machine) would leave.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

func TestPreallocatedSegmentsRecoverAfterACrash(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("segments are preallocated on Linux only")
	}
	const segBytes = 4096
	dir := t.TempDir()
	l := openLog(t, dir, segBytes)
	want := gen(1, 0, 200) // several segments
	mustAppend(t, l, want...)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d segments, want several", len(files))
	}
	// Sealed segments end at their last frame; the active one is
	// preallocated to the segment size.
	if st, _ := os.Stat(files[len(files)-1]); st.Size() != segBytes {
		t.Fatalf("the active segment is %d bytes, want %d preallocated", st.Size(), segBytes)
	}
	sealed := sizeBefore(t, files[:len(files)-1])
	var frames int64
	for _, s := range l.segs[:len(l.segs)-1] {
		frames += s.size
	}
	if sealed != frames {
		t.Fatalf("sealed segments hold %d bytes on disk and %d of frames", sealed, frames)
	}

	// A crash: the zero tail is not damage, every record is back, and the
	// recovered log appends where its frames end.
	crashed := copyDir(t, dir)
	l2 := openLog(t, crashed, segBytes)
	checkLog(t, l2, want)
	more := gen(2, l2.Last(), 7)
	mustAppend(t, l2, more...)
	if err := l2.Sync(); err != nil {
		t.Fatal(err)
	}
	// And again, after the appends that overwrote preallocated space.
	l3 := openLog(t, copyDir(t, crashed), segBytes)
	checkLog(t, l3, append(want, more...))

	// A clean close gives the space back.
	if err := l3.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(files[len(files)-1]); st.Size() == segBytes {
		t.Fatal("the active segment kept its preallocated space after Close")
	}
}

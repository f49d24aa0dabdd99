package rowfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/plugdb/plugdb/engines"
)

const (
	segExt     = ".seg"
	compactExt = ".compact" // compaction output before it is renamed over its segment
)

// segment is one row file. Its file stays open while anything references it: the
// engine's segment list holds one reference, and readers (Get, Scan, snapshots)
// take more for as long as they may read it, so compaction and Restore can drop a
// segment without pulling it from under a reader (the file is unlinked or replaced
// by a rename, and the open descriptor keeps the old contents readable).
type segment struct {
	id   uint64
	f    *os.File
	hdr  fileHeader
	refs atomic.Int64

	// Guarded by Engine.mu.
	size  int64 // bytes of the file holding indexed records (incl. header)
	live  int64 // bytes of records that are the newest for their key
	tombs int64 // how many of those are tombstones

	// Owned by the writer: bytes written so far (size lags until the write is
	// published).
	wsize int64
}

func segName(id uint64) string { return fmt.Sprintf("%06d%s", id, segExt) }

// parseSegName returns the id of a segment file name.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segExt)
	if !ok || digits == "" {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseUint(digits, 10, 64)
	return id, err == nil && id > 0
}

func (s *segment) name() string { return segName(s.id) }

func newSegment(id uint64, f *os.File, hdr fileHeader, size int64) *segment {
	s := &segment{id: id, f: f, hdr: hdr, size: size, wsize: size}
	s.refs.Store(1)
	return s
}

func (s *segment) acquire() { s.refs.Add(1) }

// release drops a reference and closes the file with the last one.
func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.f.Close()
	}
}

// garbage is the number of record bytes that are not live.
func (s *segment) garbage() int64 { return s.size - fileHeaderSize - s.live }

// createSegmentFile creates a segment file holding hdr and fsyncs it; the caller
// fsyncs the folder.
func createSegmentFile(path string, hdr fileHeader, fsync func(*os.File) error) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", filepath.Base(path), err)
	}
	if _, err := f.WriteAt(hdr.encode(), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write segment header %s: %w", filepath.Base(path), err)
	}
	if err := fsync(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("fsync segment %s: %w", filepath.Base(path), err)
	}
	return f, nil
}

// readRow reads the record en points at, verifies it, and returns it as a row.
func readRow(key string, en entry) (engines.Row, error) {
	n := recSize(len(key), int(en.vlen))
	buf := make([]byte, n)
	if _, err := en.seg.f.ReadAt(buf, en.off); err != nil {
		if errors.Is(err, io.EOF) {
			return engines.Row{}, fmt.Errorf("read segment %s offset %d: record cut short: %w", en.seg.name(), en.off, engines.ErrCorrupt)
		}
		return engines.Row{}, fmt.Errorf("read segment %s offset %d: %w", en.seg.name(), en.off, err)
	}
	h, ok := parseRecHeader(buf)
	klen := int(h.klen)
	if !ok || !recordCRCOK(buf) || h.lsn != en.lsn || klen != len(key) || h.vlen != en.vlen ||
		(h.kind == kindDelete) != en.tomb || string(buf[recHeaderSize:recHeaderSize+klen]) != key {
		return engines.Row{}, fmt.Errorf("segment %s offset %d: record fails verification: %w", en.seg.name(), en.off, engines.ErrCorrupt)
	}
	k := recHeaderSize + klen
	return engines.Row{Key: buf[recHeaderSize:k:k], Value: buf[k:], LSN: h.lsn}, nil
}

// syncDir fsyncs a folder, making creations, renames and removals in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync folder %s: %w", dir, err)
	}
	return nil
}

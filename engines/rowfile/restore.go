package rowfile

import (
	"bufio"
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"

	"github.com/plugdb/plugdb/engines"
)

// Restore replaces the engine's whole contents with rows and sets the applied LSN
// to lsn. Row LSNs must not exceed lsn.
//
// The rows are written as new segments (ids above every current one, headers
// carrying lsn as the applied-LSN floor) into restore.tmp/, fsynced with that
// folder. The commit point is the atomic creation of the RESTORE marker (write,
// fsync, rename, folder fsync); then the new segments are moved into place, the old
// ones removed and the marker deleted, steps that Open repeats if a crash
// interrupts them. A crash before the marker leaves the old contents (Open removes
// restore.tmp/). Writes wait while a restore runs; reads see the old contents until
// it commits.
func (e *Engine) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.check(); err != nil {
		return err
	}
	e.cmu.Lock()
	defer e.cmu.Unlock()
	e.lockWriter()
	defer e.wmu.Unlock()
	if err := e.check(); err != nil {
		return err
	}
	wrap := func(err error) error { return fmt.Errorf("rowfile: restore: %w", err) }

	tmp := filepath.Join(e.dir, restoreDir)
	if err := os.RemoveAll(tmp); err != nil {
		return wrap(err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return wrap(err)
	}
	var segs []*segment
	committed := false
	defer func() {
		if !committed {
			for _, s := range segs {
				s.f.Close()
			}
			os.RemoveAll(tmp)
		}
	}()

	idx := newIndex(e.opts.index)
	nextID := e.nextID
	var w *bufio.Writer
	newSeg := func() error {
		hdr := fileHeader{lsn: lsn}
		f, err := createSegmentFile(filepath.Join(tmp, segName(nextID)), hdr, e.fsync)
		if err != nil {
			return wrap(err)
		}
		s := newSegment(nextID, f, hdr, fileHeaderSize)
		nextID++
		segs = append(segs, s)
		if w == nil {
			w = bufio.NewWriterSize(segWriter{s}, 1<<20)
		} else {
			w.Reset(segWriter{s})
		}
		return nil
	}
	seal := func(s *segment) error {
		if err := w.Flush(); err != nil {
			return wrap(err)
		}
		if err := e.fsync(s.f); err != nil {
			return wrap(fmt.Errorf("fsync segment %s: %w", s.name(), err))
		}
		s.size = s.wsize
		return nil
	}
	if err := newSeg(); err != nil {
		return err
	}
	var rec []byte
	i := 0
	for row, rerr := range rows {
		if rerr != nil {
			return wrap(fmt.Errorf("row %d: %w", i, rerr))
		}
		if err := ctx.Err(); err != nil {
			return wrap(err)
		}
		switch {
		case len(row.Key) == 0:
			return wrap(fmt.Errorf("row %d: empty key: %w", i, engines.ErrInvalidArgument))
		case len(row.Key) > e.opts.maxKeySize:
			return wrap(fmt.Errorf("row %d: key of %d bytes exceeds max_key_size %d: %w", i, len(row.Key), e.opts.maxKeySize, engines.ErrInvalidArgument))
		case len(row.Value) > e.opts.maxValueSize:
			return wrap(fmt.Errorf("row %d: value of %d bytes exceeds max_value_size %d: %w", i, len(row.Value), e.opts.maxValueSize, engines.ErrInvalidArgument))
		case row.LSN > lsn:
			return wrap(fmt.Errorf("row %d: lsn %d above the restore lsn %d: %w", i, row.LSN, lsn, engines.ErrInvalidArgument))
		}
		rec = appendRecord(rec[:0], kindPut, flagBegin|flagCommit, row.LSN, row.Key, row.Value)
		cur := segs[len(segs)-1]
		if pending := cur.wsize + int64(w.Buffered()); pending > fileHeaderSize && pending+int64(len(rec)) > e.opts.segmentSize {
			if err := seal(cur); err != nil {
				return err
			}
			if err := newSeg(); err != nil {
				return err
			}
			cur = segs[len(segs)-1]
		}
		en := entry{seg: cur, off: cur.wsize + int64(w.Buffered()), lsn: row.LSN, vlen: uint32(len(row.Value))}
		if _, err := w.Write(rec); err != nil {
			return wrap(err)
		}
		if old, had := idx.put(row.Key, en); had {
			old.seg.live -= old.size(len(row.Key))
		}
		cur.live += en.size(len(row.Key))
		i++
	}
	if err := seal(segs[len(segs)-1]); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return wrap(err)
	}
	if err := e.hookStep("restore:written"); err != nil {
		return wrap(err)
	}
	if err := writeFileAtomic(e.dir, restoreMarker, fmt.Sprintf("base %d\n", segs[0].id), e.fsync); err != nil {
		return wrap(err)
	}
	committed = true
	if err := e.hookStep("restore:committed"); err != nil {
		return e.fail(err)
	}
	if err := rollForwardRestore(e.dir, segs[0].id); err != nil {
		return e.fail(err)
	}

	e.mu.Lock()
	old := e.segs
	e.segs, e.idx, e.tombs, e.applied = segs, idx, 0, lsn
	e.mu.Unlock()
	for _, s := range old {
		s.release()
	}
	e.active = segs[len(segs)-1]
	e.nextID, e.maxLSN = nextID, lsn
	return nil
}

// segWriter appends to a segment being written by one goroutine.
type segWriter struct{ s *segment }

func (w segWriter) Write(p []byte) (int, error) {
	n, err := w.s.f.WriteAt(p, w.s.wsize)
	w.s.wsize += int64(n)
	if err != nil {
		return n, fmt.Errorf("write segment %s: %w", w.s.name(), err)
	}
	return n, nil
}

// writeFileAtomic creates dir/name with content: it writes name.tmp, fsyncs it,
// renames it and fsyncs dir.
func writeFileAtomic(dir, name, content string, fsync func(*os.File) error) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := fsync(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", name, err)
	}
	return syncDir(dir)
}

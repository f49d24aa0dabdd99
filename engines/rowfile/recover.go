package rowfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/plugdb/plugdb/engines"
)

// Recovery.
//
// Open first finishes or discards a Restore (a RESTORE marker means the restore
// committed: its files are moved in and older segments removed; a restore.tmp
// folder without a marker is an abandoned restore and is removed) and removes
// abandoned compaction outputs (*.compact). Then it reads every segment in id order,
// verifies each record's CRC and each batch's begin/commit framing, and indexes the
// records of complete batches; for each key the record with the highest LSN wins
// (ties: the later one). The applied LSN is the highest LSN of any record or file
// header.
//
// The torn-tail rule. A crash can only damage bytes written after the last
// successful fsync, and those are always at the end of the last (highest id)
// segment: a segment is fsynced before the next one is created, and compaction and
// restore outputs are fsynced before they are renamed into place. So:
//
//   - In any segment but the last, a bad record (partial or invalid header, record
//     past end of file, CRC mismatch, broken batch framing) or an incomplete batch
//     is corruption: Open fails with an error wrapping engines.ErrCorrupt naming the
//     file and offset.
//   - In the last segment, a bad record at offset p, or an incomplete batch at the
//     end, is a torn tail if no complete valid batch (a begin record through its
//     commit record, contiguous, every CRC valid) starts anywhere at or after p;
//     the file is then truncated after the last complete batch before p and
//     fsynced. If such a batch exists, the damage was followed by data that was
//     once written whole, which a torn write cannot explain: Open fails with
//     ErrCorrupt rather than drop that batch.
//
// Limits of the rule: a bit flip in the last, already acknowledged batch of the last
// segment looks exactly like a torn write and is truncated; and should the OS persist
// the pages of one unacknowledged write out of order, leaving a whole later batch
// behind a hole, Open reports corruption instead of truncating (safe, but it needs an
// operator).

const (
	restoreDir    = "restore.tmp"
	restoreMarker = "RESTORE"
)

func (e *Engine) recover() error {
	if err := e.finishRestore(); err != nil {
		return err
	}
	des, err := os.ReadDir(e.dir)
	if err != nil {
		return fmt.Errorf("read folder: %w", err)
	}
	var ids []uint64
	removed := false
	for _, de := range des {
		name := de.Name()
		if strings.HasSuffix(name, compactExt) || name == restoreMarker+".tmp" {
			if err := os.Remove(filepath.Join(e.dir, name)); err != nil {
				return fmt.Errorf("remove abandoned %s: %w", name, err)
			}
			removed = true
			continue
		}
		if id, ok := parseSegName(name); ok && de.Type().IsRegular() {
			ids = append(ids, id)
		}
	}
	if removed {
		if err := syncDir(e.dir); err != nil {
			return err
		}
	}
	slices.Sort(ids)
	var buf []byte
	for i, id := range ids {
		if err := e.loadSegment(id, i == len(ids)-1, &buf); err != nil {
			return err
		}
	}
	e.nextID = 1
	if len(ids) > 0 {
		e.nextID = ids[len(ids)-1] + 1
	}
	if len(e.segs) == 0 || e.segs[len(e.segs)-1].size >= e.opts.segmentSize {
		id := e.nextID
		hdr := fileHeader{lsn: e.applied}
		f, err := createSegmentFile(filepath.Join(e.dir, segName(id)), hdr, e.fsync)
		if err != nil {
			return err
		}
		if err := syncDir(e.dir); err != nil {
			f.Close()
			return err
		}
		e.nextID++
		e.segs = append(e.segs, newSegment(id, f, hdr, fileHeaderSize))
	}
	e.active = e.segs[len(e.segs)-1]
	e.maxLSN = e.applied
	return nil
}

// loadSegment reads one segment into the index; see the torn-tail rule above.
func (e *Engine) loadSegment(id uint64, last bool, bufp *[]byte) error {
	name := segName(id)
	f, err := os.OpenFile(filepath.Join(e.dir, name), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open segment %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat segment %s: %w", name, err)
	}
	size := st.Size()
	data := slices.Grow((*bufp)[:0], int(size))[:size]
	*bufp = data
	if _, err := f.ReadAt(data, 0); err != nil && !(errors.Is(err, io.EOF) && size == 0) {
		f.Close()
		return fmt.Errorf("read segment %s: %w", name, err)
	}
	corrupt := func(off int64, what string) error {
		return fmt.Errorf("segment %s offset %d: %s: %w", name, off, what, engines.ErrCorrupt)
	}

	hdr, herr := decodeFileHeader(data)
	if herr != nil {
		if !last || size > fileHeaderSize {
			f.Close()
			return corrupt(0, herr.Error())
		}
		// Torn while being created: nothing was ever written after the header.
		if err := e.rewriteHeader(f, name); err != nil {
			f.Close()
			return err
		}
		hdr, size = fileHeader{lsn: e.applied}, fileHeaderSize
	}
	s := newSegment(id, f, hdr, size)
	e.segs = append(e.segs, s) // from here on, open's cleanup closes f
	e.applied = max(e.applied, hdr.lsn)

	off, goodEnd, batchStart := int64(fileHeaderSize), int64(fileHeaderSize), int64(-1)
	var pend []int64
	bad, badOff := "", int64(0)
	for off < size && bad == "" {
		h, ok := parseRecHeader(data[off:])
		end := off + h.size()
		switch {
		case size-off < recHeaderSize:
			bad = "partial record header"
		case !ok:
			bad = "invalid record header"
		case end > size:
			bad = "record runs past the end of the file"
		case !recordCRCOK(data[off:end]):
			bad = "checksum mismatch"
		case batchStart < 0 && h.flags&flagBegin == 0:
			bad = "record outside a batch"
		case batchStart >= 0 && h.flags&flagBegin != 0:
			bad = "batch without a commit record"
		}
		if bad != "" {
			badOff = off
			break
		}
		if h.flags&flagBegin != 0 {
			batchStart, pend = off, pend[:0]
		}
		pend = append(pend, off)
		if h.flags&flagCommit != 0 {
			for _, p := range pend {
				e.recoverRecord(s, data, p)
			}
			batchStart, goodEnd = -1, end
		}
		off = end
	}
	if bad == "" && batchStart >= 0 {
		bad, badOff = "incomplete batch at the end of the file", batchStart
	}
	if bad != "" {
		if !last {
			return corrupt(badOff, bad)
		}
		if q, ok := findBatch(data, badOff); ok {
			return corrupt(badOff, fmt.Sprintf("%s, followed by a valid batch at offset %d", bad, q))
		}
		e.log.Warn("truncating the torn tail of the last segment", "segment", name, "offset", goodEnd, "bytes", size-goodEnd, "found", bad, "at", badOff)
		if err := f.Truncate(goodEnd); err != nil {
			return fmt.Errorf("truncate torn tail of segment %s at offset %d: %w", name, goodEnd, err)
		}
		if err := e.fsync(f); err != nil {
			return fmt.Errorf("fsync segment %s: %w", name, err)
		}
		size = goodEnd
	}
	s.size, s.wsize = size, size
	return nil
}

func (e *Engine) rewriteHeader(f *os.File, name string) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("truncate torn segment %s: %w", name, err)
	}
	if _, err := f.WriteAt(fileHeader{lsn: e.applied}.encode(), 0); err != nil {
		return fmt.Errorf("write segment header %s: %w", name, err)
	}
	if err := e.fsync(f); err != nil {
		return fmt.Errorf("fsync segment %s: %w", name, err)
	}
	return nil
}

// recoverRecord indexes the verified record at off unless the key already has a
// newer one.
func (e *Engine) recoverRecord(s *segment, data []byte, off int64) {
	h, _ := parseRecHeader(data[off:])
	key := data[off+recHeaderSize : off+recHeaderSize+int64(h.klen)]
	e.applied = max(e.applied, h.lsn)
	e.offer(key, entry{seg: s, off: off, lsn: h.lsn, vlen: h.vlen, tomb: h.kind == kindDelete})
}

// findBatch returns the offset of the first complete valid batch starting at or
// after from.
func findBatch(data []byte, from int64) (int64, bool) {
	for q := from; q+recHeaderSize <= int64(len(data)); q++ {
		if h, ok := parseRecHeader(data[q:]); ok && h.flags&flagBegin != 0 && completeBatchAt(data, q) {
			return q, true
		}
	}
	return 0, false
}

func completeBatchAt(data []byte, p int64) bool {
	for first := true; ; first = false {
		h, ok := parseRecHeader(data[p:])
		end := p + h.size()
		if !ok || end > int64(len(data)) || (!first && h.flags&flagBegin != 0) || !recordCRCOK(data[p:end]) {
			return false
		}
		if h.flags&flagCommit != 0 {
			return true
		}
		p = end
	}
}

// finishRestore completes a committed Restore or discards an abandoned one.
func (e *Engine) finishRestore() error {
	b, err := os.ReadFile(filepath.Join(e.dir, restoreMarker))
	if errors.Is(err, fs.ErrNotExist) {
		tmp := filepath.Join(e.dir, restoreDir)
		if _, err := os.Stat(tmp); err == nil {
			if err := os.RemoveAll(tmp); err != nil {
				return fmt.Errorf("remove abandoned restore: %w", err)
			}
			return syncDir(e.dir)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", restoreMarker, err)
	}
	base, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(string(b), "base ")), 10, 64)
	if err != nil || !strings.HasPrefix(string(b), "base ") {
		return fmt.Errorf("%s: bad contents %q: %w", restoreMarker, b, engines.ErrCorrupt)
	}
	return rollForwardRestore(e.dir, base)
}

// rollForwardRestore moves a committed restore's segments (ids from base up) into
// place and removes the segments it replaces. It is idempotent.
func rollForwardRestore(dir string, base uint64) error {
	tmp := filepath.Join(dir, restoreDir)
	des, err := os.ReadDir(tmp)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: read %s: %w", restoreDir, err)
	}
	for _, de := range des {
		if err := os.Rename(filepath.Join(tmp, de.Name()), filepath.Join(dir, de.Name())); err != nil {
			return fmt.Errorf("restore: move %s in place: %w", de.Name(), err)
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	des, err = os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restore: read folder: %w", err)
	}
	for _, de := range des {
		if id, ok := parseSegName(de.Name()); ok && id < base {
			if err := os.Remove(filepath.Join(dir, de.Name())); err != nil {
				return fmt.Errorf("restore: remove replaced segment %s: %w", de.Name(), err)
			}
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("restore: remove %s: %w", restoreDir, err)
	}
	if err := os.Remove(filepath.Join(dir, restoreMarker)); err != nil {
		return fmt.Errorf("restore: remove %s: %w", restoreMarker, err)
	}
	return syncDir(dir)
}

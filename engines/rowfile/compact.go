package rowfile

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/plugdb/plugdb/engines"
)

// Compaction rewrites one sealed segment at a time, in place:
//
//  1. Under cmu (one compaction or Restore at a time) it notes the applied LSN L and
//     reads the segment's records, deciding for each, under the read lock for a
//     chunk of records at a time, whether it is still the newest record of its key
//     (the index points at it). Newest records are written to NNNNNN.compact, each as
//     a one-record batch, with a file header carrying L.
//  2. It fsyncs the output and the active segment (so the records that superseded
//     the dropped ones are durable even with sync: none), renames the output over
//     NNNNNN.seg (or removes the segment if nothing survived) and fsyncs the folder.
//     A crash before the rename leaves the old segment and a *.compact file that
//     Open removes; after it, the new one. Either holds every newest record.
//  3. It points the index entries at the new file, a chunk at a time under the write
//     lock, skipping entries that changed meanwhile. Readers that still hold the
//     old segment keep reading the old (renamed-over or removed) file through its
//     open descriptor, which closes with the last reference.
//
// Tombstones. A tombstone T of key k in segment N is kept while a record of k
// older than T could survive elsewhere, which would bring k back on recovery (the
// highest LSN wins). Apply never writes a record older than its key's newest one, so
// k's older records were written before T: into N (dropped by this very pass, as T
// supersedes them) or into segments with smaller ids (compaction keeps records in
// their segment's id). Such a segment M holds no record of k older than T if
//
//   - M holds no garbage now: every record in it is its key's newest, and T is k's;
//     or
//   - M is a compaction output made while a segment above N was being appended to
//     (its header's compactedAt > N): N was sealed then, so T was already k's
//     newest record and that compaction dropped M's older records of k.
//
// When every segment below N passes, N's newest tombstones are dropped with their
// index entries. Compact, going through the segments in id order, thus drops most
// tombstones in one call.

// Compact forces a full compaction: it seals the active segment if it holds garbage,
// then rewrites every sealed segment that holds garbage or tombstones.
func (e *Engine) Compact(ctx context.Context) error {
	if err := e.check(); err != nil {
		return err
	}
	e.cmu.Lock()
	defer e.cmu.Unlock()
	if err := e.sealActive(); err != nil {
		return err
	}
	return e.compactPass(ctx, true)
}

func (e *Engine) compactLoop(ctx context.Context, every time.Duration) {
	defer close(e.compactDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.cmu.Lock()
		if e.check() == nil {
			// An error leaves the segment as it was (or stops the engine, after
			// an fsync failed); corruption it met is reported again by the reads
			// that hit it.
			if err := e.compactPass(ctx, false); err != nil && ctx.Err() == nil {
				e.log.Error("background compaction failed", "error", err)
			}
		}
		e.cmu.Unlock()
	}
}

// sealActive rolls the active segment if compacting it would gain something.
func (e *Engine) sealActive() error {
	e.lockWriter()
	defer e.wmu.Unlock()
	if err := e.check(); err != nil {
		return err
	}
	a := e.active
	e.mu.RLock()
	worth := a.size > fileHeaderSize && (a.garbage() > 0 || a.tombs > 0)
	e.mu.RUnlock()
	if !worth {
		return nil
	}
	ns, err := e.roll(a)
	if err != nil {
		return e.fail(err)
	}
	e.active = ns
	e.mu.Lock()
	ns.size = ns.wsize
	e.segs = append(e.segs, ns)
	e.mu.Unlock()
	return nil
}

// compactPass compacts the sealed segments whose garbage ratio reaches the
// threshold, or with force every one holding garbage or tombstones. Under cmu.
func (e *Engine) compactPass(ctx context.Context, force bool) error {
	e.mu.RLock()
	var cands []*segment
	for _, s := range e.segs[:max(len(e.segs)-1, 0)] {
		recs := s.size - fileHeaderSize
		switch {
		case recs <= 0:
			cands = append(cands, s)
		case force && (s.garbage() > 0 || s.tombs > 0):
			cands = append(cands, s)
		case !force && float64(s.garbage())/float64(recs) >= e.opts.compactThreshold:
			cands = append(cands, s)
		}
	}
	e.mu.RUnlock()
	for _, s := range cands {
		if err := e.compactSegment(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

type movedRec struct {
	key            []byte
	oldOff, newOff int64
	size           int64
	tomb           bool
}

// compactSegment rewrites s (sealed, in e.segs) with only its newest records. Under
// cmu, which keeps s in the segment list and open.
func (e *Engine) compactSegment(ctx context.Context, s *segment) (err error) {
	e.mu.RLock()
	hdr := fileHeader{lsn: e.applied, compactedAt: e.segs[len(e.segs)-1].id}
	dropTombs := true
	for _, m := range e.segs {
		if m.id < s.id && m.garbage() > 0 && m.hdr.compactedAt <= s.id {
			dropTombs = false
		}
	}
	size := s.size
	e.mu.RUnlock()

	segPath := filepath.Join(e.dir, s.name())
	tmpPath := strings.TrimSuffix(segPath, segExt) + compactExt
	out, err := os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("rowfile: compact %s: %w", s.name(), err)
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			out.Close()
			os.Remove(tmpPath)
		}
	}()
	wrap := func(err error) error { return fmt.Errorf("rowfile: compact %s: %w", s.name(), err) }

	w := bufio.NewWriterSize(out, 1<<20)
	_, _ = w.Write(hdr.encode()) // a bufio error resurfaces at Flush, which is checked
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, fileHeaderSize, size-fileHeaderSize), 1<<20)
	var kept, dropped []movedRec
	newSize := int64(fileHeaderSize)
	off := int64(fileHeaderSize)
	var chunk []movedRec
	var raw []byte
	for off < size {
		if err := ctx.Err(); err != nil {
			return wrap(err)
		}
		if err := e.check(); err != nil {
			return err
		}
		chunk, raw = chunk[:0], raw[:0]
		for off < size && len(chunk) < 1024 && len(raw) < 4<<20 {
			start := len(raw)
			raw = slices.Grow(raw, recHeaderSize)[:start+recHeaderSize]
			if _, err := io.ReadFull(r, raw[start:]); err != nil {
				return wrap(fmt.Errorf("read offset %d: %w", off, err))
			}
			h, ok := parseRecHeader(raw[start:])
			if !ok || off+h.size() > size {
				return wrap(fmt.Errorf("offset %d: invalid record header: %w", off, engines.ErrCorrupt))
			}
			end := start + int(h.size())
			raw = slices.Grow(raw, end-len(raw))[:end]
			if _, err := io.ReadFull(r, raw[start+recHeaderSize:]); err != nil {
				return wrap(fmt.Errorf("read offset %d: %w", off, err))
			}
			if !recordCRCOK(raw[start:end]) {
				return wrap(fmt.Errorf("offset %d: checksum mismatch: %w", off, engines.ErrCorrupt))
			}
			chunk = append(chunk, movedRec{oldOff: off, newOff: int64(start), size: h.size(), tomb: h.kind == kindDelete})
			off += h.size()
		}
		// newOff holds each record's start in raw until it is placed.
		keep := make([]bool, len(chunk))
		e.mu.RLock()
		for i := range chunk {
			c := &chunk[i]
			rec := raw[c.newOff : c.newOff+c.size]
			c.key = rec[recHeaderSize : recHeaderSize+binary.LittleEndian.Uint32(rec[12:])]
			en, ok := e.idx.get(c.key)
			if !ok || en.seg != s || en.off != c.oldOff {
				continue // superseded
			}
			if c.tomb && dropTombs {
				c.key = slices.Clone(c.key)
				dropped = append(dropped, *c)
				continue
			}
			keep[i] = true
		}
		e.mu.RUnlock()
		for i, c := range chunk {
			if !keep[i] {
				continue
			}
			rec := raw[c.newOff : c.newOff+c.size]
			if rec[21] != flagBegin|flagCommit {
				rec[21] = flagBegin | flagCommit
				binary.LittleEndian.PutUint32(rec, crc32.Checksum(rec[4:], castagnoli))
			}
			if _, err := w.Write(rec); err != nil {
				return wrap(err)
			}
			c.key = slices.Clone(c.key)
			c.newOff = newSize
			newSize += c.size
			kept = append(kept, c)
		}
	}
	if err := w.Flush(); err != nil {
		return wrap(err)
	}
	if err := e.hookStep("compact:written"); err != nil {
		return err
	}
	if len(kept) > 0 {
		if err := e.fsync(out); err != nil {
			return wrap(fmt.Errorf("fsync %s: %w", filepath.Base(tmpPath), err))
		}
	}
	// The records that superseded the dropped ones must be durable first.
	e.mu.RLock()
	last := e.segs[len(e.segs)-1]
	last.acquire()
	e.mu.RUnlock()
	err = e.fsync(last.f)
	last.release()
	if err != nil {
		return e.fail(fmt.Errorf("fsync segment %s: %w", last.name(), err))
	}
	if err := e.hookStep("compact:synced"); err != nil {
		return err
	}
	if len(kept) > 0 {
		if err := os.Rename(tmpPath, segPath); err != nil {
			return wrap(err)
		}
	} else {
		out.Close()
		os.Remove(tmpPath)
		if err := os.Remove(segPath); err != nil {
			return wrap(err)
		}
	}
	renamed = true
	if err := syncDir(e.dir); err != nil {
		return e.fail(err)
	}
	if err := e.hookStep("compact:renamed"); err != nil {
		return e.fail(err)
	}

	var ns *segment
	e.mu.Lock()
	if len(kept) > 0 {
		ns = newSegment(s.id, out, hdr, newSize)
		i := slices.Index(e.segs, s)
		e.segs = slices.Insert(e.segs, i+1, ns)
	}
	e.mu.Unlock()
	for i := 0; i < len(kept); i += 4096 {
		e.mu.Lock()
		for _, k := range kept[i:min(i+4096, len(kept))] {
			en, ok := e.idx.get(k.key)
			if !ok || en.seg != s || en.off != k.oldOff {
				continue
			}
			en.seg, en.off = ns, k.newOff
			e.idx.put(k.key, en)
			ns.live += k.size
			if k.tomb {
				ns.tombs++
			}
		}
		e.mu.Unlock()
	}
	e.mu.Lock()
	for _, d := range dropped {
		if en, ok := e.idx.get(d.key); ok && en.seg == s && en.off == d.oldOff {
			e.idx.del(d.key)
			e.tombs--
		}
	}
	e.segs = slices.DeleteFunc(e.segs, func(m *segment) bool { return m == s })
	e.mu.Unlock()
	s.release()
	return nil
}

// hookStep runs the engine's test hook, if a test opened it with one, at a named
// step of compaction or Restore; the hook may fail the step.
func (e *Engine) hookStep(step string) error {
	if e.hook != nil {
		return e.hook(step)
	}
	return nil
}

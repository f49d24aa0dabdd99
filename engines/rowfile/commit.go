package rowfile

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/plugdb/plugdb/engines"
)

// Group commit.
//
// Apply encodes its batch and appends a request to the queue under wmu. If no
// request holds the writer role, this one takes it and its caller becomes the
// leader: it takes every queued request (just one with sync: always), writes them
// with one write, fsyncs once (sync: always and batch), publishes them to the index
// and wakes their callers; then it hands the writer role to the first request queued
// meanwhile, whose caller leads the next group. So while one fsync runs, the next
// group accumulates, and every caller is acknowledged only after its bytes are
// durable and visible.
//
// Batches may arrive in any LSN order (the contract lets concurrent callers race),
// but never two at once for one key. A key's versions resolve by LSN, as on
// recovery: a mutation whose LSN is not above the LSN of its key's newest record is
// stale; it is dropped from its batch before being written (so, per key, file order
// is LSN order, which compaction relies on) and counts only towards AppliedLSN.

const maxGroupBytes = 8 << 20

type request struct {
	buf    []byte      // encoded records
	maxLSN uint64      // highest LSN of the batch, written or stale
	done   chan result // a follower's result or the writer role

	// Filled by the leader.
	seg *segment
	off int64
	err error
}

type result struct {
	err  error
	lead bool
}

// Apply applies a batch of mutations atomically and, per the sync mode, durably
// before it returns.
func (e *Engine) Apply(ctx context.Context, batch []engines.Mutation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := e.check(); err != nil {
		return err
	}
	if err := engines.CheckBatch(e.caps, batch); err != nil {
		return fmt.Errorf("rowfile: apply: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	r := &request{buf: encodeBatch(batch, nil), maxLSN: batch[len(batch)-1].LSN, done: make(chan result, 1)}
	e.wmu.Lock()
	if err := e.check(); err != nil {
		e.wmu.Unlock()
		return err
	}
	// Under wmu, so that no Restore runs between this check and the enqueue.
	if keep := e.fresh(batch); keep != nil {
		r.buf = encodeBatch(batch, keep)
	}
	e.queue = append(e.queue, r)
	lead := !e.leading
	e.leading = true
	e.wmu.Unlock()
	return e.wait(r, lead)
}

// fresh returns nil if no mutation of batch is stale, or else which ones are not.
func (e *Engine) fresh(batch []engines.Mutation) []bool {
	var keep []bool
	e.mu.RLock()
	defer e.mu.RUnlock()
	for i, m := range batch {
		en, ok := e.idx.get(m.Key)
		if !ok || en.lsn < m.LSN {
			continue
		}
		if keep == nil {
			keep = make([]bool, len(batch))
			for j := range keep {
				keep[j] = true
			}
		}
		keep[i] = false
	}
	return keep
}

func (e *Engine) wait(r *request, lead bool) error {
	if !lead {
		res := <-r.done
		if !res.lead {
			return res.err
		}
	}
	e.leadGroup(r)
	return r.err
}

// leadGroup commits the group at the head of the queue (which starts with self),
// then passes the writer role on.
func (e *Engine) leadGroup(self *request) {
	if e.opts.sync == syncBatch {
		// Let writers that were just woken (the previous group's) enqueue
		// first, so they share this fsync rather than wait for the next.
		runtime.Gosched()
	}
	e.wmu.Lock()
	n, bytes := 1, len(e.queue[0].buf)
	if e.opts.sync != syncAlways {
		for n < len(e.queue) && bytes+len(e.queue[n].buf) <= maxGroupBytes {
			bytes += len(e.queue[n].buf)
			n++
		}
	}
	group := make([]*request, n)
	copy(group, e.queue)
	clear(e.queue[:n])
	e.queue = e.queue[n:]
	e.wmu.Unlock()

	err := e.commitGroup(group)

	e.wmu.Lock()
	var next *request
	if len(e.queue) > 0 {
		next = e.queue[0]
	} else {
		e.leading = false
		e.queue = nil
		e.widle.Broadcast()
	}
	e.wmu.Unlock()
	for _, r := range group {
		if r == self {
			r.err = err
		} else {
			r.done <- result{err: err}
		}
	}
	if next != nil {
		next.done <- result{lead: true}
	}
}

// lockWriter takes wmu once no request holds the writer role, so the caller has
// the segments to itself until it unlocks wmu.
func (e *Engine) lockWriter() {
	e.wmu.Lock()
	for e.leading {
		e.widle.Wait()
	}
}

// commitGroup writes a group's records, makes them durable per the sync mode and
// publishes them. An I/O error stops the engine.
func (e *Engine) commitGroup(group []*request) error {
	if err := e.check(); err != nil {
		return err
	}
	start := e.active
	seg := start
	var rolled []*segment
	buf := e.wbuf[:0]
	for _, r := range group {
		pending := seg.wsize + int64(len(buf))
		if pending > fileHeaderSize && pending+int64(len(r.buf)) > e.opts.segmentSize {
			// A batch never spans segments: seal this one, go on in a new one.
			if err := e.writeAt(seg, buf); err != nil {
				return e.failGroup(rolled, err)
			}
			buf = buf[:0]
			ns, err := e.roll(seg)
			if err != nil {
				return e.failGroup(rolled, err)
			}
			rolled = append(rolled, ns)
			seg = ns
		}
		r.seg, r.off = seg, seg.wsize+int64(len(buf))
		buf = append(buf, r.buf...)
		e.maxLSN = max(e.maxLSN, r.maxLSN)
	}
	if err := e.writeAt(seg, buf); err != nil {
		return e.failGroup(rolled, err)
	}
	if cap(buf) <= maxGroupBytes {
		e.wbuf = buf[:0]
	}
	if e.opts.sync != syncNone {
		if err := e.fsync(seg.f); err != nil {
			return e.failGroup(rolled, fmt.Errorf("fsync segment %s: %w", seg.name(), err))
		}
	}
	e.active = seg

	e.mu.Lock()
	start.size = start.wsize
	for _, ns := range rolled {
		ns.size = ns.wsize
		e.segs = append(e.segs, ns)
	}
	for _, r := range group {
		e.publish(r)
		e.applied = max(e.applied, r.maxLSN)
	}
	e.mu.Unlock()
	return nil
}

func (e *Engine) failGroup(rolled []*segment, err error) error {
	for _, s := range rolled {
		s.release()
	}
	return e.fail(err)
}

func (e *Engine) writeAt(seg *segment, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := seg.f.WriteAt(b, seg.wsize); err != nil {
		return fmt.Errorf("write segment %s: %w", seg.name(), err)
	}
	seg.wsize += int64(len(b))
	return nil
}

// roll seals seg (fsync, whatever the sync mode, so only the last segment can have
// a torn tail) and creates the next segment. Writer-owned.
func (e *Engine) roll(seg *segment) (*segment, error) {
	if err := e.fsync(seg.f); err != nil {
		return nil, fmt.Errorf("fsync segment %s: %w", seg.name(), err)
	}
	id := e.nextID
	hdr := fileHeader{lsn: e.maxLSN}
	f, err := createSegmentFile(filepath.Join(e.dir, segName(id)), hdr, e.fsync)
	if err != nil {
		return nil, err
	}
	if err := syncDir(e.dir); err != nil {
		f.Close()
		return nil, err
	}
	e.nextID++
	ns := newSegment(id, f, hdr, fileHeaderSize)
	ns.size = 0 // published by the caller
	return ns, nil
}

// publish adds a committed request's records to the index. Under mu.
func (e *Engine) publish(r *request) {
	for p := 0; p < len(r.buf); {
		h, _ := parseRecHeader(r.buf[p:])
		key := r.buf[p+recHeaderSize : p+recHeaderSize+int(h.klen)]
		e.offer(key, entry{seg: r.seg, off: r.off + int64(p), lsn: h.lsn, vlen: h.vlen, tomb: h.kind == kindDelete})
		p += int(h.size())
	}
}

// offer makes en the newest record of key unless the key has one with a higher
// LSN (ties: en wins, being later in the files), moving the live-byte accounting.
// Under mu.
func (e *Engine) offer(key []byte, en entry) {
	old, had := e.idx.put(key, en)
	if had && old.lsn > en.lsn {
		e.idx.put(key, old) // rare: one lookup in the common case
		return
	}
	if had {
		e.unaccount(len(key), old)
	}
	en.seg.live += en.size(len(key))
	if en.tomb {
		en.seg.tombs++
		e.tombs++
	}
}

func (e *Engine) unaccount(klen int, old entry) {
	old.seg.live -= old.size(klen)
	if old.tomb {
		old.seg.tombs--
		e.tombs--
	}
}

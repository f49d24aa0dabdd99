package partition

import (
	"bytes"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/plugdb/plugdb/engines"
)

// ReservedPrefix starts the keys of the partition's internal rows: one row
// per client holding its latest request id and that request's result (see
// RequestID). User keys that start with it are refused; gets, scans and key
// counts never show these rows. They are ordinary engine rows otherwise:
// written in the same statement as the write they record, so they are
// replicated, durable and in snapshots.
const ReservedPrefix = "\x00plugdb\x00req\x00"

// MaxClientIDSize bounds a RequestID's client id, in bytes.
const MaxClientIDSize = 128

// DefaultSessionTTL and DefaultMaxSessions bound the request table: a
// client's row is deleted once the leader has not recorded a write of it for
// DefaultSessionTTL (by the leader's clock), and when more than
// DefaultMaxSessions clients have rows, the least recently written ones are
// deleted. The leader decides both and writes the deletes into its
// replicated statements, so every replica holds the same table. A retry
// that arrives after its client's row expired is applied again.
const (
	DefaultSessionTTL  = time.Hour
	DefaultMaxSessions = 100_000
)

// maxExpirePerGroup bounds the rows deleted for age with one group.
const maxExpirePerGroup = 64

// ErrStaleRequest: a write's request seq is below the last one recorded for
// its client.
var ErrStaleRequest = errors.New("stale request")

// RequestID names a write for exactly-once retries (the Raft dissertation's
// §6.3 client sessions): a client sends its writes one at a time with Seq
// increasing. The partition records each client's latest Seq and its result
// in the same statement as the write; a write with the recorded Seq is
// answered with the recorded result without writing again (even by a new
// leader after a failover), one with a lower Seq is refused with
// ErrStaleRequest. The zero RequestID names no request: the write is not
// recorded.
type RequestID struct {
	Client string
	Seq    uint64
}

// IsZero reports whether id names no request.
func (id RequestID) IsZero() bool { return id.Client == "" && id.Seq == 0 }

// String is "client/seq".
func (id RequestID) String() string { return fmt.Sprintf("%q/%d", id.Client, id.Seq) }

// Check verifies a non-zero id: a client id of 1 to MaxClientIDSize bytes
// and a Seq of 1 or more.
func (id RequestID) Check() error {
	if id.IsZero() {
		return nil
	}
	if id.Client == "" || len(id.Client) > MaxClientIDSize {
		return fmt.Errorf("request id: client id of %d bytes: allowed sizes are 1 to %d bytes: %w", len(id.Client), MaxClientIDSize, engines.ErrInvalidArgument)
	}
	if id.Seq == 0 {
		return fmt.Errorf("request id of client %q: seq 0: seqs start at 1: %w", id.Client, engines.ErrInvalidArgument)
	}
	return nil
}

// Reserved reports whether key is in the partition's internal key space.
func Reserved(key []byte) bool { return bytes.HasPrefix(key, []byte(ReservedPrefix)) }

// checkUserKey refuses a key in the internal key space.
func checkUserKey(key []byte) error {
	if Reserved(key) {
		return fmt.Errorf("key %q: keys starting with %q are reserved for plugdb's internal rows: %w", key, ReservedPrefix, engines.ErrInvalidArgument)
	}
	return nil
}

// reservedEnd is the first key after the internal key space.
var reservedEnd = []byte("\x00plugdb\x00req\x01")

// sessionKey is the key of client's row.
func sessionKey(client string) []byte { return append([]byte(ReservedPrefix), client...) }

// session is one client's row: its latest recorded request and the LSNs of
// that request's writes.
type session struct {
	client string
	seq    uint64
	lsns   []uint64
	at     int64 // the leader's clock when recorded, Unix milliseconds
	elem   *list.Element
}

// encodeSession is a row's value: version 1, seq, at, the LSN count and LSNs.
func encodeSession(s *session) []byte {
	b := []byte{1}
	b = binary.AppendUvarint(b, s.seq)
	b = binary.AppendVarint(b, s.at)
	b = binary.AppendUvarint(b, uint64(len(s.lsns)))
	for _, l := range s.lsns {
		b = binary.AppendUvarint(b, l)
	}
	return b
}

// maxSessionSize bounds the size of a row's value recording n LSNs.
func maxSessionSize(n int) int {
	return 1 + 3*binary.MaxVarintLen64 + n*binary.MaxVarintLen64
}

func decodeSession(key, val []byte) (*session, error) {
	bad := func(what string) error {
		return fmt.Errorf("request table row %q: %s: %w", key, what, engines.ErrCorrupt)
	}
	if len(val) == 0 || val[0] != 1 {
		return nil, bad("unknown version")
	}
	s := &session{client: string(key[len(ReservedPrefix):])}
	r := bytes.NewReader(val[1:])
	var err error
	if s.seq, err = binary.ReadUvarint(r); err != nil {
		return nil, bad("seq")
	}
	if s.at, err = binary.ReadVarint(r); err != nil {
		return nil, bad("time")
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(len(val)) {
		return nil, bad("lsn count")
	}
	s.lsns = make([]uint64, n)
	for i := range s.lsns {
		if s.lsns[i], err = binary.ReadUvarint(r); err != nil {
			return nil, bad("lsns")
		}
	}
	return s, nil
}

// sessions is the leader's in-memory copy of the request table, loaded from
// the engine when the partition starts taking writes and kept by the writer
// loop (only it touches it) ahead of the engine: it includes the rows of
// groups not yet applied.
//
// Loading it takes a scan of the internal key space. On an engine that is not
// an engines.Scanner the table is read lazily instead: a client's row is
// fetched with Get the first time one of its requests comes, so a retry is
// still answered from the table; only the rows of clients seen since the
// table was last loaded count toward its bounds and expire, so the rows of
// clients never seen again stay in the engine.
type sessions struct {
	ttl    time.Duration
	max    int
	loaded bool
	lazy   engines.Engine // set when the table is read lazily, from it
	by     map[string]*session
	order  *list.List // of *session, least recently recorded first
}

func newSessions() *sessions {
	return &sessions{ttl: DefaultSessionTTL, max: DefaultMaxSessions}
}

// invalidate makes the next use reload the table from the engine (a new
// term, or an engine write that failed).
func (t *sessions) invalidate() { t.loaded = false }

// load reads the table from the engine unless it is loaded.
func (t *sessions) load(ctx context.Context, eng engines.Engine) error {
	if t.loaded {
		return nil
	}
	scanner, ok := engines.AsScanner(eng)
	if !ok {
		t.lazy, t.by, t.order, t.loaded = eng, map[string]*session{}, list.New(), true
		return nil
	}
	t.lazy = nil
	var all []*session
	for row, err := range scanner.Scan(ctx, engines.ScanRange{Start: []byte(ReservedPrefix), End: reservedEnd}) {
		if err != nil {
			return fmt.Errorf("load the request table: %w", err)
		}
		s, err := decodeSession(row.Key, row.Value)
		if err != nil {
			return fmt.Errorf("load the request table: %w", err)
		}
		all = append(all, s)
	}
	slices.SortStableFunc(all, func(a, b *session) int { return compareInt(a.at, b.at) })
	t.by = make(map[string]*session, len(all))
	t.order = list.New()
	for _, s := range all {
		s.elem = t.order.PushBack(s)
		t.by[s.client] = s
	}
	t.loaded = true
	return nil
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// get returns client's row, or nil. A lazy table fetches the row from the
// engine the first time.
func (t *sessions) get(ctx context.Context, client string) (*session, error) {
	if s := t.by[client]; s != nil || t.lazy == nil {
		return s, nil
	}
	row, err := t.lazy.Get(ctx, sessionKey(client))
	if errors.Is(err, engines.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the request table row of client %q: %w", client, err)
	}
	s, err := decodeSession(row.Key, row.Value)
	if err != nil {
		return nil, fmt.Errorf("read the request table: %w", err)
	}
	// Keep the list in recording order: insert after the last row recorded
	// no later.
	at := t.order.Back()
	for at != nil && at.Value.(*session).at > s.at {
		at = at.Prev()
	}
	if at == nil {
		s.elem = t.order.PushFront(s)
	} else {
		s.elem = t.order.InsertAfter(s, at)
	}
	t.by[client] = s
	return s, nil
}

// record sets client's row and returns the mutation that writes it.
func (t *sessions) record(id RequestID, lsns []uint64, now time.Time, lsn uint64) engines.Mutation {
	s := t.by[id.Client]
	if s == nil {
		s = &session{client: id.Client}
		s.elem = t.order.PushBack(s)
		t.by[id.Client] = s
	} else {
		t.order.MoveToBack(s.elem)
	}
	s.seq, s.lsns, s.at = id.Seq, lsns, max(now.UnixMilli(), s.at)
	return engines.Mutation{Op: engines.OpPut, Key: sessionKey(id.Client), Value: encodeSession(s), LSN: lsn}
}

// expire removes the rows over the cap and up to maxExpirePerGroup rows
// older than the TTL, least recently recorded first, and yields the clients
// whose rows the caller must delete.
func (t *sessions) expire(now time.Time) iter.Seq[string] {
	return func(yield func(string) bool) {
		cutoff := now.Add(-t.ttl).UnixMilli()
		aged := 0
		for e := t.order.Front(); e != nil; e = t.order.Front() {
			s := e.Value.(*session)
			over := t.order.Len() > t.max
			if !over && (s.at >= cutoff || aged >= maxExpirePerGroup) {
				return
			}
			if !over {
				aged++
			}
			t.order.Remove(e)
			delete(t.by, s.client)
			if !yield(s.client) {
				return
			}
		}
	}
}

// countReserved counts the internal rows of eng, a Scanner.
func countReserved(ctx context.Context, eng engines.Scanner) (int64, error) {
	var n int64
	for _, err := range eng.Scan(ctx, engines.ScanRange{Start: []byte(ReservedPrefix), End: reservedEnd}) {
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// hideReserved scans r with scan, leaving out the internal key space: the
// parts of r below and above it are scanned in turn, so a limit counts user
// rows only.
func hideReserved(ctx context.Context, r engines.ScanRange, scan func(context.Context, engines.ScanRange) iter.Seq2[engines.Row, error]) iter.Seq2[engines.Row, error] {
	prefix := []byte(ReservedPrefix)
	overlaps := bytes.Compare(r.Start, reservedEnd) < 0 && (len(r.End) == 0 || bytes.Compare(r.End, prefix) > 0)
	if !overlaps {
		return scan(ctx, r)
	}
	var parts []engines.ScanRange
	if bytes.Compare(r.Start, prefix) < 0 {
		parts = append(parts, engines.ScanRange{Start: r.Start, End: prefix})
	}
	if len(r.End) == 0 || bytes.Compare(r.End, reservedEnd) > 0 {
		parts = append(parts, engines.ScanRange{Start: reservedEnd, End: r.End})
	}
	return func(yield func(engines.Row, error) bool) {
		n := 0
		for _, part := range parts {
			if r.Limit > 0 {
				part.Limit = r.Limit - n
			}
			for row, err := range scan(ctx, part) {
				if !yield(row, err) || err != nil {
					return
				}
				if n++; r.Limit > 0 && n >= r.Limit {
					return
				}
			}
		}
	}
}

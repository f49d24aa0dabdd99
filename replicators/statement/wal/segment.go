package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const (
	frameHeader  = 8  // length uint32 + crc uint32
	recordHeader = 32 // epoch, first, last uint64 + time int64
	// MaxPayload is the largest payload a record may carry.
	MaxPayload    = 1 << 30
	segmentSuffix = ".log"
	segmentDigits = 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadFrame marks a frame that failed validation while scanning or reading.
var errBadFrame = errors.New("bad frame")

// errZeroTail marks the end of the frames in a segment whose file goes on
// with zeros: preallocated space (Log.preallocate), not damage.
var errZeroTail = fmt.Errorf("zero-filled space after the last frame: %w", errBadFrame)

// index locates one record: its last LSN and its frame's offset in its
// segment. Its first LSN is the previous record's last + 1 (or the segment's
// first LSN) and its frame ends where the next one starts (or at the
// segment's size).
type index struct {
	last uint64
	off  int64
}

// segment is one open segment file.
type segment struct {
	first     uint64 // LSN in the file name: first LSN it holds (or would hold)
	path      string
	f         *os.File
	size      int64 // bytes of valid frames
	recs      []index
	firstTime int64 // Time of the first record
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segmentDigits, first, segmentSuffix)
}

// parseSegmentName returns the first LSN a segment file name carries.
func parseSegmentName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(base) != segmentDigits {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

// listSegments returns the first LSNs of the segment files in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var firsts []uint64
	for _, e := range ents {
		if first, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	return firsts, nil
}

func (s *segment) lastLSN() uint64 {
	if len(s.recs) == 0 {
		return s.first - 1
	}
	return s.recs[len(s.recs)-1].last
}

func (s *segment) recFirst(i int) uint64 {
	if i == 0 {
		return s.first
	}
	return s.recs[i-1].last + 1
}

func (s *segment) recEnd(i int) int64 {
	if i+1 < len(s.recs) {
		return s.recs[i+1].off
	}
	return s.size
}

// find returns the position of the record holding lsn (which the segment
// must hold).
func (s *segment) find(lsn uint64) int {
	return sort.Search(len(s.recs), func(i int) bool { return s.recs[i].last >= lsn })
}

func frameSize(payload int) int64 { return int64(frameHeader + recordHeader + payload) }

// appendFrame encodes r as a frame at the end of buf.
func appendFrame(buf []byte, r *Record) []byte {
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(recordHeader+len(r.Payload)))
	buf = binary.LittleEndian.AppendUint32(buf, 0) // crc, set below
	buf = binary.LittleEndian.AppendUint64(buf, r.Epoch)
	buf = binary.LittleEndian.AppendUint64(buf, r.First)
	buf = binary.LittleEndian.AppendUint64(buf, r.Last)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(r.Time))
	buf = append(buf, r.Payload...)
	crc := crc32.Checksum(buf[start+frameHeader:], castagnoli)
	binary.LittleEndian.PutUint32(buf[start+4:], crc)
	return buf
}

// decodeBody checks a frame body (the bytes after length and crc) against
// its crc and decodes it; the payload aliases body.
func decodeBody(body []byte, crc uint32) (Record, error) {
	if len(body) < recordHeader {
		return Record{}, fmt.Errorf("body of %d bytes: %w", len(body), errBadFrame)
	}
	if got := crc32.Checksum(body, castagnoli); got != crc {
		return Record{}, fmt.Errorf("crc %08x, want %08x: %w", got, crc, errBadFrame)
	}
	return Record{
		Epoch:   binary.LittleEndian.Uint64(body[0:]),
		First:   binary.LittleEndian.Uint64(body[8:]),
		Last:    binary.LittleEndian.Uint64(body[16:]),
		Time:    int64(binary.LittleEndian.Uint64(body[24:])),
		Payload: body[recordHeader:],
	}, nil
}

// scan reads a segment's frames from the start, checking each frame's crc
// and that records are contiguous from s.first with epochs >= minEpoch and
// non-decreasing; onRecord sees each valid record (payload not retained).
// It fills s.recs, s.size and s.firstTime with the valid prefix and returns
// the error describing the first invalid frame (nil if the whole file is
// valid), with the file's real size.
func (s *segment) scan(minEpoch uint64, onRecord func(Record)) (fileSize int64, bad error, err error) {
	st, err := s.f.Stat()
	if err != nil {
		return 0, nil, fmt.Errorf("stat segment %s: %w", s.path, err)
	}
	fileSize = st.Size()
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return 0, nil, fmt.Errorf("seek segment %s: %w", s.path, err)
	}
	rd := bufio.NewReaderSize(s.f, 1<<16)
	var (
		hdr  [frameHeader]byte
		body []byte
		off  int64
		next = s.first
		ep   = minEpoch
	)
	s.recs, s.size, s.firstTime = s.recs[:0], 0, 0
	for off < fileSize {
		if fileSize-off < frameHeader {
			return fileSize, fmt.Errorf("%d trailing bytes: %w", fileSize-off, errBadFrame), nil
		}
		if _, err := io.ReadFull(rd, hdr[:]); err != nil {
			return 0, nil, fmt.Errorf("read segment %s at offset %d: %w", s.path, off, err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:]))
		if hdr == [frameHeader]byte{} {
			return fileSize, errZeroTail, nil
		}
		if n < recordHeader || n > recordHeader+MaxPayload {
			return fileSize, fmt.Errorf("frame length %d: %w", n, errBadFrame), nil
		}
		if off+frameHeader+n > fileSize {
			return fileSize, fmt.Errorf("frame of %d bytes past the end of the file: %w", n, errBadFrame), nil
		}
		if int64(cap(body)) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(rd, body); err != nil {
			return 0, nil, fmt.Errorf("read segment %s at offset %d: %w", s.path, off, err)
		}
		r, err := decodeBody(body, binary.LittleEndian.Uint32(hdr[4:]))
		if err != nil {
			return fileSize, err, nil
		}
		switch {
		case r.Epoch == 0:
			return fileSize, fmt.Errorf("record %d..%d without an epoch: %w", r.First, r.Last, errBadFrame), nil
		case r.First != next:
			return fileSize, fmt.Errorf("record starts at lsn %d, want %d: %w", r.First, next, errBadFrame), nil
		case r.Last < r.First:
			return fileSize, fmt.Errorf("record %d..%d ends before it starts: %w", r.First, r.Last, errBadFrame), nil
		case r.Epoch < ep:
			return fileSize, fmt.Errorf("record %d..%d of epoch %d after epoch %d: %w", r.First, r.Last, r.Epoch, ep, errBadFrame), nil
		}
		if len(s.recs) == 0 {
			s.firstTime = r.Time
		}
		s.recs = append(s.recs, index{last: r.Last, off: off})
		onRecord(r)
		off += frameHeader + n
		s.size = off
		next, ep = r.Last+1, r.Epoch
	}
	return fileSize, nil, nil
}

// readRecords reads and checks the records at positions [i, j) of s.
func (s *segment) readRecords(i, j int, out []Record) ([]Record, error) {
	start, end := s.recs[i].off, s.recEnd(j-1)
	buf := make([]byte, end-start)
	if _, err := s.f.ReadAt(buf, start); err != nil {
		return out, fmt.Errorf("read segment %s at offset %d: %w", s.path, start, err)
	}
	for k := i; k < j; k++ {
		off := s.recs[k].off - start
		fend := s.recEnd(k) - start
		frame := buf[off:fend]
		n := int64(binary.LittleEndian.Uint32(frame[0:]))
		if n != int64(len(frame))-frameHeader {
			return out, fmt.Errorf("segment %s at offset %d: frame length %d, index says %d: %w",
				s.path, s.recs[k].off, n, len(frame)-frameHeader, errBadFrame)
		}
		r, err := decodeBody(frame[frameHeader:], binary.LittleEndian.Uint32(frame[4:]))
		if err != nil {
			return out, fmt.Errorf("segment %s at offset %d: %w", s.path, s.recs[k].off, err)
		}
		if r.First != s.recFirst(k) || r.Last != s.recs[k].last {
			return out, fmt.Errorf("segment %s at offset %d: record %d..%d, index says %d..%d: %w",
				s.path, s.recs[k].off, r.First, r.Last, s.recFirst(k), s.recs[k].last, errBadFrame)
		}
		r.Payload = r.Payload[:len(r.Payload):len(r.Payload)]
		out = append(out, r)
	}
	return out, nil
}

// syncDir fsyncs a directory so that created, renamed and removed entries
// are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, segmentName(first))
}

package rowfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/plugdb/plugdb/engines"
)

// On-disk format, little endian throughout.
//
// A segment file starts with a 40-byte file header:
//
//	0  magic       [8]byte "plugdbRF"
//	8  version     uint32  (1)
//	12 reserved    uint32  (0)
//	16 lsn         uint64  the engine's applied LSN was at least this when the file
//	                       was created (recovery's floor for the applied LSN)
//	24 compactedAt uint64  for a compaction output: the id of the segment being
//	                       appended to when the compaction started; 0 for segments
//	                       written by Apply or Restore (see compact.go)
//	32 crc         uint32  CRC32C of bytes 0..32
//	36 reserved    uint32  (0)
//
// followed by records, each a 24-byte header then the key then the value:
//
//	0  crc      uint32  CRC32C (Castagnoli) of header bytes 4..24, key and value
//	4  lsn      uint64
//	12 klen     uint32  >= 1
//	16 vlen     uint32  0 for a tombstone
//	20 kind     uint8   1 put, 2 tombstone
//	21 flags    uint8   bit 0 begin: first record of a batch;
//	                    bit 1 commit: last record of a batch
//	22 reserved uint16  (0)
//
// The records of one Apply batch are contiguous, never split across segments; the
// first carries begin and the last commit (a one-record batch carries both). Recovery
// ignores records that are not followed by their batch's commit record.
const (
	fileMagic      = "plugdbRF"
	fileVersion    = 1
	fileHeaderSize = 40
	recHeaderSize  = 24

	kindPut    = 1
	kindDelete = 2

	flagBegin  = 1 << 0
	flagCommit = 1 << 1

	// Hard limits of the format, also the highest allowed max_key_size and
	// max_value_size.
	keyLimit   = 1 << 20
	valueLimit = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errBadFileHeader = errors.New("bad file header")

// fileHeader is a decoded segment file header.
type fileHeader struct {
	lsn         uint64
	compactedAt uint64
}

// encode returns the header's bytes.
func (fh fileHeader) encode() []byte {
	b := make([]byte, fileHeaderSize)
	copy(b, fileMagic)
	binary.LittleEndian.PutUint32(b[8:], fileVersion)
	binary.LittleEndian.PutUint64(b[16:], fh.lsn)
	binary.LittleEndian.PutUint64(b[24:], fh.compactedAt)
	binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b[:32], castagnoli))
	return b
}

// decodeFileHeader checks a segment file header and decodes it.
func decodeFileHeader(b []byte) (fileHeader, error) {
	if len(b) < fileHeaderSize {
		return fileHeader{}, fmt.Errorf("%w: %d bytes, want %d", errBadFileHeader, len(b), fileHeaderSize)
	}
	if string(b[:8]) != fileMagic {
		return fileHeader{}, fmt.Errorf("%w: magic %q", errBadFileHeader, b[:8])
	}
	if crc32.Checksum(b[:32], castagnoli) != binary.LittleEndian.Uint32(b[32:]) {
		return fileHeader{}, fmt.Errorf("%w: checksum mismatch", errBadFileHeader)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != fileVersion {
		return fileHeader{}, fmt.Errorf("%w: unsupported format version %d", errBadFileHeader, v)
	}
	return fileHeader{lsn: binary.LittleEndian.Uint64(b[16:]), compactedAt: binary.LittleEndian.Uint64(b[24:])}, nil
}

// recHeader is a decoded record header.
type recHeader struct {
	lsn   uint64
	klen  uint32
	vlen  uint32
	kind  uint8
	flags uint8
}

// size is the record's length on disk.
func (h recHeader) size() int64 { return recHeaderSize + int64(h.klen) + int64(h.vlen) }

// recSize is the length on disk of a record with the given key and value lengths.
func recSize(klen, vlen int) int64 { return recHeaderSize + int64(klen) + int64(vlen) }

// parseRecHeader decodes b's first recHeaderSize bytes and checks the fields that do
// not need the payload; it does not check the CRC.
func parseRecHeader(b []byte) (recHeader, bool) {
	if len(b) < recHeaderSize {
		return recHeader{}, false
	}
	h := recHeader{
		lsn:   binary.LittleEndian.Uint64(b[4:]),
		klen:  binary.LittleEndian.Uint32(b[12:]),
		vlen:  binary.LittleEndian.Uint32(b[16:]),
		kind:  b[20],
		flags: b[21],
	}
	switch {
	case h.kind != kindPut && h.kind != kindDelete,
		h.flags&^(flagBegin|flagCommit) != 0,
		b[22] != 0 || b[23] != 0,
		h.klen == 0 || h.klen > keyLimit,
		h.vlen > valueLimit,
		h.kind == kindDelete && h.vlen != 0:
		return recHeader{}, false
	}
	return h, true
}

// recordCRCOK reports whether rec, one whole record, carries a matching CRC.
func recordCRCOK(rec []byte) bool {
	return binary.LittleEndian.Uint32(rec) == crc32.Checksum(rec[4:], castagnoli)
}

// appendRecord appends one encoded record to dst.
func appendRecord(dst []byte, kind, flags uint8, lsn uint64, key, value []byte) []byte {
	start := len(dst)
	var h [recHeaderSize]byte
	binary.LittleEndian.PutUint64(h[4:], lsn)
	binary.LittleEndian.PutUint32(h[12:], uint32(len(key)))
	binary.LittleEndian.PutUint32(h[16:], uint32(len(value)))
	h[20] = kind
	h[21] = flags
	dst = append(dst, h[:]...)
	dst = append(dst, key...)
	dst = append(dst, value...)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// encodeBatch encodes the mutations of a checked batch that keep selects (all if
// keep is nil) as one atomic run of records.
func encodeBatch(batch []engines.Mutation, keep []bool) []byte {
	n, first, last := 0, -1, -1
	for i, m := range batch {
		if keep == nil || keep[i] {
			n += int(recSize(len(m.Key), len(m.Value)))
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	buf := make([]byte, 0, n)
	for i, m := range batch {
		if keep != nil && !keep[i] {
			continue
		}
		var flags uint8
		if i == first {
			flags |= flagBegin
		}
		if i == last {
			flags |= flagCommit
		}
		if m.Op == engines.OpDelete {
			buf = appendRecord(buf, kindDelete, flags, m.LSN, m.Key, nil)
		} else {
			buf = appendRecord(buf, kindPut, flags, m.LSN, m.Key, m.Value)
		}
	}
	return buf
}

package pebble

import (
	"encoding/binary"
	"fmt"
	"io"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/plugdb/plugdb/engines"
)

// The key space. Every pebble key starts with a prefix byte:
//
//	'r' + key   a row: 8-byte big-endian LSN, then the value
//	"m" + name  meta data; metaLSN holds the applied LSN (8 bytes, big-endian)
//
// The prefix keeps rows in plain byte order of their keys ('r'+a < 'r'+b exactly
// when a < b), and keeps meta keys out of every row range.
const (
	rowPrefix = 'r'
	rowsEnd   = rowPrefix + 1 // the exclusive upper bound of all rows
	lsnSize   = 8
)

var (
	rowsLower = []byte{rowPrefix}
	rowsUpper = []byte{rowsEnd}
	metaLSN   = []byte("m/applied_lsn")
)

// rowKey returns 'r' + key.
func rowKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = rowPrefix
	copy(k[1:], key)
	return k
}

// putRow appends the row's Set to b without building the key and value apart.
func putRow(b *pebbledb.Batch, key, value []byte, lsn uint64) {
	op := b.SetDeferred(1+len(key), lsnSize+len(value))
	op.Key[0] = rowPrefix
	copy(op.Key[1:], key)
	binary.BigEndian.PutUint64(op.Value, lsn)
	copy(op.Value[lsnSize:], value)
	_ = op.Finish() // Finish fails only for an indexed batch
}

// deleteRow appends the row's Delete to b.
func deleteRow(b *pebbledb.Batch, key []byte) {
	op := b.DeleteDeferred(1 + len(key))
	op.Key[0] = rowPrefix
	copy(op.Key[1:], key)
	_ = op.Finish()
}

// decodeRow returns a row that owns its bytes from a pebble key and value,
// which pebble owns.
func decodeRow(k, v []byte) (engines.Row, error) {
	if len(k) < 2 || k[0] != rowPrefix {
		return engines.Row{}, fmt.Errorf("pebble: key %q is not a row key: %w", k, engines.ErrCorrupt)
	}
	if len(v) < lsnSize {
		return engines.Row{}, fmt.Errorf("pebble: row %q: value of %d bytes is shorter than its %d-byte LSN: %w", k[1:], len(v), lsnSize, engines.ErrCorrupt)
	}
	row := engines.Row{Key: append([]byte(nil), k[1:]...), LSN: binary.BigEndian.Uint64(v)}
	if len(v) > lsnSize {
		row.Value = append([]byte(nil), v[lsnSize:]...)
	}
	return row, nil
}

func encodeLSN(lsn uint64) []byte { return binary.BigEndian.AppendUint64(nil, lsn) }

func decodeLSN(v []byte) (uint64, error) {
	if len(v) != lsnSize {
		return 0, fmt.Errorf("pebble: applied lsn of %d bytes, want %d: %w", len(v), lsnSize, engines.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// lsnMerger keeps the highest LSN written to the meta key. Apply calls may
// commit in any order of their LSNs, so each merges its highest LSN into
// metaLSN rather than setting it: the stored value is the maximum, whatever the
// commit order, without reading it first. Restore sets the key, which replaces
// all older operands. Pebble records the merger's name in its OPTIONS file and
// refuses to open the folder with another.
var lsnMerger = &pebbledb.Merger{
	Name: "plugdb.max_lsn.v1",
	Merge: func(key, value []byte) (pebbledb.ValueMerger, error) {
		m := &maxLSN{}
		return m, m.add(value)
	},
}

// maxLSN is a pebble.ValueMerger over 8-byte big-endian LSNs. Max is
// associative and commutative, so partial merges in compactions are exact.
type maxLSN struct{ lsn uint64 }

func (m *maxLSN) add(v []byte) error {
	n, err := decodeLSN(v)
	if err != nil {
		return err
	}
	m.lsn = max(m.lsn, n)
	return nil
}

// MergeNewer adds a newer operand.
func (m *maxLSN) MergeNewer(v []byte) error { return m.add(v) }

// MergeOlder adds an older operand.
func (m *maxLSN) MergeOlder(v []byte) error { return m.add(v) }

// Finish returns the highest LSN.
func (m *maxLSN) Finish(bool) ([]byte, io.Closer, error) { return encodeLSN(m.lsn), nil, nil }

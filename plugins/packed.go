package plugins

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/plugdb/plugdb/engines"
)

// The packed encodings of the Calls stream's blobs (see CallBatch and
// ResultBatch in proto/plugdb/engine/v1/engine.proto). A batch of calls or of
// mutations travels as one bytes field rather than one protobuf message per
// call or mutation: the receiver gets one buffer (protobuf copies a bytes field
// out of the transport's buffer when it decodes a message, so the buffer is the
// receiver's to keep) and decodes keys and values as sub-slices of it, with no
// allocation per key, value or mutation.
//
// All integers are unsigned varints (encoding/binary's Uvarint).
//
//	bytes:     len, then len bytes
//	              (CallBatch.get_keys: one per get; ResultBatch.rows: key, then
//	              value, per result)
//	mutations: count, then per mutation:
//	              op (one byte: engines.Op), lsn, key (bytes), value (bytes)
//	              (ApplyCall.mutations)
//
// Sub-slices handed out have their capacity cut at their end, so appending to
// one never overwrites the bytes after it.

// errMalformed wraps every decoding error.
var errMalformed = fmt.Errorf("malformed packed call data (host and plugin built with different plugdb versions?): %w", engines.ErrInvalidArgument)

// appendBytes appends p, length-prefixed.
func appendBytes(dst, p []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(p)))
	return append(dst, p...)
}

// readBytes reads one length-prefixed byte string from b and returns it (a
// sub-slice of b, nil when empty) and the rest of b.
func readBytes(b []byte) (p, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, errMalformed
	}
	if n == 0 {
		return nil, b[k:], nil
	}
	end := k + int(n)
	return b[k:end:end], b[end:], nil
}

// uvarintSize returns the size of x as a uvarint.
func uvarintSize(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// bytesSize returns the packed size of p.
func bytesSize(p []byte) int { return uvarintSize(uint64(len(p))) + len(p) }

// mutationsSize returns the packed size of batch, for appendMutations' buffer.
func mutationsSize(batch []engines.Mutation) int {
	n := uvarintSize(uint64(len(batch)))
	for _, m := range batch {
		n += 1 + uvarintSize(m.LSN) + bytesSize(m.Key) + bytesSize(m.Value)
	}
	return n
}

// appendMutations appends batch, packed.
func appendMutations(dst []byte, batch []engines.Mutation) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(batch)))
	for _, m := range batch {
		dst = append(dst, byte(m.Op))
		dst = binary.AppendUvarint(dst, m.LSN)
		dst = appendBytes(dst, m.Key)
		dst = appendBytes(dst, m.Value)
	}
	return dst
}

// minMutationSize is the packed size of the smallest mutation: op, lsn and two
// lengths of one byte each.
const minMutationSize = 4

// decodeMutations decodes a packed batch of mutations; their keys and values
// are sub-slices of b. It makes one allocation, the batch's slice.
func decodeMutations(b []byte) ([]engines.Mutation, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k)/minMutationSize {
		return nil, errMalformed
	}
	b = b[k:]
	batch := make([]engines.Mutation, n)
	for i := range batch {
		if len(b) == 0 {
			return nil, errMalformed
		}
		m := &batch[i]
		m.Op = engines.Op(b[0])
		lsn, k := binary.Uvarint(b[1:])
		if k <= 0 {
			return nil, errMalformed
		}
		m.LSN = lsn
		var err error
		if m.Key, b, err = readBytes(b[1+k:]); err != nil {
			return nil, err
		}
		if m.Value, b, err = readBytes(b); err != nil {
			return nil, err
		}
	}
	if len(b) != 0 {
		return nil, errMalformed
	}
	return batch, nil
}

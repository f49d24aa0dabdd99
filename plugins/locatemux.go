package plugins

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/plugins/streamcall"
	partitionerv1 "github.com/plugdb/plugdb/proto/plugdb/partitioner/v1"
)

// Bounds of one Locate message: a call is split (PartitionerClient.Locate) and
// a message closed before either is passed, which keeps messages well under
// gRPC's default 4 MiB limit.
const (
	maxLocateKeys  = 4096    // keys in one call
	maxLocateBytes = 1 << 20 // packed key bytes in one call, and in one message (unless one call is larger)
	maxLocateCalls = 1024    // calls in one message
)

// errClosedPartitioner is returned by a partitioner client used after Close.
var errClosedPartitioner = fmt.Errorf("partitioner plugin client: %w", partitioners.ErrClosed)

// locateMux carries the Locate calls of concurrent callers over one bidi
// stream (streamcall): every call waiting travels in one message, and each
// result goes back to its caller by id. A unary gRPC call per Locate would
// cost a round trip each (about 90 µs on a 2-core machine); this way
// concurrent callers share round trips.
type locateMux = streamcall.Client[*locateCall, locateResult, *partitionerv1.LocateBatch, []locateResult]

// locateCall is a call waiting to be sent.
type locateCall struct {
	id   uint64
	keys [][]byte
	size int // packed size of keys
}

// locateResult is a call's result: its keys' partitions (a sub-slice of the
// received message), or its error.
type locateResult struct {
	id    uint64
	parts []uint32
	err   error
}

func newLocateMux(rpc partitionerv1.PartitionerClient) *locateMux {
	return streamcall.New(streamcall.Codec[*locateCall, locateResult, *partitionerv1.LocateBatch, []locateResult]{
		Open: func(ctx context.Context) (streamcall.Stream[*partitionerv1.LocateBatch, []locateResult], error) {
			s, err := rpc.Locate(ctx)
			return resultsOf[*partitionerv1.LocateBatch](s, err, unpackLocateResults)
		},
		SetID:    func(c *locateCall, id uint64) { c.id = id },
		ID:       func(r locateResult) uint64 { return r.id },
		Pack:     packLocate,
		Unpack:   func(rs []locateResult) []locateResult { return rs },
		MaxBatch: maxLocateCalls,
		Size:     func(c *locateCall) int { return c.size },
		MaxSize:  maxLocateBytes,
	})
}

// locate locates keys (at most maxLocateKeys, taking size bytes packed) into
// out and waits for the result. keys must stay unchanged until it returns;
// out is written only by locate itself.
func locate(ctx context.Context, m *locateMux, keys [][]byte, size int, out []int) error {
	r, err := m.Do(ctx, &locateCall{keys: keys, size: size})
	switch {
	case err != nil:
		return streamCallError(err, errClosedPartitioner)
	case r.err != nil:
		return r.err
	case len(r.parts) != len(out):
		return errUnknownLocate
	}
	for i, p := range r.parts {
		out[i] = int(p)
	}
	return nil
}

// packLocate packs calls into one message.
func packLocate(calls []*locateCall) *partitionerv1.LocateBatch {
	size := 0
	for _, c := range calls {
		size += c.size
	}
	batch := &partitionerv1.LocateBatch{
		Ids:    make([]uint64, len(calls)),
		Counts: make([]uint32, len(calls)),
		Keys:   make([]byte, 0, size),
	}
	for i, c := range calls {
		batch.Ids[i] = c.id
		batch.Counts[i] = uint32(len(c.keys))
		for _, k := range c.keys {
			batch.Keys = appendBytes(batch.Keys, k)
		}
	}
	return batch
}

// errUnknownLocate is a result message this host cannot read.
var errUnknownLocate = errors.New("the partitioner plugin answered in a form this host does not know (plugin built with another plugdb version?)")

// unpackLocateResults appends the results of batch to results. A successful
// result's partitions are a sub-slice of batch's; the number of partitions
// of each is checked by locate, which knows its key count.
func unpackLocateResults(batch *partitionerv1.LocateResults, results []locateResult) ([]locateResult, error) {
	ids := batch.GetIds()
	n := len(ids)
	codeList, msgs := batch.GetCodes(), batch.GetMessages()
	if n == 0 || len(codeList) != n || len(batch.GetCounts()) != n {
		return results, errUnknownLocate
	}
	parts := batch.GetPartitions()
	for i := range n {
		r := locateResult{id: ids[i]}
		if code := codes.Code(codeList[i]); code != codes.OK {
			if len(msgs) == 0 {
				return results, errUnknownLocate
			}
			r.err = fromCode(code, msgs[0])
			msgs = msgs[1:]
		} else {
			k := int(batch.GetCounts()[i])
			if k > len(parts) {
				return results, errUnknownLocate
			}
			r.parts, parts = parts[:k:k], parts[k:]
		}
		results = append(results, r)
	}
	if len(parts) != 0 || len(msgs) != 0 {
		return results, errUnknownLocate
	}
	return results, nil
}

// locateParts converts partitions for the wire.
func locateParts(dst []uint32, parts []int) []uint32 {
	for _, p := range parts {
		dst = append(dst, uint32(p))
	}
	return dst
}

package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"

	"github.com/plugdb/plugdb/partitioners"
	partitionerv1 "github.com/plugdb/plugdb/proto/plugdb/partitioner/v1"
)

// Bounds of one Locate message: a call is split (PartitionerClient.Locate) and
// a message closed before either is passed, which keeps messages well under
// gRPC's default 4 MiB limit.
const (
	maxLocateKeys  = 4096    // keys in one call
	maxLocateBytes = 1 << 20 // packed key bytes in one call, and in one message (unless one call is larger)
)

// errClosedPartitioner is returned by a partitioner client used after Close.
var errClosedPartitioner = fmt.Errorf("partitioner plugin client: %w", partitioners.ErrClosed)

// locateMux multiplexes the Locate calls of concurrent callers over one bidi
// stream, as callMux does for an engine's gets and applies: a sender goroutine
// packs every call that is waiting into one message, a receiver goroutine hands
// each result to its caller by id. A unary gRPC call per Locate would cost a
// round trip each (about 90 µs on a 2-core machine); this way concurrent
// callers share round trips.
type locateMux struct {
	rpc    partitionerv1.PartitionerClient
	nextID atomic.Uint64

	live atomic.Pointer[locateStream] // the open stream, read without mu

	mu     sync.Mutex
	cur    *locateStream
	closed bool
}

// locateStream is one open Locate stream; once broken it is replaced.
type locateStream struct {
	stream partitionerv1.Partitioner_LocateClient
	cancel context.CancelFunc
	queue  chan locateCall
	done   chan struct{} // closed when the stream broke
	err    error         // why; set before done is closed

	mu      sync.Mutex
	pending map[uint64]chan locateResult // by call id; each buffered for one result
	once    sync.Once
}

// locateCall is a call waiting to be sent.
type locateCall struct {
	id   uint64
	keys [][]byte
	size int // packed size of keys
}

// locateResult is a call's result: its keys' partitions (a sub-slice of the
// received message), or its error.
type locateResult struct {
	parts []uint32
	err   error
}

// locateChans recycles the channels of calls whose result was taken.
var locateChans = sync.Pool{New: func() any { return make(chan locateResult, 1) }}

func newLocateMux(rpc partitionerv1.PartitionerClient) *locateMux { return &locateMux{rpc: rpc} }

// stream returns the open stream, opening a new one when there is none.
func (m *locateMux) stream() (*locateStream, error) {
	if s := m.live.Load(); s != nil {
		select {
		case <-s.done:
		default:
			return s, nil
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosedPartitioner
	}
	if m.cur != nil {
		select {
		case <-m.cur.done:
		default:
			return m.cur, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := m.rpc.Locate(ctx)
	if err != nil {
		err = fromStatus(ctx, err) // before cancel: a Canceled here is the connection closing
		cancel()
		return nil, err
	}
	s := &locateStream{
		stream:  stream,
		cancel:  cancel,
		queue:   make(chan locateCall, maxCallsPerBatch),
		done:    make(chan struct{}),
		pending: make(map[uint64]chan locateResult),
	}
	go s.send()
	go s.receive()
	m.cur = s
	m.live.Store(s)
	return s, nil
}

// do locates keys (at most maxLocateKeys) into out and waits for the result.
// keys must stay unchanged until it returns; out is written only by do itself.
func (m *locateMux) do(ctx context.Context, keys [][]byte, out []int) error {
	s, err := m.stream()
	if err != nil {
		return err
	}
	call := locateCall{id: m.nextID.Add(1), keys: keys}
	for _, k := range keys {
		call.size += bytesSize(k)
	}
	result := locateChans.Get().(chan locateResult)
	s.mu.Lock()
	s.pending[call.id] = result
	s.mu.Unlock()

	select {
	case s.queue <- call:
	case <-s.done:
		return s.err
	case <-ctx.Done():
		s.forget(call.id)
		return ctx.Err()
	}
	var r locateResult
	select {
	case r = <-result:
		locateChans.Put(result) // receive dropped it from pending before sending r
	case <-s.done:
		select { // a result may have arrived just before the break
		case r = <-result:
		default:
			return s.err
		}
	case <-ctx.Done():
		s.forget(call.id)
		return ctx.Err()
	}
	if r.err != nil {
		return r.err
	}
	if len(r.parts) != len(out) {
		return errUnknownLocate
	}
	for i, p := range r.parts {
		out[i] = int(p)
	}
	return nil
}

func (s *locateStream) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// send packs the waiting calls into messages of at most maxCallsPerBatch calls
// and (unless one call is larger) maxLocateBytes of keys.
func (s *locateStream) send() {
	var calls []locateCall
	var carry *locateCall // the call that did not fit in the last message
	for {
		var call locateCall
		if carry != nil {
			call, carry = *carry, nil
		} else {
			select {
			case call = <-s.queue:
			case <-s.done:
				return
			}
		}
		calls = append(calls[:0], call)
		size := call.size
		if len(s.queue) == 0 {
			// Yield once so that callers already runnable (typically those just
			// handed their results) queue their next call and join this
			// message (see callMux.send).
			runtime.Gosched()
		}
	more:
		for len(calls) < maxCallsPerBatch {
			select {
			case call = <-s.queue:
				if size+call.size > maxLocateBytes {
					carry = &call
					break more
				}
				calls = append(calls, call)
				size += call.size
			default:
				break more
			}
		}
		err := s.stream.Send(packLocate(calls, size))
		clear(calls) // drop the callers' keys
		if errors.Is(err, io.EOF) {
			// The server ended the stream: receive learns why from Recv
			// (gRPC reports only io.EOF to Send) and fails the stream.
			return
		}
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// packLocate packs calls, whose keys take size bytes packed, into one message.
func packLocate(calls []locateCall, size int) *partitionerv1.LocateBatch {
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

// receive hands each result to its caller (outside the lock callers take).
func (s *locateStream) receive() {
	var ids []uint64
	var results []locateResult
	var to []chan locateResult
	for {
		batch, err := s.stream.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		ids, results, err = unpackLocateResults(batch, ids[:0], results[:0])
		if err != nil {
			s.fail(err)
			return
		}
		to = to[:0]
		s.mu.Lock()
		for _, id := range ids {
			ch, ok := s.pending[id]
			if ok {
				delete(s.pending, id)
			}
			to = append(to, ch) // nil for a call its caller gave up on
		}
		s.mu.Unlock()
		for i, ch := range to {
			if ch != nil {
				ch <- results[i]
			}
		}
		clear(to)
		clear(results)
	}
}

// unpackLocateResults appends the ids and results of batch to ids and
// results. A successful result's partitions are a sub-slice of batch's; the
// number of partitions of each is checked by do, which knows its key count.
func unpackLocateResults(batch *partitionerv1.LocateResults, ids []uint64, results []locateResult) ([]uint64, []locateResult, error) {
	n := len(batch.GetIds())
	codeList, msgs := batch.GetCodes(), batch.GetMessages()
	if n == 0 || len(codeList) != n || len(batch.GetCounts()) != n {
		return ids, results, errUnknownLocate
	}
	parts := batch.GetPartitions()
	ids = append(ids, batch.GetIds()...)
	for i := range n {
		var r locateResult
		if code := codes.Code(codeList[i]); code != codes.OK {
			if len(msgs) == 0 {
				return ids, results, errUnknownLocate
			}
			r.err = fromCode(code, msgs[0])
			msgs = msgs[1:]
		} else {
			k := int(batch.GetCounts()[i])
			if k > len(parts) {
				return ids, results, errUnknownLocate
			}
			r.parts, parts = parts[:k:k], parts[k:]
		}
		results = append(results, r)
	}
	if len(parts) != 0 || len(msgs) != 0 {
		return ids, results, errUnknownLocate
	}
	return ids, results, nil
}

// fail marks the stream broken; every waiting caller gets err.
func (s *locateStream) fail(err error) {
	s.once.Do(func() {
		s.err = fromStatus(context.Background(), err)
		if !IsTransport(s.err) {
			s.err = &TransportError{Err: err}
		}
		s.cancel()
		close(s.done)
	})
}

func (m *locateMux) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.cur != nil {
		m.cur.fail(errClosedPartitioner)
	}
}

// locateParts converts partitions for the wire.
func locateParts(dst []uint32, parts []int) []uint32 {
	for _, p := range parts {
		dst = append(dst, uint32(p))
	}
	return dst
}

package plugins

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"

	"github.com/plugdb/plugdb/engines"
	enginev1 "github.com/plugdb/plugdb/proto/plugdb/engine/v1"
)

// maxCallsPerBatch bounds how many waiting calls travel in one message.
const maxCallsPerBatch = 1024

// callMux multiplexes the unary calls of concurrent callers over one bidi stream:
// a sender goroutine packs every call that is waiting into one message, a
// receiver goroutine hands each result to its caller by id. One unary gRPC call
// per operation would cap the plugin at the cost of a round trip each; this way
// concurrent callers share round trips.
type callMux struct {
	rpc    enginev1.EngineClient
	nextID atomic.Uint64

	live atomic.Pointer[muxStream] // the open stream, read without mu

	mu     sync.Mutex
	cur    *muxStream
	closed bool
}

// muxStream is one open Calls stream; once broken it is replaced by a new one.
type muxStream struct {
	stream enginev1.Engine_CallsClient
	cancel context.CancelFunc
	queue  chan muxCall
	done   chan struct{} // closed when the stream broke
	err    error         // why; set before done is closed

	mu      sync.Mutex
	pending map[uint64]chan muxResult // by call id; each buffered for one result
	once    sync.Once
}

// muxCall is a call waiting to be sent: a get of key, or an apply of the packed
// mutations.
type muxCall struct {
	id        uint64
	apply     bool
	key       []byte // a get's
	mutations []byte // an apply's, packed (appendMutations)
}

// muxResult is a call's result: the row a get found, or the call's error.
type muxResult struct {
	row engines.Row
	err error
}

// resultChans recycles the channels of calls whose result was taken: such a
// channel is in no pending map and empty.
var resultChans = sync.Pool{New: func() any { return make(chan muxResult, 1) }}

func newCallMux(rpc enginev1.EngineClient) *callMux { return &callMux{rpc: rpc} }

// stream returns the open stream, opening a new one when there is none.
func (m *callMux) stream() (*muxStream, error) {
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
		return nil, errClosedClient
	}
	if m.cur != nil {
		select {
		case <-m.cur.done:
		default:
			return m.cur, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := m.rpc.Calls(ctx)
	if err != nil {
		err = fromStatus(ctx, err) // before cancel: a Canceled here is the connection closing
		cancel()
		return nil, err
	}
	s := &muxStream{
		stream:  stream,
		cancel:  cancel,
		queue:   make(chan muxCall, maxCallsPerBatch),
		done:    make(chan struct{}),
		pending: make(map[uint64]chan muxResult),
	}
	go s.send()
	go s.receive()
	m.cur = s
	m.live.Store(s)
	return s, nil
}

// do sends one call and waits for its result. The call's key or mutations must
// stay unchanged until it returns.
func (m *callMux) do(ctx context.Context, call muxCall) (engines.Row, error) {
	s, err := m.stream()
	if err != nil {
		return engines.Row{}, err
	}
	call.id = m.nextID.Add(1)
	result := resultChans.Get().(chan muxResult)
	s.mu.Lock()
	s.pending[call.id] = result
	s.mu.Unlock()

	select {
	case s.queue <- call:
	case <-s.done:
		return engines.Row{}, s.err
	case <-ctx.Done():
		s.forget(call.id)
		return engines.Row{}, ctx.Err()
	}
	select {
	case r := <-result:
		resultChans.Put(result) // receive dropped it from pending before sending r
		return r.row, r.err
	case <-s.done:
		select { // a result may have arrived just before the break
		case r := <-result:
			return r.row, r.err
		default:
			return engines.Row{}, s.err
		}
	case <-ctx.Done():
		s.forget(call.id)
		return engines.Row{}, ctx.Err()
	}
}

func (s *muxStream) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// send packs every waiting call into one message.
func (s *muxStream) send() {
	var calls []muxCall
	for {
		var call muxCall
		select {
		case call = <-s.queue:
		case <-s.done:
			return
		}
		calls = append(calls[:0], call)
		if len(s.queue) == 0 {
			// Yield once so that callers already runnable (typically those
			// just handed their results) queue their next call and join this
			// message: without it, under load, most messages carry one call and
			// the per-message cost of the stream dominates.
			runtime.Gosched()
		}
	more:
		for len(calls) < maxCallsPerBatch {
			select {
			case call = <-s.queue:
				calls = append(calls, call)
			default:
				break more
			}
		}
		err := s.stream.Send(packCalls(calls))
		clear(calls) // drop the callers' keys and mutations
		if errors.Is(err, io.EOF) {
			return // the server ended the stream: receive learns why from Recv
		}
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// packCalls packs calls into one message.
func packCalls(calls []muxCall) *enginev1.CallBatch {
	gets, keyBytes := 0, 0
	for _, c := range calls {
		if !c.apply {
			gets++
			keyBytes += len(c.key)
		}
	}
	batch := &enginev1.CallBatch{}
	if gets > 0 {
		batch.GetIds = make([]uint64, 0, gets)
		batch.GetKeys = make([]byte, 0, keyBytes+2*gets) // 2: a length prefix below 16 KiB (else append grows it)
	}
	if n := len(calls) - gets; n > 0 {
		batch.Applies = make([]*enginev1.ApplyCall, 0, n)
	}
	for _, c := range calls {
		if c.apply {
			batch.Applies = append(batch.Applies, &enginev1.ApplyCall{Id: c.id, Mutations: c.mutations})
			continue
		}
		batch.GetIds = append(batch.GetIds, c.id)
		batch.GetKeys = appendBytes(batch.GetKeys, c.key)
	}
	return batch
}

// errUnknownResults is a result message this host cannot read.
var errUnknownResults = errors.New("the plugin answered calls in a form this host does not know (plugin built with another plugdb version?)")

// receive hands each result to its caller (outside the lock callers take).
func (s *muxStream) receive() {
	var ids []uint64
	var results []muxResult
	var to []chan muxResult
	for {
		batch, err := s.stream.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		ids, results, err = unpackResults(batch, ids[:0], results[:0])
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

// unpackResults appends the ids and results of batch to ids and results. The
// rows' keys and values are sub-slices of batch's rows blob.
func unpackResults(batch *enginev1.ResultBatch, ids []uint64, results []muxResult) ([]uint64, []muxResult, error) {
	n := len(batch.GetIds())
	codeList, lsns, rows, msgs := batch.GetCodes(), batch.GetLsns(), batch.GetRows(), batch.GetMessages()
	if n == 0 || len(codeList) != n || len(lsns) != n {
		return ids, results, errUnknownResults
	}
	ids = append(ids, batch.GetIds()...)
	for i := range n {
		var r muxResult
		var err error
		if r.row.Key, rows, err = readBytes(rows); err != nil {
			return ids, results, errUnknownResults
		}
		if r.row.Value, rows, err = readBytes(rows); err != nil {
			return ids, results, errUnknownResults
		}
		r.row.LSN = lsns[i]
		if code := codes.Code(codeList[i]); code != codes.OK {
			if len(msgs) == 0 {
				return ids, results, errUnknownResults
			}
			r.row, r.err = engines.Row{}, fromCode(code, msgs[0])
			msgs = msgs[1:]
		}
		results = append(results, r)
	}
	if len(rows) != 0 || len(msgs) != 0 {
		return ids, results, errUnknownResults
	}
	return ids, results, nil
}

// fail marks the stream broken; every waiting caller gets err.
func (s *muxStream) fail(err error) {
	s.once.Do(func() {
		s.err = fromStatus(context.Background(), err)
		if !IsTransport(s.err) {
			s.err = &TransportError{Err: err}
		}
		s.cancel()
		close(s.done)
	})
}

func (m *callMux) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.cur != nil {
		m.cur.fail(errClosedClient)
	}
}

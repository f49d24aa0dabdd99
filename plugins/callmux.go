package plugins

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

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
	queue  chan *enginev1.Call
	done   chan struct{} // closed when the stream broke
	err    error         // why; set before done is closed

	mu      sync.Mutex
	pending map[uint64]chan *enginev1.Result // by call id; each buffered for one result
	once    sync.Once
}

// resultChans recycles the channels of calls whose result was taken: such a
// channel is in no pending map and empty.
var resultChans = sync.Pool{New: func() any { return make(chan *enginev1.Result, 1) }}

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
		cancel()
		return nil, fromStatus(err)
	}
	s := &muxStream{
		stream:  stream,
		cancel:  cancel,
		queue:   make(chan *enginev1.Call, maxCallsPerBatch),
		done:    make(chan struct{}),
		pending: make(map[uint64]chan *enginev1.Result),
	}
	go s.send()
	go s.receive()
	m.cur = s
	m.live.Store(s)
	return s, nil
}

// do sends one call and waits for its result.
func (m *callMux) do(ctx context.Context, call *enginev1.Call) (*enginev1.Result, error) {
	s, err := m.stream()
	if err != nil {
		return nil, err
	}
	call.Id = m.nextID.Add(1)
	result := resultChans.Get().(chan *enginev1.Result)
	s.mu.Lock()
	s.pending[call.Id] = result
	s.mu.Unlock()

	select {
	case s.queue <- call:
	case <-s.done:
		return nil, s.err
	case <-ctx.Done():
		s.forget(call.Id)
		return nil, ctx.Err()
	}
	select {
	case r := <-result:
		resultChans.Put(result) // receive dropped it from pending before sending r
		return r, resultError(r)
	case <-s.done:
		select { // a result may have arrived just before the break
		case r := <-result:
			return r, resultError(r)
		default:
			return nil, s.err
		}
	case <-ctx.Done():
		s.forget(call.Id)
		return nil, ctx.Err()
	}
}

func (s *muxStream) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// send packs every waiting call into one message.
func (s *muxStream) send() {
	for {
		var call *enginev1.Call
		select {
		case call = <-s.queue:
		case <-s.done:
			return
		}
		batch := &enginev1.CallBatch{Calls: []*enginev1.Call{call}}
		if len(s.queue) == 0 {
			// Yield once so that callers already runnable (typically those
			// just handed their results) queue their next call and join this
			// message: without it, under load, most messages carry one call and
			// the per-message cost of the stream dominates.
			runtime.Gosched()
		}
	more:
		for len(batch.Calls) < maxCallsPerBatch {
			select {
			case call = <-s.queue:
				batch.Calls = append(batch.Calls, call)
			default:
				break more
			}
		}
		if err := s.stream.Send(batch); err != nil {
			s.fail(err)
			return
		}
	}
}

// receive hands each result to its caller (outside the lock callers take).
func (s *muxStream) receive() {
	var to []chan *enginev1.Result
	for {
		batch, err := s.stream.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		results := batch.GetResults()
		to = to[:0]
		s.mu.Lock()
		for _, r := range results {
			ch, ok := s.pending[r.GetId()]
			if ok {
				delete(s.pending, r.GetId())
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
	}
}

// fail marks the stream broken; every waiting caller gets err.
func (s *muxStream) fail(err error) {
	s.once.Do(func() {
		s.err = fromStatus(err)
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

// Package streamcall carries a client's concurrent calls over one gRPC bidi
// stream: a send loop packs every call waiting into one message, a receive
// loop hands each result to its caller by id. One unary call per request
// would cost each request a new HTTP/2 stream and a round of system calls on
// both sides; this way concurrent callers share them. A broken stream fails
// the calls waiting on it, and the next call opens another.
//
// The router's calls to a node (core/callstream), a host's Replicate calls
// to its replicator plugin (plugins.ReplicatorClient), its Locate calls to
// its partitioner plugin (plugins.PartitionerClient) and its Get and Apply
// calls to its engine plugin (plugins.EngineClient) use it.
package streamcall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/plugdb/plugdb/errdefs"
)

// Stream is the client side of a bidi stream that sends Out and receives In.
type Stream[Out, In any] interface {
	Send(Out) error
	Recv() (In, error)
}

// Codec says how calls and results travel.
type Codec[C, R, Out, In any] struct {
	// Open opens a stream that lives until ctx ends.
	Open func(ctx context.Context) (Stream[Out, In], error)
	// SetID numbers a call; ID reads the number of the call a result answers.
	SetID func(C, uint64)
	ID    func(R) uint64
	// Pack makes one message of waiting calls (at least one, at most
	// MaxBatch, and within MaxSize if Size is set); Unpack returns the results a message carries.
	Pack   func([]C) Out
	Unpack func(In) []R
	// MaxBatch bounds the calls one message carries (1: one each).
	MaxBatch int
	// Size, if set, is the size of a call once packed, and then a message
	// carries calls whose sizes add up to at most MaxSize, unless its first
	// call alone is larger (the caller splits calls that could be). A call
	// that would pass MaxSize waits for the next message.
	Size    func(C) int
	MaxSize int
}

// ErrClosed: the client is closed. It is errdefs.ErrClosed; the error a
// closed client returns wraps it.
var ErrClosed = errdefs.ErrClosed

// errClosed is the error of a call on a closed client.
var errClosed = fmt.Errorf("the call stream's client is %w", ErrClosed)

// StreamError is the error of a call whose stream could not be opened or
// broke before its result came: Err is what the stream failed with (a gRPC
// status error, io.EOF when the server ended it, or ErrClosed).
type StreamError struct{ Err error }

func (e *StreamError) Error() string { return fmt.Sprintf("call stream: %v", e.Err) }
func (e *StreamError) Unwrap() error { return e.Err }

// Client multiplexes calls over one stream at a time.
type Client[C, R, Out, In any] struct {
	codec  Codec[C, R, Out, In]
	nextID atomic.Uint64
	chans  sync.Pool                             // of result channels, once their result was taken
	live   atomic.Pointer[stream[C, R, Out, In]] // cur, read without mu

	mu     sync.Mutex
	cur    *stream[C, R, Out, In]
	closed bool
}

// New returns a client that travels as codec says.
func New[C, R, Out, In any](codec Codec[C, R, Out, In]) *Client[C, R, Out, In] {
	codec.MaxBatch = max(1, codec.MaxBatch)
	return &Client[C, R, Out, In]{codec: codec}
}

// stream is one open stream; once broken it is replaced.
type stream[C, R, Out, In any] struct {
	codec  *Codec[C, R, Out, In]
	s      Stream[Out, In]
	cancel context.CancelFunc
	queue  chan C
	done   chan struct{} // closed when the stream broke
	err    error         // why; set before done is closed
	once   sync.Once

	mu      sync.Mutex
	pending map[uint64]chan R // by call id, each buffered for one result
}

// Do sends call and waits for its result. The error is ctx's if ctx ended
// first (the call may have been sent), a *StreamError if its stream failed
// first, or ErrClosed after Close.
func (c *Client[C, R, Out, In]) Do(ctx context.Context, call C) (R, error) {
	var zero R
	s, err := c.stream(ctx)
	if err != nil {
		return zero, err
	}
	id := c.nextID.Add(1)
	c.codec.SetID(call, id)
	result, _ := c.chans.Get().(chan R)
	if result == nil {
		result = make(chan R, 1)
	}
	s.mu.Lock()
	s.pending[id] = result
	s.mu.Unlock()
	select {
	case s.queue <- call:
	case <-s.done:
		return zero, &StreamError{Err: s.err}
	case <-ctx.Done():
		s.forget(id)
		return zero, ctx.Err()
	}
	select {
	case r := <-result:
		c.chans.Put(result) // receive dropped it from pending before sending r
		return r, nil
	case <-s.done:
		select { // the result may have arrived just before the stream broke
		case r := <-result:
			return r, nil
		default:
			return zero, &StreamError{Err: s.err}
		}
	case <-ctx.Done():
		s.forget(id)
		return zero, ctx.Err()
	}
}

// Close ends the stream: waiting calls fail, later ones get ErrClosed.
func (c *Client[C, R, Out, In]) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cur != nil {
		c.cur.fail(errClosed)
	}
}

// stream returns the open stream, opening one when there is none; opening
// waits at most until ctx ends.
func (c *Client[C, R, Out, In]) stream(ctx context.Context) (*stream[C, R, Out, In], error) {
	if s := c.live.Load(); s != nil {
		select {
		case <-s.done:
		default:
			return s, nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if s := c.cur; s != nil {
		select {
		case <-s.done:
		default:
			return s, nil
		}
	}
	sctx, cancel := context.WithCancel(context.Background())
	stopWatch := context.AfterFunc(ctx, cancel) // the caller gave up: stop opening
	st, err := c.codec.Open(sctx)
	if !stopWatch() {
		cancel()
		return nil, ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, &StreamError{Err: err}
	}
	s := &stream[C, R, Out, In]{
		codec: &c.codec, s: st, cancel: cancel,
		queue: make(chan C, c.codec.MaxBatch), done: make(chan struct{}), pending: map[uint64]chan R{},
	}
	go s.send()
	go s.receive()
	c.cur = s
	c.live.Store(s)
	return s, nil
}

func (s *stream[C, R, Out, In]) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// send packs every waiting call into one message, within MaxBatch calls
// and, with Size, MaxSize.
func (s *stream[C, R, Out, In]) send() {
	calls := make([]C, 0, s.codec.MaxBatch)
	var carry C // the call that did not fit in the last message
	carried := false
	for {
		var call C
		if carried {
			call, carried = carry, false
			carry = *new(C)
		} else {
			select {
			case call = <-s.queue:
			case <-s.done:
				return
			}
		}
		calls = append(calls[:0], call)
		size := 0
		if s.codec.Size != nil {
			size = s.codec.Size(call)
		}
		if s.codec.MaxBatch > 1 && len(s.queue) == 0 {
			// Yield once, so that callers already runnable queue their calls
			// and join this message: under load, most messages would carry
			// one call otherwise.
			runtime.Gosched()
		}
	more:
		for len(calls) < s.codec.MaxBatch {
			select {
			case call = <-s.queue:
				if s.codec.Size != nil {
					n := s.codec.Size(call)
					if size+n > s.codec.MaxSize {
						carry, carried = call, true
						break more
					}
					size += n
				}
				calls = append(calls, call)
			default:
				break more
			}
		}
		err := s.s.Send(s.codec.Pack(calls))
		clear(calls) // drop the callers' requests
		if errors.Is(err, io.EOF) {
			return // the server ended the stream: receive learns why
		}
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// receive hands each result to its caller.
func (s *stream[C, R, Out, In]) receive() {
	for {
		in, err := s.s.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		for _, r := range s.codec.Unpack(in) {
			id := s.codec.ID(r)
			s.mu.Lock()
			ch, ok := s.pending[id]
			delete(s.pending, id)
			s.mu.Unlock()
			if ok {
				ch <- r
			}
		}
	}
}

// fail marks the stream broken: every waiting call hears err.
func (s *stream[C, R, Out, In]) fail(err error) {
	s.once.Do(func() {
		s.err = err
		s.cancel()
		close(s.done)
	})
}

// ServerStream is the server side of a bidi stream that receives In and
// sends Out.
type ServerStream[In, Out any] interface {
	Recv() (In, error)
	Send(Out) error
}

// Serve answers the calls of a stream: every call a received message
// carries (unpack) runs in its own goroutine (handle), and the results that
// are ready travel packed into one message (pack, at most maxBatch each).
// It returns once the client closed the stream (nil) or it broke (the
// error), and every call it started has been handled; after a failed send it
// keeps draining results, so no call blocks.
func Serve[In, Out, C, R any](stream ServerStream[In, Out], unpack func(In) []C, handle func(C) R, pack func([]R) Out, maxBatch int) error {
	maxBatch = max(1, maxBatch)
	results := make(chan R, maxBatch)
	sent := make(chan error, 1)
	go func() {
		var err error
		batch := make([]R, 0, maxBatch)
		for r := range results {
			batch = append(batch[:0], r)
		more:
			for len(batch) < maxBatch {
				select {
				case r, ok := <-results:
					if !ok {
						break more
					}
					batch = append(batch, r)
				default:
					break more
				}
			}
			if err == nil {
				err = stream.Send(pack(batch))
			}
			clear(batch)
		}
		sent <- err
	}()
	var calls sync.WaitGroup
	var recvErr error
	for {
		in, err := stream.Recv()
		if err != nil {
			recvErr = err
			break
		}
		for _, c := range unpack(in) {
			calls.Add(1)
			go func() {
				defer calls.Done()
				results <- handle(c)
			}()
		}
	}
	calls.Wait()
	close(results)
	sendErr := <-sent
	if errors.Is(recvErr, io.EOF) {
		return sendErr
	}
	return recvErr
}

// ServeInTurn answers the messages of a stream one at a time: handle makes
// the message of results of all the calls a received message carries, and it
// is sent before the next message is read. For calls that are quick to
// answer together (a partitioner's Locate), this beats Serve: no goroutine
// per call, and the calls a client queues meanwhile travel together in its
// next message. It returns once the client closed the stream (nil), or it
// broke or Recv failed (the error).
func ServeInTurn[In, Out any](stream ServerStream[In, Out], handle func(In) Out) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(handle(in)); err != nil {
			return err
		}
	}
}

package plugins

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	replicatorv1 "github.com/plugdb/plugdb/proto/plugdb/replicator/v1"
	"github.com/plugdb/plugdb/replicators"
)

// Replicates serves the host's statements over one stream: each call runs
// as Replicate would, in its own goroutine, within the time its caller still
// waits; results go back as they are ready. It returns once the host closed
// the stream (or it broke) and every call it started has been answered.
func (s *replicatorServer) Replicates(stream replicatorv1.Replicator_ReplicatesServer) error {
	r, err := s.replicator()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	results := make(chan *replicatorv1.ReplicateResult, 64)
	sent := make(chan error, 1)
	go func() {
		var err error
		for res := range results { // after a failed send, drain: no call blocks
			if err == nil {
				err = stream.Send(res)
			}
		}
		sent <- err
	}()
	var calls sync.WaitGroup
	var recvErr error
	for {
		call, err := stream.Recv()
		if err != nil {
			recvErr = err
			break
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			results <- replicateOne(ctx, r, call)
		}()
	}
	calls.Wait()
	close(results)
	sendErr := <-sent
	if errors.Is(recvErr, io.EOF) {
		return sendErr
	}
	return recvErr
}

// replicateOne runs one call of a Replicates stream.
func replicateOne(ctx context.Context, r replicators.Replicator, call *replicatorv1.ReplicateCall) *replicatorv1.ReplicateResult {
	res := &replicatorv1.ReplicateResult{Id: call.GetId()}
	if t := call.GetTimeoutUs(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Microsecond)
		defer cancel()
	}
	st, err := statementFromProto(call.GetRequest().GetStatement())
	if err == nil {
		err = r.Replicate(ctx, st, ackFromProto(call.GetRequest().GetAck()))
	}
	if err != nil {
		s := status.Convert(toStatusByTable(err))
		res.Code, res.Message = uint32(s.Code()), s.Message()
	}
	return res
}

// replicateMux carries the host's Replicate calls over one Replicates
// stream, opened on first use and again after it broke; a plugin without
// the method (UNIMPLEMENTED) is called unary from then on.
type replicateMux struct {
	rpc    replicatorv1.ReplicatorClient
	nextID atomic.Uint64
	unary  atomic.Bool

	mu     sync.Mutex
	cur    *replicateStream
	closed bool
}

// replicateStream is one open Replicates stream.
type replicateStream struct {
	stream replicatorv1.Replicator_ReplicatesClient
	cancel context.CancelFunc
	sendMu sync.Mutex    // one Send at a time
	done   chan struct{} // closed when the stream broke
	err    error         // why; set before done is closed
	once   sync.Once

	mu      sync.Mutex
	pending map[uint64]chan *replicatorv1.ReplicateResult
}

// errReplicateUnary: the plugin has no Replicates; the caller goes unary.
var errReplicateUnary = errors.New("the replicator plugin does not serve Replicates")

// replicate sends one statement and waits for its result: nil, the error
// its code maps to, or (stream broken, ctx ended) an error as a unary call
// would have returned. errReplicateUnary means: call Replicate instead.
func (m *replicateMux) replicate(ctx context.Context, req *replicatorv1.ReplicateRequest) error {
	if m.unary.Load() {
		return errReplicateUnary
	}
	call := &replicatorv1.ReplicateCall{Request: req}
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return fromStatus(ctx, status.FromContextError(context.DeadlineExceeded).Err())
		}
		call.TimeoutUs = max(1, left.Microseconds())
	}
	s, err := m.stream()
	if err != nil {
		return err
	}
	call.Id = m.nextID.Add(1)
	result := make(chan *replicatorv1.ReplicateResult, 1)
	s.mu.Lock()
	s.pending[call.Id] = result
	s.mu.Unlock()
	s.sendMu.Lock()
	err = s.stream.Send(call)
	s.sendMu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) { // on EOF, receive learns the stream's status
		s.fail(err)
	}
	select {
	case r := <-result:
		return resultError(r)
	case <-s.done:
		select { // the result may have arrived just before the break
		case r := <-result:
			return resultError(r)
		default:
		}
		if status.Code(s.err) == codes.Unimplemented {
			m.unary.Store(true)
			return errReplicateUnary
		}
		return fromStatus(ctx, s.err)
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.pending, call.Id)
		s.mu.Unlock()
		return fromStatus(ctx, status.FromContextError(ctx.Err()).Err())
	}
}

func resultError(r *replicatorv1.ReplicateResult) error {
	if code := codes.Code(r.GetCode()); code != codes.OK {
		return fromCode(code, r.GetMessage())
	}
	return nil
}

// stream returns the open stream, opening one when there is none.
func (m *replicateMux) stream() (*replicateStream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errReplicateUnary // the plugin answers as its closed replicator does
	}
	if s := m.cur; s != nil {
		select {
		case <-s.done:
		default:
			return s, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := m.rpc.Replicates(ctx)
	if err != nil {
		err = fromStatus(ctx, err)
		cancel()
		return nil, err
	}
	s := &replicateStream{stream: stream, cancel: cancel, done: make(chan struct{}), pending: map[uint64]chan *replicatorv1.ReplicateResult{}}
	go s.receive()
	m.cur = s
	return s, nil
}

// receive hands each result to its caller.
func (s *replicateStream) receive() {
	for {
		res, err := s.stream.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		ch, ok := s.pending[res.GetId()]
		delete(s.pending, res.GetId())
		s.mu.Unlock()
		if ok {
			ch <- res // buffered for one result
		}
	}
}

// fail marks the stream broken: every waiting caller hears err.
func (s *replicateStream) fail(err error) {
	s.once.Do(func() {
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "the replicator plugin ended the Replicates stream")
		}
		s.err = err
		s.cancel()
		close(s.done)
	})
}

func (m *replicateMux) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.cur != nil {
		m.cur.fail(status.Error(codes.Unavailable, "the replicator client is closed"))
	}
}

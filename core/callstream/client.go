package callstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Client is a plugdb.v1.KV client whose Get, Put, Create, Update, Delete and
// Batch travel over one KVCalls stream, shared by every concurrent caller;
// the other methods (Scan, Status) are the unary ones of the embedded
// client. Errors are the gRPC status errors the unary methods would return:
// a call whose stream broke fails with Unavailable (a write's outcome is then
// unknown, as with a unary call whose connection broke). A node without
// KVCalls (an older plugdb) is called unary.
type Client struct {
	plugdbv1.KVClient
	rpc    nodev1.KVCallsClient
	nextID atomic.Uint64
	unary  atomic.Bool // the node has no KVCalls service

	mu     sync.Mutex
	cur    *callStream
	closed bool
}

// NewClient returns a client of the node at the other end of cc.
func NewClient(cc grpc.ClientConnInterface) *Client {
	return &Client{KVClient: plugdbv1.NewKVClient(cc), rpc: nodev1.NewKVCallsClient(cc)}
}

// errUnary: the node does not serve KVCalls; the caller falls back to unary.
var errUnary = errors.New("the node does not serve KVCalls")

// Close ends the stream; later calls fail with Unavailable. It does not close
// the connection, which its owner closes.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cur != nil {
		c.cur.fail(status.Error(codes.Unavailable, "the client is closed"))
	}
}

// Get is plugdb.v1.KV's Get.
func (c *Client) Get(ctx context.Context, req *plugdbv1.GetRequest, opts ...grpc.CallOption) (*plugdbv1.GetResponse, error) {
	res, err := c.call(ctx, &nodev1.Call{Request: &nodev1.Call_Get{Get: req}})
	switch {
	case errors.Is(err, errUnary):
		return c.KVClient.Get(ctx, req, opts...)
	case err != nil:
		return nil, err
	case res.GetGet() == nil:
		return nil, errNoResponse("get")
	}
	return res.GetGet(), nil
}

// Put is plugdb.v1.KV's Put.
func (c *Client) Put(ctx context.Context, req *plugdbv1.PutRequest, opts ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
	return c.write(ctx, &nodev1.Call{Request: &nodev1.Call_Put{Put: req}}, func() (*plugdbv1.WriteResponse, error) { return c.KVClient.Put(ctx, req, opts...) })
}

// Create is plugdb.v1.KV's Create.
func (c *Client) Create(ctx context.Context, req *plugdbv1.PutRequest, opts ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
	return c.write(ctx, &nodev1.Call{Request: &nodev1.Call_Create{Create: req}}, func() (*plugdbv1.WriteResponse, error) { return c.KVClient.Create(ctx, req, opts...) })
}

// Update is plugdb.v1.KV's Update.
func (c *Client) Update(ctx context.Context, req *plugdbv1.PutRequest, opts ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
	return c.write(ctx, &nodev1.Call{Request: &nodev1.Call_Update{Update: req}}, func() (*plugdbv1.WriteResponse, error) { return c.KVClient.Update(ctx, req, opts...) })
}

// Delete is plugdb.v1.KV's Delete.
func (c *Client) Delete(ctx context.Context, req *plugdbv1.DeleteRequest, opts ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
	return c.write(ctx, &nodev1.Call{Request: &nodev1.Call_Delete{Delete: req}}, func() (*plugdbv1.WriteResponse, error) { return c.KVClient.Delete(ctx, req, opts...) })
}

// Batch is plugdb.v1.KV's Batch (atomic, as ever: it travels as one call).
func (c *Client) Batch(ctx context.Context, req *plugdbv1.BatchRequest, opts ...grpc.CallOption) (*plugdbv1.BatchResponse, error) {
	res, err := c.call(ctx, &nodev1.Call{Request: &nodev1.Call_Batch{Batch: req}})
	switch {
	case errors.Is(err, errUnary):
		return c.KVClient.Batch(ctx, req, opts...)
	case err != nil:
		return nil, err
	case res.GetBatch() == nil:
		return nil, errNoResponse("batch")
	}
	return res.GetBatch(), nil
}

func (c *Client) write(ctx context.Context, call *nodev1.Call, unary func() (*plugdbv1.WriteResponse, error)) (*plugdbv1.WriteResponse, error) {
	res, err := c.call(ctx, call)
	switch {
	case errors.Is(err, errUnary):
		return unary()
	case err != nil:
		return nil, err
	case res.GetWrite() == nil:
		return nil, errNoResponse("write")
	}
	return res.GetWrite(), nil
}

func errNoResponse(what string) error {
	return status.Errorf(codes.Internal, "the node answered a %s without its response (a node of another plugdb version?)", what)
}

// call sends one call over the stream and waits for its result; a failed
// call's error is its status error.
func (c *Client) call(ctx context.Context, call *nodev1.Call) (*nodev1.Result, error) {
	if c.unary.Load() {
		return nil, errUnary
	}
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return nil, status.FromContextError(context.DeadlineExceeded).Err()
		}
		call.TimeoutUs = max(1, left.Microseconds())
	}
	s, err := c.stream(ctx)
	if err != nil {
		return nil, err
	}
	call.Id = c.nextID.Add(1)
	result := make(chan *nodev1.Result, 1)
	s.mu.Lock()
	s.pending[call.Id] = result
	s.mu.Unlock()
	select {
	case s.queue <- call:
	case <-s.done:
		return nil, c.streamErr(s)
	case <-ctx.Done():
		s.forget(call.Id)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	select {
	case r := <-result:
		return r, resultErr(r)
	case <-s.done:
		select { // the result may have arrived just before the stream broke
		case r := <-result:
			return r, resultErr(r)
		default:
			return nil, c.streamErr(s)
		}
	case <-ctx.Done():
		s.forget(call.Id)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// resultErr is a result's status as an error (nil for success).
func resultErr(r *nodev1.Result) error {
	if len(r.GetStatus()) == 0 {
		return nil
	}
	var sp spb.Status
	if err := proto.Unmarshal(r.GetStatus(), &sp); err != nil {
		return status.Errorf(codes.Internal, "the node answered with a status this router cannot read: %v", err)
	}
	if codes.Code(sp.GetCode()) == codes.OK {
		return status.Errorf(codes.Internal, "the node answered a failed call with status OK")
	}
	return status.FromProto(&sp).Err()
}

// streamErr is the error of a call whose stream broke; a node without the
// KVCalls service switches the client to unary calls.
func (c *Client) streamErr(s *callStream) error {
	if status.Code(s.err) == codes.Unimplemented {
		c.unary.Store(true)
		return errUnary
	}
	return s.err
}

// callStream is one open Calls stream; once broken it is replaced.
type callStream struct {
	stream nodev1.KVCalls_CallsClient
	cancel context.CancelFunc
	queue  chan *nodev1.Call
	done   chan struct{} // closed when the stream broke
	err    error         // why, as an Unavailable status; set before done is closed
	once   sync.Once

	mu      sync.Mutex
	pending map[uint64]chan *nodev1.Result // by call id
}

// stream returns the open stream, opening one when there is none. Opening
// waits for the connection at most until ctx ends.
func (c *Client) stream(ctx context.Context) (*callStream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, status.Error(codes.Unavailable, "the client is closed")
	}
	if s := c.cur; s != nil {
		select {
		case <-s.done:
			if status.Code(s.err) == codes.Unimplemented {
				c.unary.Store(true)
				return nil, errUnary
			}
		default:
			return s, nil
		}
	}
	sctx, cancel := context.WithCancel(context.Background())
	stopWatch := context.AfterFunc(ctx, cancel) // the caller gave up: stop opening
	stream, err := c.rpc.Calls(sctx)
	if !stopWatch() {
		cancel()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		cancel()
		return nil, unavailable(err)
	}
	s := &callStream{
		stream:  stream,
		cancel:  cancel,
		queue:   make(chan *nodev1.Call, maxBatch),
		done:    make(chan struct{}),
		pending: map[uint64]chan *nodev1.Result{},
	}
	go s.send()
	go s.receive()
	c.cur = s
	return s, nil
}

func (s *callStream) forget(id uint64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// send packs every waiting call into one message.
func (s *callStream) send() {
	calls := make([]*nodev1.Call, 0, 64)
	for {
		var call *nodev1.Call
		select {
		case call = <-s.queue:
		case <-s.done:
			return
		}
		calls = append(calls[:0], call)
		if len(s.queue) == 0 {
			// Yield once, so that callers already runnable queue their calls
			// and join this message: under load, most messages would carry
			// one call otherwise.
			runtime.Gosched()
		}
	more:
		for len(calls) < maxBatch {
			select {
			case call = <-s.queue:
				calls = append(calls, call)
			default:
				break more
			}
		}
		err := s.stream.Send(&nodev1.CallBatch{Calls: calls})
		clear(calls)
		if errors.Is(err, io.EOF) {
			return // the node ended the stream: receive learns why
		}
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// receive hands each result to its caller.
func (s *callStream) receive() {
	for {
		batch, err := s.stream.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		for _, r := range batch.GetResults() {
			s.mu.Lock()
			ch, ok := s.pending[r.GetId()]
			delete(s.pending, r.GetId())
			s.mu.Unlock()
			if ok {
				ch <- r // buffered for one result
			}
		}
	}
}

// fail marks the stream broken: every waiting caller gets err.
func (s *callStream) fail(err error) {
	s.once.Do(func() {
		s.err = unavailable(err)
		s.cancel()
		close(s.done)
	})
}

// unavailable makes a stream error an Unavailable status (which the router
// retries), keeping Unimplemented (a node without KVCalls) as it is.
func unavailable(err error) error {
	st, ok := status.FromError(err)
	if ok && (st.Code() == codes.Unavailable || st.Code() == codes.Unimplemented) {
		return err
	}
	return status.Error(codes.Unavailable, fmt.Sprintf("the call stream to the node broke: %v", err))
}

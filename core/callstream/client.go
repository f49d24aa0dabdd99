package callstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/plugdb/plugdb/plugins/streamcall"
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
	calls *streamcall.Client[*nodev1.Call, *nodev1.Result, *nodev1.CallBatch, *nodev1.ResultBatch]
	unary atomic.Bool // the node has no KVCalls service
}

// NewClient returns a client of the node at the other end of cc.
func NewClient(cc grpc.ClientConnInterface) *Client {
	rpc := nodev1.NewKVCallsClient(cc)
	return &Client{KVClient: plugdbv1.NewKVClient(cc), calls: streamcall.New(streamcall.Codec[*nodev1.Call, *nodev1.Result, *nodev1.CallBatch, *nodev1.ResultBatch]{
		Open: func(ctx context.Context) (streamcall.Stream[*nodev1.CallBatch, *nodev1.ResultBatch], error) {
			return rpc.Calls(ctx)
		},
		SetID:    func(c *nodev1.Call, id uint64) { c.Id = id },
		ID:       func(r *nodev1.Result) uint64 { return r.GetId() },
		Pack:     func(calls []*nodev1.Call) *nodev1.CallBatch { return &nodev1.CallBatch{Calls: slices.Clone(calls)} },
		Unpack:   func(b *nodev1.ResultBatch) []*nodev1.Result { return b.GetResults() },
		MaxBatch: maxBatch,
	})}
}

// errUnary: the node does not serve KVCalls; the caller falls back to unary.
var errUnary = errors.New("the node does not serve KVCalls")

// Close ends the stream; later calls fail with Unavailable. It does not close
// the connection, which its owner closes.
func (c *Client) Close() { c.calls.Close() }

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
// call's error is its status error (Unavailable if its stream broke, as a
// unary call whose connection broke).
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
	r, err := c.calls.Do(ctx, call)
	var broke *streamcall.StreamError
	switch {
	case errors.Is(err, streamcall.ErrClosed):
		return nil, status.Error(codes.Unavailable, "the client is closed")
	case errors.As(err, &broke) && status.Code(broke.Err) == codes.Unimplemented:
		c.unary.Store(true) // a node without the KVCalls service
		return nil, errUnary
	case errors.As(err, &broke):
		return nil, unavailable(broke.Err)
	case err != nil:
		return nil, status.FromContextError(err).Err()
	}
	return r, resultErr(r)
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

// unavailable makes a stream error an Unavailable status (which the router
// retries).
func unavailable(err error) error {
	if status.Code(err) == codes.Unavailable {
		return err
	}
	return status.Error(codes.Unavailable, fmt.Sprintf("the call stream to the node broke: %v", err))
}

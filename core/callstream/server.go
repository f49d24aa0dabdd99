// Package callstream carries a router's concurrent plugdb.v1.KV calls to one
// node over one gRPC stream (plugdb.node.v1.KVCalls): the client packs every
// call waiting to be sent into one message, the server runs each call as the
// KV method it names would and packs every answer ready into one message.
// One unary call per request would cost each request a stream of its own and
// a round of system calls on both sides; this way concurrent requests share
// them, and the node sees them together (so its write loop groups them into
// one replicated statement).
package callstream

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/plugdb/plugdb/plugins/streamcall"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// maxBatch bounds the calls (or results) one message carries.
const maxBatch = 1024

// Server serves KVCalls by calling a plugdb.v1.KV server.
type Server struct {
	nodev1.UnimplementedKVCallsServer
	kv plugdbv1.KVServer
}

// NewServer returns a KVCalls server that answers each call through kv.
func NewServer(kv plugdbv1.KVServer) *Server { return &Server{kv: kv} }

// Register returns a function that registers a KVCalls server over kv on a
// gRPC server (the form core/server.Start takes).
func Register(kv plugdbv1.KVServer) func(*grpc.Server) {
	return func(s *grpc.Server) { nodev1.RegisterKVCallsServer(s, NewServer(kv)) }
}

// Calls runs every call it receives, each in its own goroutine, and sends the
// results as they are ready (streamcall.Serve). It returns once the caller
// closed the stream (or it broke) and every call it started has been
// answered or dropped.
func (s *Server) Calls(stream nodev1.KVCalls_CallsServer) error {
	ctx := stream.Context()
	return streamcall.Serve(stream,
		func(b *nodev1.CallBatch) []*nodev1.Call { return b.GetCalls() },
		func(c *nodev1.Call) *nodev1.Result { return s.serve(ctx, c) },
		func(rs []*nodev1.Result) *nodev1.ResultBatch { return &nodev1.ResultBatch{Results: slices.Clone(rs)} },
		maxBatch)
}

// serve answers one call through the KV server, within the call's timeout.
func (s *Server) serve(ctx context.Context, c *nodev1.Call) *nodev1.Result {
	if t := c.GetTimeoutUs(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Microsecond)
		defer cancel()
	}
	res := &nodev1.Result{Id: c.GetId()}
	var err error
	switch req := c.GetRequest().(type) {
	case *nodev1.Call_Get:
		var resp *plugdbv1.GetResponse
		if resp, err = s.kv.Get(ctx, req.Get); err == nil {
			res.Response = &nodev1.Result_Get{Get: resp}
		}
	case *nodev1.Call_Put:
		err = write(res, func() (*plugdbv1.WriteResponse, error) { return s.kv.Put(ctx, req.Put) })
	case *nodev1.Call_Create:
		err = write(res, func() (*plugdbv1.WriteResponse, error) { return s.kv.Create(ctx, req.Create) })
	case *nodev1.Call_Update:
		err = write(res, func() (*plugdbv1.WriteResponse, error) { return s.kv.Update(ctx, req.Update) })
	case *nodev1.Call_Delete:
		err = write(res, func() (*plugdbv1.WriteResponse, error) { return s.kv.Delete(ctx, req.Delete) })
	case *nodev1.Call_Batch:
		var resp *plugdbv1.BatchResponse
		if resp, err = s.kv.Batch(ctx, req.Batch); err == nil {
			res.Response = &nodev1.Result_Batch{Batch: resp}
		}
	default:
		err = status.Errorf(codes.InvalidArgument, "call %d names no method this node knows (allowed: get, put, create, update, delete, batch); is the router of another plugdb version?", c.GetId())
	}
	if err != nil {
		res.Response = nil
		res.Status = marshalStatus(err)
	}
	return res
}

func write(res *nodev1.Result, call func() (*plugdbv1.WriteResponse, error)) error {
	resp, err := call()
	if err == nil {
		res.Response = &nodev1.Result_Write{Write: resp}
	}
	return err
}

// marshalStatus encodes err as the gRPC status a unary call would have
// answered with (a context error as DeadlineExceeded or Canceled).
func marshalStatus(err error) []byte {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	b, merr := proto.Marshal(st.Proto())
	if merr != nil {
		b, _ = proto.Marshal(status.New(codes.Internal, fmt.Sprintf("encode the status of a call: %v (the call failed: %v)", merr, err)).Proto())
	}
	return b
}

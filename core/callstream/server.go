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
	"io"
	"slices"
	"sync"
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

	drain     chan struct{} // closed by Drain
	drainOnce sync.Once
	readers   sync.WaitGroup // the goroutines reading the streams
}

// NewServer returns a KVCalls server that answers each call through kv.
func NewServer(kv plugdbv1.KVServer) *Server { return &Server{kv: kv, drain: make(chan struct{})} }

// Register registers the server on a gRPC server (the form core/server.Start
// takes).
func (s *Server) Register(g *grpc.Server) { nodev1.RegisterKVCallsServer(g, s) }

// Register returns a function that registers a KVCalls server over kv on a
// gRPC server (the form core/server.Start takes).
func Register(kv plugdbv1.KVServer) func(*grpc.Server) { return NewServer(kv).Register }

// Drain has every stream, now and later, take no more calls: each answers
// the calls it took and ends, so that a gRPC server's graceful stop does not
// wait for its clients (a router keeps its stream to a node open) to close
// them. A call the client sent meanwhile fails there as on a broken stream
// (Unavailable), and the client's next call opens another stream.
func (s *Server) Drain() { s.drainOnce.Do(func() { close(s.drain) }) }

// Wait waits for the goroutines that read the streams, which end with
// their streams: call it once the gRPC server has stopped.
func (s *Server) Wait() { s.readers.Wait() }

// Calls runs every call it receives, each in its own goroutine, and sends the
// results as they are ready (streamcall.Serve). It returns once the caller
// closed the stream (or it broke) or the server drains, and every call it
// started has been answered or dropped.
func (s *Server) Calls(stream nodev1.KVCalls_CallsServer) error {
	ctx := stream.Context()
	return streamcall.Serve(s.draining(stream),
		func(b *nodev1.CallBatch) []*nodev1.Call { return b.GetCalls() },
		func(c *nodev1.Call) *nodev1.Result { return s.serve(ctx, c) },
		func(rs []*nodev1.Result) *nodev1.ResultBatch { return &nodev1.ResultBatch{Results: slices.Clone(rs)} },
		maxBatch)
}

// drainStream is a KVCalls stream whose Recv ends (io.EOF) when the server
// drains; a reader goroutine does the stream's own Recv.
type drainStream struct {
	nodev1.KVCalls_CallsServer
	in    <-chan received
	drain <-chan struct{}
}

type received struct {
	batch *nodev1.CallBatch
	err   error
}

func (s *Server) draining(stream nodev1.KVCalls_CallsServer) *drainStream {
	in := make(chan received)
	s.readers.Go(func() {
		for {
			b, err := stream.Recv()
			select {
			case in <- received{b, err}:
			case <-stream.Context().Done(): // the handler returned
				return
			}
			if err != nil {
				return
			}
		}
	})
	return &drainStream{KVCalls_CallsServer: stream, in: in, drain: s.drain}
}

func (d *drainStream) Recv() (*nodev1.CallBatch, error) {
	select {
	case <-d.drain:
		return nil, io.EOF
	default:
	}
	select {
	case r := <-d.in:
		return r.batch, r.err
	case <-d.drain:
		return nil, io.EOF
	}
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

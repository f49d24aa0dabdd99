package callstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/internal/testutil"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// fakeKV answers gets with the key as value, puts with the value's length as
// LSN, refuses keys "wrong" with an ErrorInfo, and blocks on "block" until
// its context ends.
type fakeKV struct {
	plugdbv1.UnimplementedKVServer
	mu        sync.Mutex
	deadlines []bool // per blocked call: whether its context had a deadline
}

func (f *fakeKV) Get(ctx context.Context, req *plugdbv1.GetRequest) (*plugdbv1.GetResponse, error) {
	switch string(req.GetKey()) {
	case "wrong":
		st, _ := status.New(codes.FailedPrecondition, "key belongs to partition 1").
			WithDetails(&errdetails.ErrorInfo{Reason: "WRONG_PARTITION", Metadata: map[string]string{"owner": "1"}})
		return nil, st.Err()
	case "block":
		_, ok := ctx.Deadline()
		f.mu.Lock()
		f.deadlines = append(f.deadlines, ok)
		f.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err() // a plain context error, as a handler may return
	}
	return &plugdbv1.GetResponse{Key: req.GetKey(), Value: append([]byte("v-"), req.GetKey()...)}, nil
}

func (f *fakeKV) Put(_ context.Context, req *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	return &plugdbv1.WriteResponse{Lsn: uint64(len(req.GetValue()))}, nil
}

func (f *fakeKV) Batch(_ context.Context, req *plugdbv1.BatchRequest) (*plugdbv1.BatchResponse, error) {
	lsns := make([]uint64, len(req.GetOps()))
	for i := range lsns {
		lsns[i] = uint64(i + 1)
	}
	return &plugdbv1.BatchResponse{Lsns: lsns}, nil
}

// countingServer counts the CallBatch messages and calls the server received.
type countingServer struct {
	*Server
	mu              sync.Mutex
	messages, calls int
}

func (c *countingServer) Calls(stream nodev1.KVCalls_CallsServer) error {
	return c.Server.Calls(countingStream{stream, c})
}

type countingStream struct {
	nodev1.KVCalls_CallsServer
	c *countingServer
}

func (s countingStream) Recv() (*nodev1.CallBatch, error) {
	b, err := s.KVCalls_CallsServer.Recv()
	if err == nil {
		s.c.mu.Lock()
		s.c.messages++
		s.c.calls += len(b.GetCalls())
		s.c.mu.Unlock()
	}
	return b, err
}

// serve starts a gRPC server on 127.0.0.1 with the KV service and, when
// calls is set, KVCalls; it returns a connection to it.
func serve(t *testing.T, kv plugdbv1.KVServer, calls nodev1.KVCallsServer) (*grpc.ClientConn, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	plugdbv1.RegisterKVServer(srv, kv)
	if calls != nil {
		nodev1.RegisterKVCallsServer(srv, calls)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, srv
}

func TestConcurrentCallsShareMessagesAndGetTheirOwnAnswers(t *testing.T) {
	kv := &fakeKV{}
	counting := &countingServer{Server: NewServer(kv)}
	cc, _ := serve(t, kv, counting)
	c := NewClient(cc)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	const callers, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				key := fmt.Sprintf("k%d-%d", g, i)
				got, err := c.Get(ctx, &plugdbv1.GetRequest{Key: []byte(key)})
				if err != nil {
					errs <- err
					return
				}
				if string(got.GetValue()) != "v-"+key {
					errs <- fmt.Errorf("get %s answered %q", key, got.GetValue())
					return
				}
				w, err := c.Put(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: make([]byte, g+i)})
				if err != nil {
					errs <- err
					return
				}
				if w.GetLsn() != uint64(g+i) {
					errs <- fmt.Errorf("put %s answered lsn %d, want %d", key, w.GetLsn(), g+i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	counting.mu.Lock()
	defer counting.mu.Unlock()
	if counting.calls != 2*callers*each {
		t.Fatalf("the server received %d calls, want %d", counting.calls, 2*callers*each)
	}
	if counting.messages >= counting.calls {
		t.Fatalf("%d calls took %d messages: concurrent calls were not packed together", counting.calls, counting.messages)
	}
	t.Logf("%d calls in %d messages", counting.calls, counting.messages)
}

func TestACallFailsAsItsUnaryMethodWould(t *testing.T) {
	kv := &fakeKV{}
	cc, _ := serve(t, kv, NewServer(kv))
	c := NewClient(cc)
	defer c.Close()

	// The status's details travel: the router tells a wrong partition by them.
	_, err := c.Get(context.Background(), &plugdbv1.GetRequest{Key: []byte("wrong")})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "key belongs to partition 1" {
		t.Fatalf("get of a wrong key: %v", err)
	}
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if reason != "WRONG_PARTITION" {
		t.Fatalf("the ErrorInfo did not travel: details %v", st.Details())
	}

	// The caller's deadline reaches the node's handler, and ends the call.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = c.Get(ctx, &plugdbv1.GetRequest{Key: []byte("block")})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call past its deadline: %v, want DeadlineExceeded", err)
	}
	kv.mu.Lock()
	deadlines := kv.deadlines
	kv.mu.Unlock()
	if len(deadlines) != 1 || !deadlines[0] {
		t.Fatalf("the node's handler ran with deadlines %v, want one call with a deadline", deadlines)
	}

	// An atomic batch is one call, with its own answer.
	b, err := c.Batch(context.Background(), &plugdbv1.BatchRequest{Ops: []*plugdbv1.BatchOp{{Key: []byte("a")}, {Key: []byte("b")}}})
	if err != nil || len(b.GetLsns()) != 2 {
		t.Fatalf("batch: %v, %v", b, err)
	}
}

func TestANodeWithoutKVCallsIsCalledUnary(t *testing.T) {
	cc, _ := serve(t, &fakeKV{}, nil)
	c := NewClient(cc)
	defer c.Close()
	for i := range 3 { // the first learns the node lacks the service, the rest go unary at once
		got, err := c.Get(context.Background(), &plugdbv1.GetRequest{Key: []byte("x")})
		if err != nil || string(got.GetValue()) != "v-x" {
			t.Fatalf("get %d from a node without KVCalls: %v, %v", i, got, err)
		}
	}
	if !c.unary.Load() {
		t.Fatal("the client did not switch to unary calls")
	}
}

func TestABrokenStreamFailsItsCallsAsUnavailableAndTheNextCallReconnects(t *testing.T) {
	kv := &fakeKV{}
	cc, srv := serve(t, kv, NewServer(kv))
	c := NewClient(cc)
	defer c.Close()
	if _, err := c.Get(context.Background(), &plugdbv1.GetRequest{Key: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), &plugdbv1.GetRequest{Key: []byte("block")})
		done <- err
	}()
	// Wait until the blocked call reached the node, then stop the server.
	testutil.WaitFor(t, 5*time.Second, func() bool {
		kv.mu.Lock()
		defer kv.mu.Unlock()
		return len(kv.deadlines) == 1
	}, "the blocked call to reach the node")
	srv.Stop()
	err := <-done
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a call whose stream broke: %v, want Unavailable", err)
	}
	if errors.Is(err, errUnary) {
		t.Fatal("a broken stream switched the client to unary")
	}
}

// TestDrainEndsStreams: once the server drains, a client's open call stream
// ends (the calls it had were answered), so a graceful stop of the gRPC
// server does not wait for the client to close it; a call made after it
// fails as on a broken stream, Unavailable.
func TestDrainEndsStreams(t *testing.T) {
	kv := &fakeKV{}
	calls := NewServer(kv)
	cc, srv := serve(t, kv, calls)
	c := NewClient(cc)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := c.Get(ctx, &plugdbv1.GetRequest{Key: []byte("a")}); err != nil || string(got.GetValue()) != "v-a" {
		t.Fatalf("get before the drain = %v, %v", got, err)
	}
	calls.Drain()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("the graceful stop still waits for the open call stream after Drain")
	}
	calls.Wait()
	if _, err := c.Get(ctx, &plugdbv1.GetRequest{Key: []byte("b")}); status.Code(err) != codes.Unavailable {
		t.Fatalf("get after the drain = %v, want Unavailable", err)
	}
}

package plugins

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/plugins/streamcall"
	replicatorv1 "github.com/plugdb/plugdb/proto/plugdb/replicator/v1"
	"github.com/plugdb/plugdb/replicators"
)

// Replicates serves the host's statements over one stream: each call runs
// as Replicate would, in its own goroutine, within the time its caller still
// waits; results go back as they are ready. It returns once the host closed
// the stream (or it broke) and every call it started has been answered.
func (s *replicatorServer) Replicates(stream replicatorv1.Replicator_ReplicatesServer) error {
	r, err := s.get()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	return streamcall.Serve(stream,
		func(c *replicatorv1.ReplicateCall) []*replicatorv1.ReplicateCall {
			return []*replicatorv1.ReplicateCall{c}
		},
		func(c *replicatorv1.ReplicateCall) *replicatorv1.ReplicateResult { return replicateOne(ctx, r, c) },
		func(rs []*replicatorv1.ReplicateResult) *replicatorv1.ReplicateResult { return rs[0] },
		1)
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
// stream (streamcall), opened on first use and again after it broke; a
// plugin without the method (UNIMPLEMENTED) is called unary from then on.
type replicateMux struct {
	calls *streamcall.Client[*replicatorv1.ReplicateCall, *replicatorv1.ReplicateResult, *replicatorv1.ReplicateCall, *replicatorv1.ReplicateResult]
	unary atomic.Bool
}

func newReplicateMux(rpc replicatorv1.ReplicatorClient) *replicateMux {
	return &replicateMux{calls: streamcall.New(streamcall.Codec[*replicatorv1.ReplicateCall, *replicatorv1.ReplicateResult, *replicatorv1.ReplicateCall, *replicatorv1.ReplicateResult]{
		Open: func(ctx context.Context) (streamcall.Stream[*replicatorv1.ReplicateCall, *replicatorv1.ReplicateResult], error) {
			return rpc.Replicates(ctx)
		},
		SetID: func(c *replicatorv1.ReplicateCall, id uint64) { c.Id = id },
		ID:    func(r *replicatorv1.ReplicateResult) uint64 { return r.GetId() },
		Pack:  func(calls []*replicatorv1.ReplicateCall) *replicatorv1.ReplicateCall { return calls[0] },
		Unpack: func(r *replicatorv1.ReplicateResult) []*replicatorv1.ReplicateResult {
			return []*replicatorv1.ReplicateResult{r}
		},
		MaxBatch: 1, // a call is one message: the plugin answers each as it commits
	})}
}

// errReplicateUnary: the plugin has no Replicates; the caller goes unary.
var errReplicateUnary = errors.New("the replicator plugin does not serve Replicates")

// replicate sends one statement and waits for its result: nil, the error
// its code maps to, or (stream broken, ctx ended) an error as a unary call
// would have returned. errReplicateUnary means: call Replicate instead (a
// plugin without Replicates, or a closed client, whose plugin answers as its
// closed replicator does).
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
	r, err := m.calls.Do(ctx, call)
	var broke *streamcall.StreamError
	switch {
	case errors.Is(err, streamcall.ErrClosed):
		return errReplicateUnary
	case errors.As(err, &broke) && status.Code(broke.Err) == codes.Unimplemented:
		m.unary.Store(true)
		return errReplicateUnary
	case errors.As(err, &broke) && errors.Is(broke.Err, io.EOF):
		return fromStatus(ctx, status.Error(codes.Unavailable, "the replicator plugin ended the Replicates stream"))
	case errors.As(err, &broke):
		return fromStatus(ctx, broke.Err)
	case err != nil:
		return fromStatus(ctx, status.FromContextError(err).Err())
	}
	if code := codes.Code(r.GetCode()); code != codes.OK {
		return fromCode(code, r.GetMessage())
	}
	return nil
}

func (m *replicateMux) close() { m.calls.Close() }

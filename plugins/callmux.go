package plugins

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/plugins/streamcall"
	enginev1 "github.com/plugdb/plugdb/proto/plugdb/engine/v1"
)

// maxCallsPerBatch bounds how many waiting calls travel in one message.
const maxCallsPerBatch = 1024

// callMux carries the gets and applies of concurrent callers over one bidi
// Calls stream (streamcall): every call waiting travels in one message, and
// each result goes back to its caller by id. One unary gRPC call per
// operation would cap the plugin at the cost of a round trip each; this way
// concurrent callers share round trips.
type callMux = streamcall.Client[*muxCall, muxResult, *enginev1.CallBatch, []muxResult]

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
	id  uint64
	row engines.Row
	err error
}

func newCallMux(rpc enginev1.EngineClient) *callMux {
	return streamcall.New(streamcall.Codec[*muxCall, muxResult, *enginev1.CallBatch, []muxResult]{
		Open: func(ctx context.Context) (streamcall.Stream[*enginev1.CallBatch, []muxResult], error) {
			s, err := rpc.Calls(ctx)
			return resultsOf[*enginev1.CallBatch](s, err, unpackResults)
		},
		SetID:    func(c *muxCall, id uint64) { c.id = id },
		ID:       func(r muxResult) uint64 { return r.id },
		Pack:     packCalls,
		Unpack:   func(rs []muxResult) []muxResult { return rs },
		MaxBatch: maxCallsPerBatch,
	})
}

// resultStream is a gRPC stream that reads its messages' results (unpack);
// one this host cannot read breaks the stream.
type resultStream[Out, In, R any] struct {
	grpcStream[Out, In]
	unpack  func(In, []R) ([]R, error)
	results []R // of the last message; streamcall is done with them at the next Recv
}

// grpcStream is the client side of a gRPC bidi stream.
type grpcStream[Out, In any] interface {
	Send(Out) error
	Recv() (In, error)
}

// resultsOf is a streamcall.Codec's Open of what opening the gRPC stream s
// returned.
func resultsOf[Out, In, R any](s grpcStream[Out, In], err error, unpack func(In, []R) ([]R, error)) (streamcall.Stream[Out, []R], error) {
	if err != nil {
		return nil, err
	}
	return &resultStream[Out, In, R]{grpcStream: s, unpack: unpack}, nil
}

func (s *resultStream[Out, In, R]) Recv() ([]R, error) {
	msg, err := s.grpcStream.Recv()
	if err != nil {
		return nil, err
	}
	clear(s.results)
	s.results, err = s.unpack(msg, s.results[:0])
	return s.results, err
}

// call sends one call and waits for its result. The call's key or mutations
// must stay unchanged until it returns.
func call(ctx context.Context, m *callMux, c *muxCall) (engines.Row, error) {
	r, err := m.Do(ctx, c)
	if err != nil {
		return engines.Row{}, streamCallError(err, errClosedClient)
	}
	return r.row, r.err
}

// streamCallError is the error of a call whose streamcall.Client.Do failed:
// a stream that could not open or broke (the connection failed, or the
// plugin ended the stream, or answered what this host cannot read) is a
// TransportError, so the loader restarts a dead plugin; a closed client's is
// closed; anything else is ctx's.
func streamCallError(err, closed error) error {
	var broke *streamcall.StreamError
	switch {
	case errors.As(err, &broke):
		why := broke.Err
		if errors.Is(why, streamcall.ErrClosed) {
			why = closed
		}
		if err := fromStatus(context.Background(), why); IsTransport(err) {
			return err
		}
		return &TransportError{Err: why}
	case errors.Is(err, streamcall.ErrClosed):
		return closed
	}
	return err
}

// packCalls packs calls into one message.
func packCalls(calls []*muxCall) *enginev1.CallBatch {
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

// unpackResults appends the results of batch to results. The rows' keys and
// values are sub-slices of batch's rows blob.
func unpackResults(batch *enginev1.ResultBatch, results []muxResult) ([]muxResult, error) {
	ids := batch.GetIds()
	n := len(ids)
	codeList, lsns, rows, msgs := batch.GetCodes(), batch.GetLsns(), batch.GetRows(), batch.GetMessages()
	if n == 0 || len(codeList) != n || len(lsns) != n {
		return results, errUnknownResults
	}
	for i := range n {
		r := muxResult{id: ids[i]}
		var err error
		if r.row.Key, rows, err = readBytes(rows); err != nil {
			return results, errUnknownResults
		}
		if r.row.Value, rows, err = readBytes(rows); err != nil {
			return results, errUnknownResults
		}
		r.row.LSN = lsns[i]
		if code := codes.Code(codeList[i]); code != codes.OK {
			if len(msgs) == 0 {
				return results, errUnknownResults
			}
			r.row, r.err = engines.Row{}, fromCode(code, msgs[0])
			msgs = msgs[1:]
		}
		results = append(results, r)
	}
	if len(rows) != 0 || len(msgs) != 0 {
		return results, errUnknownResults
	}
	return results, nil
}

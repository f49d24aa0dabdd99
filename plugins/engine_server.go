package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"

	"github.com/hashicorp/go-hclog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/engines"
	enginev1 "github.com/plugdb/plugdb/proto/plugdb/engine/v1"
)

// chunkRows and chunkBytes bound one streamed chunk of rows.
const (
	chunkRows  = 512
	chunkBytes = 1 << 20
)

// engineServer serves one engine over gRPC (plugin side).
type engineServer struct {
	enginev1.UnimplementedEngineServer
	open engines.OpenFunc
	log  hclog.Logger

	mu  sync.Mutex
	eng engines.Engine
}

func newEngineServer(open engines.OpenFunc, log hclog.Logger) *engineServer {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &engineServer{open: open, log: log}
}

func (s *engineServer) engine() (engines.Engine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eng == nil {
		return nil, status.Error(codes.FailedPrecondition, "engine not open: call Open first")
	}
	return s.eng, nil
}

func (s *engineServer) Open(ctx context.Context, req *enginev1.OpenRequest) (*enginev1.OpenResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eng != nil {
		return nil, status.Error(codes.FailedPrecondition, "engine already open: a plugin process serves one engine")
	}
	if s.open == nil {
		return nil, status.Error(codes.FailedPrecondition, "plugin serves no engine")
	}
	eng, err := s.open(ctx, engines.Options{Dir: req.GetDir(), Params: req.GetParams(), Logger: s.log})
	if err != nil {
		return nil, toStatus(err)
	}
	s.eng = eng
	return &enginev1.OpenResponse{Capabilities: capsToProto(eng.Capabilities())}, nil
}

// Calls runs the calls of each received batch: each apply in its own goroutine
// (so concurrent applies can share one fsync), the batch's gets one after the
// other in one goroutine of the batch (a goroutine and a result message per get
// would cost more than the get). A sender goroutine sends the results back,
// coalescing those that are ready into one message.
func (s *engineServer) Calls(stream enginev1.Engine_CallsServer) error {
	eng, err := s.engine()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	results := make(chan []*enginev1.Result, 1024)
	sendErr := make(chan error, 1)
	go func() { sendErr <- sendResults(stream, results) }()

	var wg sync.WaitGroup
	var recvErr error
	for {
		batch, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				recvErr = err
			}
			break
		}
		var gets []*enginev1.Call
		for _, c := range batch.GetCalls() {
			if _, ok := c.GetCall().(*enginev1.Call_Get); ok {
				gets = append(gets, c)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- []*enginev1.Result{runCall(ctx, eng, c)}
			}()
		}
		if len(gets) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out := make([]*enginev1.Result, len(gets))
				for i, c := range gets {
					out[i] = runCall(ctx, eng, c)
				}
				results <- out
			}()
		}
	}
	wg.Wait()
	close(results)
	if err := <-sendErr; err != nil {
		return err
	}
	return recvErr
}

// sendResults sends results as they come, coalescing those already waiting.
func sendResults(stream enginev1.Engine_CallsServer, results <-chan []*enginev1.Result) error {
	var failed error
	for rs := range results {
		if failed != nil {
			continue // drain so callers never block
		}
		batch := &enginev1.ResultBatch{Results: rs}
	more:
		for len(batch.Results) < chunkRows {
			select {
			case rs, ok := <-results:
				if !ok {
					break more
				}
				batch.Results = append(batch.Results, rs...)
			default:
				break more
			}
		}
		failed = stream.Send(batch)
	}
	return failed
}

func runCall(ctx context.Context, eng engines.Engine, c *enginev1.Call) *enginev1.Result {
	res := &enginev1.Result{Id: c.GetId()}
	var err error
	switch call := c.GetCall().(type) {
	case *enginev1.Call_Get:
		var row engines.Row
		row, err = eng.Get(ctx, call.Get.GetKey())
		if err == nil {
			res.Row = rowToProto(row)
		}
	case *enginev1.Call_Apply:
		err = eng.Apply(ctx, mutationsFromProto(call.Apply.GetMutations()))
	default:
		err = fmt.Errorf("call %d has no known operation (a newer host?): %w", c.GetId(), engines.ErrInvalidArgument)
	}
	if err != nil {
		st := status.Convert(toStatus(err))
		res.Error = &enginev1.Error{Code: uint32(st.Code()), Message: st.Message()}
	}
	return res
}

func (s *engineServer) Scan(req *enginev1.ScanRequest, stream enginev1.Engine_ScanServer) error {
	eng, err := s.engine()
	if err != nil {
		return err
	}
	r := engines.ScanRange{Start: req.GetStart(), End: req.GetEnd(), Limit: int(req.GetLimit())}
	return sendRows(stream, 0, eng.Scan(stream.Context(), r))
}

func (s *engineServer) Snapshot(_ *enginev1.SnapshotRequest, stream enginev1.Engine_SnapshotServer) error {
	eng, err := s.engine()
	if err != nil {
		return err
	}
	lsn, rows, err := eng.Snapshot(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	return sendRows(stream, lsn, rows)
}

// sendRows streams rows in chunks; the first chunk carries lsn and is sent even
// when there are no rows.
func sendRows(stream interface {
	Send(*enginev1.RowChunk) error
}, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	chunk := &enginev1.RowChunk{Lsn: lsn}
	size, sent := 0, false
	for row, err := range rows {
		if err != nil {
			return toStatus(err)
		}
		chunk.Rows = append(chunk.Rows, rowToProto(row))
		size += len(row.Key) + len(row.Value) + 16
		if len(chunk.Rows) >= chunkRows || size >= chunkBytes {
			if err := stream.Send(chunk); err != nil {
				return err
			}
			chunk, size, sent = &enginev1.RowChunk{}, 0, true
		}
	}
	if len(chunk.Rows) > 0 || !sent {
		return stream.Send(chunk)
	}
	return nil
}

func (s *engineServer) Restore(stream enginev1.Engine_RestoreServer) error {
	eng, err := s.engine()
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("restore: first chunk: %w", err)
	}
	rows := func(yield func(engines.Row, error) bool) {
		chunk := first
		for {
			for _, r := range chunk.GetRows() {
				if !yield(rowFromProto(r), nil) {
					return
				}
			}
			var err error
			chunk, err = stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(engines.Row{}, fmt.Errorf("restore stream: %w", err))
				return
			}
		}
	}
	if err := eng.Restore(stream.Context(), first.GetLsn(), rows); err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(&enginev1.RestoreResponse{})
}

func (s *engineServer) AppliedLSN(ctx context.Context, _ *enginev1.AppliedLSNRequest) (*enginev1.AppliedLSNResponse, error) {
	eng, err := s.engine()
	if err != nil {
		return nil, err
	}
	lsn, err := eng.AppliedLSN(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &enginev1.AppliedLSNResponse{Lsn: lsn}, nil
}

func (s *engineServer) Stats(ctx context.Context, _ *enginev1.StatsRequest) (*enginev1.StatsResponse, error) {
	eng, err := s.engine()
	if err != nil {
		return nil, err
	}
	st, err := eng.Stats(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &enginev1.StatsResponse{Keys: st.Keys, BytesOnDisk: st.BytesOnDisk, GarbageRatio: st.GarbageRatio}, nil
}

func (s *engineServer) Close(context.Context, *enginev1.CloseRequest) (*enginev1.CloseResponse, error) {
	eng, err := s.engine()
	if err != nil {
		return nil, err
	}
	if err := eng.Close(); err != nil {
		return nil, toStatus(err)
	}
	return &enginev1.CloseResponse{}, nil
}

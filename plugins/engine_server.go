package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/hashicorp/go-hclog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/plugins/streamcall"
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
	*served[engines.OpenFunc, engines.Engine]
}

func newEngineServer(open engines.OpenFunc, log hclog.Logger) *engineServer {
	return &engineServer{served: newServed[engines.Engine](open, open == nil, log, "engine", "open", "Open")}
}

// serve registers the engine service, serving what open opens (kindPlugin).
func (engineKind) serve(s *grpc.Server, open engines.OpenFunc, log hclog.Logger) {
	enginev1.RegisterEngineServer(s, newEngineServer(open, log))
}

func (s *engineServer) Open(ctx context.Context, req *enginev1.OpenRequest) (*enginev1.OpenResponse, error) {
	eng, err := s.openOnce(func() (engines.Engine, error) {
		eng, err := s.open(ctx, engines.Options{Dir: req.GetDir(), Params: req.GetParams(), Logger: s.log, LogBacked: req.GetLogBacked()})
		return eng, toStatus(err)
	})
	if err != nil {
		return nil, err
	}
	return &enginev1.OpenResponse{Capabilities: capsToProto(engines.CapabilitiesOf(eng)), Interfaces: ifacesToProto(engines.InterfacesOf(eng))}, nil
}

// Calls runs the calls of each received batch (streamcall.Serve): each apply
// in its own goroutine (so concurrent applies can share one fsync), the
// batch's gets one after the other in one goroutine of the batch (a goroutine
// and a result message per get would cost more than the get); the results
// that are ready travel back together. Keys and mutations are sub-slices of
// the received message's blobs (packed.go), which are this side's to keep.
//
// Not streamcall.ServeInTurn: the host's messages often carry one call each,
// and applies answered one message at a time would each wait for an fsync of
// their own (BenchmarkPluginCalls/apply/callers=64 with sync batch: a tenth
// of the rate).
func (s *engineServer) Calls(stream enginev1.Engine_CallsServer) error {
	eng, err := s.get()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	return streamcall.Serve(callsServerStream{stream}, unpackCalls,
		func(w callWork) []callResult { return w.run(ctx, eng) },
		packResults, chunkRows)
}

// callsServerStream is a Calls stream whose Recv refuses a batch with no
// calls: only a peer of another form sends one (the earlier per-call form
// decodes as an empty batch), and it would wait forever.
type callsServerStream struct{ enginev1.Engine_CallsServer }

func (s callsServerStream) Recv() (*enginev1.CallBatch, error) {
	batch, err := s.Engine_CallsServer.Recv()
	if err != nil {
		return nil, err
	}
	if len(batch.GetGetIds()) == 0 && len(batch.GetApplies()) == 0 {
		return nil, status.Error(codes.Unimplemented, "a call batch with no calls this plugin knows: host built with another plugdb version?")
	}
	return batch, nil
}

// callWork is what one goroutine of Calls runs: an apply, or the gets of a
// batch.
type callWork struct {
	apply   *enginev1.ApplyCall
	getIDs  []uint64
	getKeys []byte
}

// unpackCalls splits a batch into its applies and its gets.
func unpackCalls(batch *enginev1.CallBatch) []callWork {
	work := make([]callWork, 0, len(batch.GetApplies())+1)
	for _, a := range batch.GetApplies() {
		work = append(work, callWork{apply: a})
	}
	if ids := batch.GetGetIds(); len(ids) > 0 {
		work = append(work, callWork{getIDs: ids, getKeys: batch.GetGetKeys()})
	}
	return work
}

// run runs w's calls on eng.
func (w callWork) run(ctx context.Context, eng engines.Engine) []callResult {
	if a := w.apply; a != nil {
		r := callResult{id: a.GetId()}
		batch, err := decodeMutations(a.GetMutations())
		if err == nil {
			err = eng.Apply(ctx, batch)
		}
		r.setErr(err)
		return []callResult{r}
	}
	out := make([]callResult, len(w.getIDs))
	keys := w.getKeys
	for i, id := range w.getIDs {
		out[i].id = id
		key, rest, err := readBytes(keys)
		if err != nil {
			out[i].setErr(err)
			continue
		}
		keys = rest
		row, err := eng.Get(ctx, key)
		if err != nil {
			out[i].setErr(err)
			continue
		}
		out[i].row = row
	}
	return out
}

// callResult is the result of one call on the plugin side.
type callResult struct {
	id   uint64
	code codes.Code
	msg  string
	row  engines.Row // a successful get's
}

// setErr records err (if not nil) as the call's status.
func (r *callResult) setErr(err error) {
	if err == nil {
		return
	}
	st := status.Convert(toStatus(err))
	r.code, r.msg = st.Code(), st.Message()
}

// packResults packs the results of groups into one message.
func packResults(groups [][]callResult) *enginev1.ResultBatch {
	n, size, failed := 0, 0, 0
	for _, rs := range groups {
		n += len(rs)
		for _, r := range rs {
			size += bytesSize(r.row.Key) + bytesSize(r.row.Value)
			if r.code != codes.OK {
				failed++
			}
		}
	}
	batch := &enginev1.ResultBatch{
		Ids:   make([]uint64, 0, n),
		Codes: make([]uint32, n),
		Lsns:  make([]uint64, n),
		Rows:  make([]byte, 0, size),
	}
	if failed > 0 {
		batch.Messages = make([]string, 0, failed)
	}
	for _, rs := range groups {
		for _, r := range rs {
			i := len(batch.Ids)
			batch.Ids = append(batch.Ids, r.id)
			if r.code != codes.OK {
				batch.Codes[i] = uint32(r.code)
				batch.Messages = append(batch.Messages, r.msg)
				batch.Rows = append(batch.Rows, 0, 0) // no key, no value
				continue
			}
			batch.Lsns[i] = r.row.LSN
			batch.Rows = appendBytes(batch.Rows, r.row.Key)
			batch.Rows = appendBytes(batch.Rows, r.row.Value)
		}
	}
	return batch
}

func (s *engineServer) Scan(req *enginev1.ScanRequest, stream enginev1.Engine_ScanServer) error {
	eng, err := s.get()
	if err != nil {
		return err
	}
	sc, ok := engines.AsScanner(eng)
	if !ok {
		return toStatus(engines.Unsupported(eng, "scans", "Scanner")) // Unimplemented
	}
	r := engines.ScanRange{Start: req.GetStart(), End: req.GetEnd(), Limit: int(req.GetLimit())}
	return sendRows(stream, 0, sc.Scan(stream.Context(), r))
}

func (s *engineServer) Snapshot(_ *enginev1.SnapshotRequest, stream enginev1.Engine_SnapshotServer) error {
	eng, err := s.get()
	if err != nil {
		return err
	}
	lsn, rows, err := engines.Snapshot(stream.Context(), eng) // Unimplemented if not a Snapshotter
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
	eng, err := s.get()
	if err != nil {
		return err
	}
	sn, ok := engines.AsSnapshotter(eng)
	if !ok {
		return toStatus(engines.Unsupported(eng, "restores", "Snapshotter")) // Unimplemented
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
	if err := sn.Restore(stream.Context(), first.GetLsn(), rows); err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(&enginev1.RestoreResponse{})
}

func (s *engineServer) AppliedLSN(ctx context.Context, _ *enginev1.AppliedLSNRequest) (*enginev1.AppliedLSNResponse, error) {
	eng, err := s.get()
	if err != nil {
		return nil, err
	}
	lsn, err := eng.AppliedLSN(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &enginev1.AppliedLSNResponse{Lsn: lsn}, nil
}

// Flush answers Unimplemented when the engine is not an engines.Flusher.
func (s *engineServer) Flush(ctx context.Context, _ *enginev1.FlushRequest) (*enginev1.FlushResponse, error) {
	eng, err := s.get()
	if err != nil {
		return nil, err
	}
	f, ok := engines.AsFlusher(eng)
	if !ok {
		return nil, toStatus(engines.Unsupported(eng, "flushes", "Flusher")) // Unimplemented
	}
	lsn, err := f.Flush(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &enginev1.FlushResponse{Lsn: lsn}, nil
}

func (s *engineServer) Stats(ctx context.Context, _ *enginev1.StatsRequest) (*enginev1.StatsResponse, error) {
	eng, err := s.get()
	if err != nil {
		return nil, err
	}
	st, err := engines.StatsOf(ctx, eng) // Unimplemented if not a StatsReporter
	if err != nil {
		return nil, toStatus(err)
	}
	return &enginev1.StatsResponse{Keys: st.Keys, BytesOnDisk: st.BytesOnDisk, GarbageRatio: st.GarbageRatio}, nil
}

func (s *engineServer) Close(context.Context, *enginev1.CloseRequest) (*enginev1.CloseResponse, error) {
	eng, err := s.get()
	if err != nil {
		return nil, err
	}
	if err := eng.Close(); err != nil {
		return nil, toStatus(err)
	}
	return &enginev1.CloseResponse{}, nil
}

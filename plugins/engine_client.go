package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/engines"
	enginev1 "github.com/plugdb/plugdb/proto/plugdb/engine/v1"
)

// EngineClient is the host side of an engine plugin: an engines.Engine whose
// calls travel to the plugin process. Gets and applies of concurrent callers
// share one long-lived stream and travel in batches; scans and snapshots stream.
//
// It is an engines.Proxy: it has every optional method, and Interfaces says
// which of them the plugin's engine has (its Open answer tells); a method of
// one it lacks fails at once with an error wrapping errors.ErrUnsupported,
// without a call (engines.Unsupported). Use engines.AsScanner & co. on it.
type EngineClient struct {
	rpc    enginev1.EngineClient
	caps   engines.Capabilities
	ifaces engines.Interfaces
	mux    *callMux
}

var (
	_ engines.Proxy                = (*EngineClient)(nil)
	_ engines.Scanner              = (*EngineClient)(nil)
	_ engines.Snapshotter          = (*EngineClient)(nil)
	_ engines.StatsReporter        = (*EngineClient)(nil)
	_ engines.CapabilitiesReporter = (*EngineClient)(nil)
	_ engines.Flusher              = (*EngineClient)(nil)
)

// client returns the engine client over conn (kindPlugin, kind.go).
func (engineKind) client(conn *grpc.ClientConn) any {
	return &EngineClient{rpc: enginev1.NewEngineClient(conn)}
}

// Open opens the plugin's engine with opts; it must be called once, before any
// other method.
func (c *EngineClient) Open(ctx context.Context, opts engines.Options) error {
	resp, err := c.rpc.Open(ctx, &enginev1.OpenRequest{Dir: opts.Dir, Params: opts.Params, LogBacked: opts.LogBacked})
	if err != nil {
		return fromStatus(ctx, err)
	}
	c.caps = capsFromProto(resp.GetCapabilities())
	c.ifaces = ifacesFromProto(resp.GetInterfaces())
	c.mux = newCallMux(c.rpc)
	return nil
}

// Capabilities returns what the plugin declared when it was opened
// (engines.DefaultCapabilities when its engine declares none).
func (c *EngineClient) Capabilities() engines.Capabilities { return c.caps }

// Interfaces says which optional interfaces the plugin's engine has, as its
// Open answered (engines.Proxy).
func (c *EngineClient) Interfaces() engines.Interfaces { return c.ifaces }

// String names the client in errors: "engine plugin cannot serve scans (…)".
func (c *EngineClient) String() string { return "plugin" }

// Get fetches key through the shared call stream.
func (c *EngineClient) Get(ctx context.Context, key []byte) (engines.Row, error) {
	return call(ctx, c.mux, &muxCall{key: key})
}

// Apply sends a batch through the shared call stream, packed into one buffer.
func (c *EngineClient) Apply(ctx context.Context, batch []engines.Mutation) error {
	packed := appendMutations(make([]byte, 0, mutationsSize(batch)), batch)
	_, err := call(ctx, c.mux, &muxCall{apply: true, mutations: packed})
	return err
}

// Scan streams the rows of r from the plugin.
func (c *EngineClient) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		if !c.ifaces.Scanner {
			yield(engines.Row{}, engines.Unsupported(c, "scans", "Scanner"))
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.rpc.Scan(ctx, &enginev1.ScanRequest{Start: r.Start, End: r.End, Limit: int64(r.Limit)})
		if err != nil {
			yield(engines.Row{}, fromStatus(ctx, err))
			return
		}
		recvRows(ctx, stream, nil, yield)
	}
}

// Snapshot opens a snapshot stream; its first chunk carries the LSN.
func (c *EngineClient) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	if !c.ifaces.Snapshotter {
		return 0, nil, engines.Unsupported(c, "snapshots", "Snapshotter")
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.rpc.Snapshot(ctx, &enginev1.SnapshotRequest{})
	if err != nil {
		cancel()
		return 0, nil, fromStatus(ctx, err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return 0, nil, fromStatus(ctx, err)
	}
	rows := func(yield func(engines.Row, error) bool) {
		defer cancel()
		recvRows(ctx, stream, first, yield)
	}
	return first.GetLsn(), rows, nil
}

// recvRows yields the rows of first (if any) and of every chunk after it.
func recvRows(ctx context.Context, stream interface {
	Recv() (*enginev1.RowChunk, error)
}, first *enginev1.RowChunk, yield func(engines.Row, error) bool) {
	chunk := first
	for {
		if chunk == nil {
			var err error
			chunk, err = stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(engines.Row{}, fromStatus(ctx, err))
				return
			}
		}
		for _, r := range chunk.GetRows() {
			if !yield(rowFromProto(r), nil) {
				return
			}
		}
		chunk = nil
	}
}

// Restore streams rows to the plugin in chunks.
func (c *EngineClient) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	if !c.ifaces.Snapshotter {
		return engines.Unsupported(c, "restores", "Snapshotter")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Restore(ctx)
	if err != nil {
		return fromStatus(ctx, err)
	}
	chunk := &enginev1.RowChunk{Lsn: lsn}
	size := 0
	for row, err := range rows {
		if err != nil {
			return fmt.Errorf("restore: read rows: %w", err)
		}
		chunk.Rows = append(chunk.Rows, rowToProto(row))
		size += len(row.Key) + len(row.Value) + 16
		if len(chunk.Rows) >= chunkRows || size >= chunkBytes {
			if err := stream.Send(chunk); err != nil {
				_, err = stream.CloseAndRecv() // the real error is here
				return fromStatus(ctx, err)
			}
			chunk, size = &enginev1.RowChunk{}, 0
		}
	}
	if err := stream.Send(chunk); err != nil {
		_, err = stream.CloseAndRecv()
		return fromStatus(ctx, err)
	}
	_, err = stream.CloseAndRecv()
	return fromStatus(ctx, err)
}

// AppliedLSN asks the plugin for its applied LSN.
func (c *EngineClient) AppliedLSN(ctx context.Context) (uint64, error) {
	resp, err := c.rpc.AppliedLSN(ctx, &enginev1.AppliedLSNRequest{})
	if err != nil {
		return 0, fromStatus(ctx, err)
	}
	return resp.GetLsn(), nil
}

// Flush asks the plugin to make its engine durable (engines.Flusher). When
// the plugin's engine has no Flush, or the plugin predates it, the error wraps
// errors.ErrUnsupported.
func (c *EngineClient) Flush(ctx context.Context) (uint64, error) {
	if !c.ifaces.Flusher {
		return 0, engines.Unsupported(c, "flushes", "Flusher")
	}
	resp, err := c.rpc.Flush(ctx, &enginev1.FlushRequest{})
	if err != nil {
		return 0, fromStatus(ctx, err)
	}
	return resp.GetLsn(), nil
}

// Stats asks the plugin for its stats.
func (c *EngineClient) Stats(ctx context.Context) (engines.Stats, error) {
	if !c.ifaces.StatsReporter {
		return engines.Stats{}, engines.Unsupported(c, "stats", "StatsReporter")
	}
	resp, err := c.rpc.Stats(ctx, &enginev1.StatsRequest{})
	if err != nil {
		return engines.Stats{}, fromStatus(ctx, err)
	}
	return engines.Stats{Keys: resp.GetKeys(), BytesOnDisk: resp.GetBytesOnDisk(), GarbageRatio: resp.GetGarbageRatio()}, nil
}

// Close closes the plugin's engine. It does not end the plugin process; the
// loader does that (with CloseContext and a deadline).
func (c *EngineClient) Close() error { return c.CloseContext(context.Background()) }

// CloseContext is Close bounded by ctx.
func (c *EngineClient) CloseContext(ctx context.Context) error {
	if c.mux != nil {
		c.mux.Close()
	}
	_, err := c.rpc.Close(ctx, &enginev1.CloseRequest{})
	return fromStatus(ctx, err)
}

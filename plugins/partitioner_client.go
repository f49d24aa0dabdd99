package plugins

import (
	"context"

	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/partitioners"
	partitionerv1 "github.com/plugdb/plugdb/proto/plugdb/partitioner/v1"
)

// PartitionerClient is the host side of a partitioner plugin: a
// partitioners.Partitioner whose calls travel to the plugin process. The Locate
// calls of concurrent callers share one long-lived stream and travel in
// batches (locatemux.go, over plugins/streamcall); Configure, Range and Close
// are unary calls.
type PartitionerClient struct {
	rpc partitionerv1.PartitionerClient
	mux *locateMux
}

var _ partitioners.Partitioner = (*PartitionerClient)(nil)

// NewPartitionerClient returns a client of the partitioner service on conn.
// The loader gets one from go-plugin (PartitionerPlugin.GRPCClient); tests and
// tools that dial a partitioner service themselves use this.
func NewPartitionerClient(conn grpc.ClientConnInterface) *PartitionerClient {
	rpc := partitionerv1.NewPartitionerClient(conn)
	return &PartitionerClient{rpc: rpc, mux: newLocateMux(rpc)}
}

// client returns the partitioner client over conn (kindPlugin, kind.go).
func (partitionerKind) client(conn *grpc.ClientConn) any { return NewPartitionerClient(conn) }

// Configure configures the plugin's partitioner.
func (c *PartitionerClient) Configure(ctx context.Context, partitions int, options map[string]string) error {
	if err := partitioners.CheckPartitions(partitions); err != nil {
		return err
	}
	_, err := c.rpc.Configure(ctx, &partitionerv1.ConfigureRequest{Partitions: uint32(partitions), Options: options})
	return fromStatus(ctx, err)
}

// Locate sends keys through the shared Locate stream. A call whose keys are
// larger than one message may carry is split into several.
func (c *PartitionerClient) Locate(ctx context.Context, keys [][]byte, out []int) error {
	if err := partitioners.CheckLocate(keys, out); err != nil {
		return err
	}
	for len(keys) > 0 {
		n, size := 0, 0
		for n < len(keys) && n < maxLocateKeys && (n == 0 || size+bytesSize(keys[n]) <= maxLocateBytes) {
			size += bytesSize(keys[n])
			n++
		}
		if err := locate(ctx, c.mux, keys[:n], size, out[:n]); err != nil {
			return err
		}
		keys, out = keys[n:], out[n:]
	}
	return nil
}

// Range asks the plugin which partitions [start, end) touches.
func (c *PartitionerClient) Range(ctx context.Context, start, end []byte) ([]int, error) {
	resp, err := c.rpc.Range(ctx, &partitionerv1.RangeRequest{Start: start, End: end})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	parts := make([]int, len(resp.GetPartitions()))
	for i, p := range resp.GetPartitions() {
		parts[i] = int(p)
	}
	return parts, nil
}

// Close closes the plugin's partitioner. It does not end the plugin process;
// the loader does that (with CloseContext and a deadline).
func (c *PartitionerClient) Close() error { return c.CloseContext(context.Background()) }

// CloseContext is Close bounded by ctx.
func (c *PartitionerClient) CloseContext(ctx context.Context) error {
	c.mux.Close()
	_, err := c.rpc.Close(ctx, &partitionerv1.CloseRequest{})
	return closeError(ctx, "partitioner", err)
}

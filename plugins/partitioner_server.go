package plugins

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/plugins/streamcall"
	partitionerv1 "github.com/plugdb/plugdb/proto/plugdb/partitioner/v1"
)

// partitionerServer serves one partitioner over gRPC (plugin side).
type partitionerServer struct {
	partitionerv1.UnimplementedPartitionerServer
	*served[partitioners.OpenFunc, partitioners.Partitioner]
}

func newPartitionerServer(open partitioners.OpenFunc, log hclog.Logger) *partitionerServer {
	return &partitionerServer{served: newServed[partitioners.Partitioner](open, open == nil, log, "partitioner", "configured", "Configure")}
}

// serve registers the partitioner service, serving what open opens (kindPlugin).
func (partitionerKind) serve(s *grpc.Server, open partitioners.OpenFunc, log hclog.Logger) {
	partitionerv1.RegisterPartitionerServer(s, newPartitionerServer(open, log))
}

// Configure opens the partitioner and configures it. A partitioner that
// refuses its configuration is closed, so the host may try another.
func (s *partitionerServer) Configure(ctx context.Context, req *partitionerv1.ConfigureRequest) (*partitionerv1.ConfigureResponse, error) {
	_, err := s.openOnce(func() (partitioners.Partitioner, error) {
		p, err := s.open(ctx, s.log)
		if err != nil {
			return nil, toStatus(err)
		}
		if err := p.Configure(ctx, int(req.GetPartitions()), req.GetOptions()); err != nil {
			p.Close()
			return nil, toStatus(err)
		}
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return &partitionerv1.ConfigureResponse{}, nil
}

// Locate answers each received batch of calls in turn (streamcall.ServeInTurn):
// it locates the keys of all the batch's calls with one call of the
// partitioner (calling it per call only if that fails, to give each call its
// own error), then sends the results as one message; calls the host queues
// meanwhile travel together in its next batch. Keys are sub-slices of the
// received message's blob, which is this side's to keep.
func (s *partitionerServer) Locate(stream partitionerv1.Partitioner_LocateServer) error {
	p, err := s.get()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	var out []int
	return streamcall.ServeInTurn(&locateServerStream{Partitioner_LocateServer: stream},
		func(b *locateBatch) *partitionerv1.LocateResults {
			if cap(out) < len(b.keys) {
				out = make([]int, len(b.keys))
			}
			out = out[:len(b.keys)]
			res := &partitionerv1.LocateResults{
				Ids:    b.ids,
				Codes:  make([]uint32, len(b.ids)),
				Counts: make([]uint32, len(b.ids)),
			}
			if err := p.Locate(ctx, b.keys, out); err == nil {
				copy(res.Counts, b.counts)
				res.Partitions = locateParts(make([]uint32, 0, len(out)), out)
			} else {
				locateEach(ctx, p, b.keys, out, b.counts, res)
			}
			clear(b.keys) // drop the keys' blob
			return res
		})
}

// locateBatch is a received batch of Locate calls.
type locateBatch struct {
	ids    []uint64
	counts []uint32 // keys of each call
	keys   [][]byte // of all the calls
}

// locateServerStream is a Locate stream that reads its batches; one this
// plugin cannot read ends the stream with the error Recv returns. Each Recv
// reuses the batch of the last, which ServeInTurn is done with.
type locateServerStream struct {
	partitionerv1.Partitioner_LocateServer
	batch locateBatch
}

func (s *locateServerStream) Recv() (*locateBatch, error) {
	batch, err := s.Partitioner_LocateServer.Recv()
	if err != nil {
		return nil, err
	}
	ids, counts := batch.GetIds(), batch.GetCounts()
	if len(ids) == 0 || len(counts) != len(ids) {
		return nil, status.Error(codes.Unimplemented, "a locate batch in a form this plugin does not know: host built with another plugdb version?")
	}
	keys, err := unpackKeys(batch.GetKeys(), counts, s.batch.keys[:0])
	s.batch = locateBatch{ids: ids, counts: counts, keys: keys}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &s.batch, nil
}

// locateEach locates the keys of each call separately into res.
func locateEach(ctx context.Context, p partitioners.Partitioner, keys [][]byte, out []int, counts []uint32, res *partitionerv1.LocateResults) {
	for i, n := range counts {
		k, o := keys[:n], out[:n]
		keys, out = keys[n:], out[n:]
		if err := p.Locate(ctx, k, o); err != nil {
			st := status.Convert(toStatus(err))
			res.Codes[i] = uint32(st.Code())
			res.Messages = append(res.Messages, st.Message())
			continue
		}
		res.Counts[i] = n
		res.Partitions = locateParts(res.Partitions, o)
	}
}

// unpackKeys appends the keys of blob, as many as counts add up to, to keys.
func unpackKeys(blob []byte, counts []uint32, keys [][]byte) ([][]byte, error) {
	for _, n := range counts {
		for range n {
			key, rest, err := readBytes(blob)
			if err != nil {
				return keys, err
			}
			if key == nil {
				key = []byte{}
			}
			keys = append(keys, key)
			blob = rest
		}
	}
	if len(blob) != 0 {
		return keys, errMalformed
	}
	return keys, nil
}

// Range answers which partitions [start, end) touches.
func (s *partitionerServer) Range(ctx context.Context, req *partitionerv1.RangeRequest) (*partitionerv1.RangeResponse, error) {
	p, err := s.get()
	if err != nil {
		return nil, err
	}
	parts, err := p.Range(ctx, req.GetStart(), req.GetEnd())
	if err != nil {
		return nil, toStatus(err)
	}
	return &partitionerv1.RangeResponse{Partitions: locateParts(make([]uint32, 0, len(parts)), parts)}, nil
}

// Close closes the partitioner; closing one never configured does nothing.
func (s *partitionerServer) Close(context.Context, *partitionerv1.CloseRequest) (*partitionerv1.CloseResponse, error) {
	p := s.peek()
	if p == nil {
		return &partitionerv1.CloseResponse{}, nil
	}
	if err := p.Close(); err != nil {
		return nil, toStatus(err)
	}
	return &partitionerv1.CloseResponse{}, nil
}

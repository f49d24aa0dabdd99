package plugins

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	replicatorv1 "github.com/plugdb/plugdb/proto/plugdb/replicator/v1"
	"github.com/plugdb/plugdb/replicators"
)

// replicatorServer serves one replicator over gRPC (plugin side): each call
// converts its request, calls the replicator and converts the answer. Errors
// travel by the sentinel table only (toStatusByTable).
type replicatorServer struct {
	replicatorv1.UnimplementedReplicatorServer
	*served[replicators.OpenFunc, replicators.Replicator]
}

func newReplicatorServer(open replicators.OpenFunc, log hclog.Logger) *replicatorServer {
	return &replicatorServer{served: newServed[replicators.Replicator](open, open == nil, log, "replicator", "open", "Open")}
}

// serve registers the replicator service, serving what open opens (kindPlugin).
func (replicatorKind) serve(s *grpc.Server, open replicators.OpenFunc, log hclog.Logger) {
	replicatorv1.RegisterReplicatorServer(s, newReplicatorServer(open, log))
}

// Open opens the replicator and returns its address.
func (s *replicatorServer) Open(ctx context.Context, req *replicatorv1.OpenRequest) (*replicatorv1.OpenResponse, error) {
	r, err := s.openOnce(func() (replicators.Replicator, error) {
		r, err := s.open(ctx, replicators.Options{
			Dir: req.GetDir(), Partition: int(req.GetPartition()), Listen: req.GetListen(), Params: req.GetParams(), Replicas: int(req.GetReplicas()), Logger: s.log,
			TLS: tlsFromProto(req.GetTls()),
		})
		return r, toStatusByTable(err)
	})
	if err != nil {
		return nil, err
	}
	return &replicatorv1.OpenResponse{Addr: r.Addr()}, nil
}

func (s *replicatorServer) Lead(ctx context.Context, req *replicatorv1.LeadRequest) (*replicatorv1.LeadResponse, error) {
	r, err := s.get()
	if err != nil {
		return nil, err
	}
	end, err := r.Lead(ctx, req.GetEpoch(), req.GetApplied())
	if err != nil {
		return nil, toStatusByTable(err)
	}
	return &replicatorv1.LeadResponse{End: end}, nil
}

func (s *replicatorServer) SetPeers(ctx context.Context, req *replicatorv1.SetPeersRequest) (*replicatorv1.SetPeersResponse, error) {
	r, err := s.get()
	if err != nil {
		return nil, err
	}
	if err := r.SetPeers(ctx, peersFromProto(req.GetPeers())); err != nil {
		return nil, toStatusByTable(err)
	}
	return &replicatorv1.SetPeersResponse{}, nil
}

// Replicate runs with the call's context, which carries the host caller's deadline.
func (s *replicatorServer) Replicate(ctx context.Context, req *replicatorv1.ReplicateRequest) (*replicatorv1.ReplicateResponse, error) {
	r, err := s.get()
	if err != nil {
		return nil, err
	}
	st, err := statementFromProto(req.GetStatement())
	if err != nil {
		return nil, toStatusByTable(err)
	}
	if err := r.Replicate(ctx, st, ackFromProto(req.GetAck())); err != nil {
		return nil, toStatusByTable(err)
	}
	return &replicatorv1.ReplicateResponse{}, nil
}

func (s *replicatorServer) Follow(ctx context.Context, req *replicatorv1.FollowRequest) (*replicatorv1.FollowResponse, error) {
	r, err := s.get()
	if err != nil {
		return nil, err
	}
	if err := r.Follow(ctx, req.GetEpoch(), req.GetLeader()); err != nil {
		return nil, toStatusByTable(err)
	}
	return &replicatorv1.FollowResponse{}, nil
}

// Deliveries sends what the replicator yields, one message per item (an error
// item as a code and message, which does not end the stream), until the
// replicator's sequence ends or the host cancels the call.
func (s *replicatorServer) Deliveries(_ *replicatorv1.DeliveriesRequest, stream replicatorv1.Replicator_DeliveriesServer) error {
	r, err := s.get()
	if err != nil {
		return err
	}
	for d, err := range r.Deliveries(stream.Context()) {
		msg := &replicatorv1.Delivery{}
		if err != nil {
			st := status.Convert(toStatusByTable(err))
			msg.Code, msg.Message = uint32(st.Code()), st.Message()
		} else {
			msg.Rebuild = d.Rebuild
			if len(d.Statement.Mutations) > 0 || d.Statement.Epoch != 0 {
				msg.Statement = statementToProto(d.Statement)
			}
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

func (s *replicatorServer) Applied(ctx context.Context, req *replicatorv1.AppliedRequest) (*replicatorv1.AppliedResponse, error) {
	r, err := s.get()
	if err != nil {
		return nil, err
	}
	if err := r.Applied(ctx, req.GetLsn()); err != nil {
		return nil, toStatusByTable(err)
	}
	return &replicatorv1.AppliedResponse{}, nil
}

func (s *replicatorServer) EpochAt(ctx context.Context, req *replicatorv1.EpochAtRequest) (*replicatorv1.EpochAtResponse, error) {
	r, err := s.get()
	if err != nil {
		return nil, err
	}
	epoch, err := r.EpochAt(ctx, req.GetLsn())
	if err != nil {
		return nil, toStatusByTable(err)
	}
	return &replicatorv1.EpochAtResponse{Epoch: epoch}, nil
}

func (s *replicatorServer) Restored(ctx context.Context, req *replicatorv1.RestoredRequest) (*replicatorv1.RestoredResponse, error) {
	r, err := s.get()
	if err != nil {
		return nil, err
	}
	if err := r.Restored(ctx, req.GetLsn(), req.GetEpoch()); err != nil {
		return nil, toStatusByTable(err)
	}
	return &replicatorv1.RestoredResponse{}, nil
}

func (s *replicatorServer) Status(ctx context.Context, _ *replicatorv1.StatusRequest) (*replicatorv1.StatusResponse, error) {
	r, err := s.get()
	if err != nil {
		return nil, err
	}
	st, err := r.Status(ctx)
	if err != nil {
		return nil, toStatusByTable(err)
	}
	return statusToProto(st), nil
}

// Close closes the replicator; closing one never opened does nothing. Later
// calls reach the closed replicator, which answers ErrClosed.
func (s *replicatorServer) Close(context.Context, *replicatorv1.CloseRequest) (*replicatorv1.CloseResponse, error) {
	r := s.peek()
	if r == nil {
		return &replicatorv1.CloseResponse{}, nil
	}
	if err := r.Close(); err != nil {
		return nil, toStatusByTable(err)
	}
	return &replicatorv1.CloseResponse{}, nil
}

package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	replicatorv1 "github.com/plugdb/plugdb/proto/plugdb/replicator/v1"
	"github.com/plugdb/plugdb/replicators"
)

// ReplicatorClient is the host side of a replicator plugin: a
// replicators.Replicator whose calls travel to the plugin process, one unary
// call per method (Replicate carries the caller's deadline), and Deliveries
// as one server stream. Statements travel with their mutations packed in one
// blob (packed.go).
//
// Deliveries are sent as the plugin's replicator yields them, ahead of the
// host's loop: over a plugin a replicator's yield returns once the delivery
// is sent, not once the host handled it. The contract's Applied and Restored
// calls, not the return of yield, are what tell a replicator what the host did.
type ReplicatorClient struct {
	rpc  replicatorv1.ReplicatorClient
	addr string
	mux  *replicateMux // Replicate's calls, over one Replicates stream
}

var _ replicators.Replicator = (*ReplicatorClient)(nil)

// NewReplicatorClient returns a client of the replicator service on conn. The
// loader gets one from go-plugin (ReplicatorPlugin.GRPCClient); tests and
// tools that dial a replicator service themselves use this.
func NewReplicatorClient(conn grpc.ClientConnInterface) *ReplicatorClient {
	rpc := replicatorv1.NewReplicatorClient(conn)
	return &ReplicatorClient{rpc: rpc, mux: newReplicateMux(rpc)}
}

// client returns the replicator client over conn (kindPlugin, kind.go).
func (replicatorKind) client(conn *grpc.ClientConn) any { return NewReplicatorClient(conn) }

// Open opens the plugin's replicator with opts (its Logger stays on the host:
// the plugin logs with its own) and fetches its address. It must be called
// once, before any other method.
func (c *ReplicatorClient) Open(ctx context.Context, opts replicators.Options) error {
	resp, err := c.rpc.Open(ctx, &replicatorv1.OpenRequest{
		Dir: opts.Dir, Partition: int64(opts.Partition), Listen: opts.Listen, Params: opts.Params, Replicas: int32(opts.Replicas),
		Tls: tlsToProto(opts.TLS),
	})
	if err != nil {
		return fromStatus(ctx, err)
	}
	c.addr = resp.GetAddr()
	return nil
}

// Addr is the address the plugin's replicator reported when it was opened.
func (c *ReplicatorClient) Addr() string { return c.addr }

// Lead makes the plugin's replicator the leader of epoch.
func (c *ReplicatorClient) Lead(ctx context.Context, epoch, applied uint64) (uint64, error) {
	resp, err := c.rpc.Lead(ctx, &replicatorv1.LeadRequest{Epoch: epoch, Applied: applied})
	if err != nil {
		return 0, fromStatus(ctx, err)
	}
	return resp.GetEnd(), nil
}

// SetPeers passes the partition's other replicas.
func (c *ReplicatorClient) SetPeers(ctx context.Context, peers []replicators.Peer) error {
	_, err := c.rpc.SetPeers(ctx, &replicatorv1.SetPeersRequest{Peers: peersToProto(peers)})
	return fromStatus(ctx, err)
}

// Replicate sends st and waits for its ack; the call carries ctx's deadline.
// When ctx ends first, the outcome is unknown as it is in process (the plugin
// may have logged the statement, which may still commit): the error wraps
// replicators.ErrUnavailable as well as ctx's error.
func (c *ReplicatorClient) Replicate(ctx context.Context, st replicators.Statement, ack replicators.Ack) error {
	if err := st.Check(); err != nil {
		return err
	}
	req := &replicatorv1.ReplicateRequest{Statement: statementToProto(st), Ack: ackToProto(ack)}
	err := c.mux.replicate(ctx, req)
	if errors.Is(err, errReplicateUnary) {
		if _, err = c.rpc.Replicate(ctx, req); err != nil {
			err = fromStatus(ctx, err)
		}
	}
	if err == nil {
		return nil
	}
	if ctxEnded(ctx) && !errors.Is(err, replicators.ErrUnavailable) &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("replicate lsn %d..%d: ack %s not met before the context ended (the write may still commit): %w: %w",
			st.First(), st.Last(), ack, replicators.ErrUnavailable, err)
	}
	return err
}

// Follow makes the plugin's replicator a follower of leader in epoch.
func (c *ReplicatorClient) Follow(ctx context.Context, epoch uint64, leader string) error {
	_, err := c.rpc.Follow(ctx, &replicatorv1.FollowRequest{Epoch: epoch, Leader: leader})
	return fromStatus(ctx, err)
}

// Deliveries streams the plugin's deliveries until ctx ends (then it ends
// without an error) or the plugin ends the stream. An error item of the
// plugin's sequence is yielded and the sequence goes on; a failure of the
// stream itself is yielded last.
func (c *ReplicatorClient) Deliveries(ctx context.Context) iter.Seq2[replicators.Delivery, error] {
	return func(yield func(replicators.Delivery, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.rpc.Deliveries(ctx, &replicatorv1.DeliveriesRequest{})
		if err != nil {
			if !ctxEnded(ctx) {
				yield(replicators.Delivery{}, fromStatus(ctx, err))
			}
			return
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !ctxEnded(ctx) {
					yield(replicators.Delivery{}, fromStatus(ctx, err))
				}
				return
			}
			if code := codes.Code(msg.GetCode()); code != codes.OK {
				if !yield(replicators.Delivery{}, fromCode(code, msg.GetMessage())) {
					return
				}
				continue
			}
			d := replicators.Delivery{Rebuild: msg.GetRebuild()}
			if msg.GetStatement() != nil {
				if d.Statement, err = statementFromProto(msg.GetStatement()); err != nil {
					yield(replicators.Delivery{}, fmt.Errorf("delivery from the replicator plugin: %w", err))
					return
				}
			}
			if !yield(d, nil) {
				return
			}
		}
	}
}

// Applied reports the host engine's applied LSN.
func (c *ReplicatorClient) Applied(ctx context.Context, lsn uint64) error {
	_, err := c.rpc.Applied(ctx, &replicatorv1.AppliedRequest{Lsn: lsn})
	return fromStatus(ctx, err)
}

// EpochAt asks the plugin the epoch of the statement at lsn.
func (c *ReplicatorClient) EpochAt(ctx context.Context, lsn uint64) (uint64, error) {
	resp, err := c.rpc.EpochAt(ctx, &replicatorv1.EpochAtRequest{Lsn: lsn})
	if err != nil {
		return 0, fromStatus(ctx, err)
	}
	return resp.GetEpoch(), nil
}

// Restored tells the plugin's replicator the engine was restored at lsn.
func (c *ReplicatorClient) Restored(ctx context.Context, lsn, epoch uint64) error {
	_, err := c.rpc.Restored(ctx, &replicatorv1.RestoredRequest{Lsn: lsn, Epoch: epoch})
	return fromStatus(ctx, err)
}

// Status fetches the plugin's replicator state.
func (c *ReplicatorClient) Status(ctx context.Context) (replicators.Status, error) {
	resp, err := c.rpc.Status(ctx, &replicatorv1.StatusRequest{})
	if err != nil {
		return replicators.Status{}, fromStatus(ctx, err)
	}
	return statusFromProto(resp), nil
}

// Close closes the plugin's replicator. It does not end the plugin process;
// the loader does that (with CloseContext and a deadline).
func (c *ReplicatorClient) Close() error { return c.CloseContext(context.Background()) }

// CloseContext is Close bounded by ctx.
func (c *ReplicatorClient) CloseContext(ctx context.Context) error {
	c.mux.close()
	_, err := c.rpc.Close(ctx, &replicatorv1.CloseRequest{})
	return closeError(ctx, "replicator", err)
}

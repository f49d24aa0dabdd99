package api_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/local"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
)

// refusingBackend refuses every key as owned by partition 2, the way a node
// of partition 0 refuses another partition's key.
type refusingBackend struct{ *local.Backend }

func (refusingBackend) refuse(key []byte) error {
	return &api.WrongPartitionError{Key: key, Owner: 2, Partition: 0, Addr: "127.0.0.1:7101"}
}

func (b refusingBackend) Get(_ context.Context, _ int, key []byte, _ api.Read) (engines.Row, error) {
	return engines.Row{}, b.refuse(key)
}

func (b refusingBackend) Write(_ context.Context, _ int, writes []partition.Write, _ replicators.Ack, _ partition.RequestID) ([]uint64, error) {
	return nil, fmt.Errorf("check ownership: %w", b.refuse(writes[0].Key))
}

func TestWrongPartitionIsFailedPreconditionNamingTheOwner(t *testing.T) {
	_, lb := serve(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	plugdbv1.RegisterKVServer(srv, api.NewServer(refusingBackend{lb}))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	kv := plugdbv1.NewKVClient(conn)
	ctx := context.Background()

	_, putErr := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("k1"), Value: []byte("v")})
	_, getErr := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte("k1")})
	_, batchErr := kv.Batch(ctx, &plugdbv1.BatchRequest{Ops: []*plugdbv1.BatchOp{{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte("k1"), Value: []byte("v")}}})
	for what, err := range map[string]error{"put": putErr, "get": getErr, "batch": batchErr} {
		wantCode(t, what, err, codes.FailedPrecondition, `key "k1" belongs to partition 2, this node (127.0.0.1:7101) serves partition 0`)
		if owner, ok := api.WrongPartition(err); !ok || owner != 2 {
			t.Errorf("%s: WrongPartition(%v) = %d, %v; want 2, true", what, err, owner, ok)
		}
		if api.NotLeader(err) {
			t.Errorf("%s: NotLeader(%v) = true", what, err)
		}
	}
	if !strings.HasPrefix(status.Convert(putErr).Message(), "check ownership: ") {
		t.Errorf("put: %q lost the context it was wrapped in", status.Convert(putErr).Message())
	}
}

func TestWrongPartitionRecognizesOnlyItsReason(t *testing.T) {
	for _, err := range []error{
		nil,
		errors.New("plain"),
		status.Error(codes.FailedPrecondition, "no detail"),
		status.Error(codes.Unavailable, "other"),
	} {
		if _, ok := api.WrongPartition(err); ok {
			t.Errorf("WrongPartition(%v) = true", err)
		}
	}
}

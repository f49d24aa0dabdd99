package api_test

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Request ids through the API of `plugdb dev`: a retried create and a
// retried batch answer their first attempt's LSNs; bad ids, older seqs and
// reserved keys are refused by name.
func TestRequestIDs(t *testing.T) {
	kv, _ := serve(t)
	ctx := context.Background()
	id := func(seq uint64) *plugdbv1.RequestId { return &plugdbv1.RequestId{ClientId: "app", Seq: seq} }
	create := &plugdbv1.PutRequest{Key: []byte("k"), Value: []byte("v"), RequestId: id(1)}
	first, err := kv.Create(ctx, create)
	if err != nil {
		t.Fatal(err)
	}
	again, err := kv.Create(ctx, create)
	if err != nil || again.GetLsn() != first.GetLsn() || again.GetPartition() != first.GetPartition() {
		t.Fatalf("retried create: %v %v, want %v", again, err, first)
	}
	_, err = kv.Create(ctx, &plugdbv1.PutRequest{Key: []byte("k"), Value: []byte("v"), RequestId: id(2)})
	wantCode(t, "new create", err, codes.AlreadyExists, "already exists: k")

	// A batch over the partitions: each share is recorded in its partition.
	batch := &plugdbv1.BatchRequest{RequestId: id(3)}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		batch.Ops = append(batch.Ops, &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte(k), Value: []byte("1")})
	}
	b1, err := kv.Batch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := kv.Batch(ctx, batch)
	if err != nil || !slices.Equal(b1.GetLsns(), b2.GetLsns()) {
		t.Fatalf("retried batch: %v %v, want %v", b2.GetLsns(), err, b1.GetLsns())
	}

	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("k"), Value: []byte("v"), RequestId: id(1)})
	wantCode(t, "older seq", err, codes.FailedPrecondition, `request seq 1 of client "app" is older than its last, 3`)
	_, err = kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte("k"), RequestId: &plugdbv1.RequestId{ClientId: "app"}})
	wantCode(t, "seq 0", err, codes.InvalidArgument, "seq 0: seqs start at 1")
	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("k"), Value: []byte("v"), RequestId: &plugdbv1.RequestId{}})
	wantCode(t, "empty id", err, codes.InvalidArgument, "request_id: client_id and seq are empty")
	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("\x00plugdb\x00req\x00app"), Value: []byte("v")})
	wantCode(t, "reserved key", err, codes.InvalidArgument, "are reserved for plugdb's internal rows")
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte("\x00plugdb\x00req\x00app")})
	wantCode(t, "reserved key read", err, codes.InvalidArgument, "are reserved for plugdb's internal rows")
}

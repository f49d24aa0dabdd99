package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// A create sent through the router with a request id, then sent again as a
// client does after a lost ack, is applied once and both answers are the
// first attempt's; after kill -9 of the leader, the new leader answers the
// same request from the replicated request table, and refuses an older seq.
func TestRetriedCreateAppliedOnceAcrossFailover(t *testing.T) {
	t.Parallel()
	c := newReplicatedCluster(t, 1, 3, statementRepl("semi-sync"))
	c.waitInSync(0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	create := func(key string, seq uint64) (*plugdbv1.WriteResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c.kv.Create(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte("v"),
			RequestId: &plugdbv1.RequestId{ClientId: "e2e-client", Seq: seq}})
	}
	applied := func() uint64 {
		t.Helper()
		st, err := c.status()
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		return partStatus(st, 0).GetReplicas()[0].GetAppliedLsn()
	}

	first, err := create("once", 1)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, c.logs())
	}
	before := applied()
	again, err := create("once", 1)
	if err != nil || again.GetLsn() != first.GetLsn() {
		t.Fatalf("retried create: %v %v; want success at lsn %d", again, err, first.GetLsn())
	}
	if got := applied(); got != before {
		t.Fatalf("the retry was written: applied lsn %d, was %d", got, before)
	}
	// A new request of the client is a new create of an existing key.
	if _, err := create("once", 2); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("a new create of the key: %v, want AlreadyExists", err)
	}

	// Every replica holds the table: kill -9 the leader.
	st := c.waitInSync(0)
	old, oldEpoch := c.leaderOf(st, 0)
	c.signalGroup(old, syscall.SIGKILL)
	<-c.nodes[old].done
	leader, epoch := c.waitLeaderAfter(0, old, oldEpoch)
	t.Logf("leader %s (epoch %d) killed; %s leads in epoch %d", old, oldEpoch, leader, epoch)
	before = applied()
	after, err := create("once", 1)
	if err != nil || after.GetLsn() != first.GetLsn() {
		t.Fatalf("create retried at the new leader: %v %v; want success at lsn %d\n%s", after, err, first.GetLsn(), c.logs())
	}
	if got := applied(); got != before {
		t.Fatalf("the retry was written by the new leader: applied lsn %d, was %d", got, before)
	}
	row, err := c.kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte("once")})
	if err != nil || row.GetLsn() != first.GetLsn() {
		t.Fatalf("get once: %v %v; want the row of lsn %d", row, err, first.GetLsn())
	}

	// The client goes on; an older seq is refused, saying so.
	if _, err := create("twice", 3); err != nil {
		t.Fatalf("create seq 3: %v", err)
	}
	_, err = create("once", 1)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), `request seq 1 of client "e2e-client" is older than its last, 3`) {
		t.Fatalf("older seq: %v, want FailedPrecondition naming the seqs", err)
	}

	// The table is invisible: a scan and the key count show the user's keys.
	stream, err := c.kv.Scan(ctx, &plugdbv1.ScanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for {
		kv, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		keys = append(keys, string(kv.GetKey()))
	}
	if !slices.Equal(keys, []string{"once", "twice"}) {
		t.Fatalf("scan: %q, want once, twice", keys)
	}
	st, err = c.status()
	if err != nil {
		t.Fatal(err)
	}
	if n := partStatus(st, 0).GetReplicas()[0].GetKeys(); n != 2 {
		t.Fatalf("leader reports %d keys, want 2", n)
	}
	// A key in the reserved space is refused.
	if _, err := c.put("\x00plugdb\x00req\x00e2e-client", "x", 10*time.Second); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("put of a reserved key: %v, want InvalidArgument", err)
	}
}

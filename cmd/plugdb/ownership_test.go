package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/datadir"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/rowfile"
	"github.com/plugdb/plugdb/partitioners/hash"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// hashKeyOn returns the first key prefix-N that the hash partitioner over
// partitions places in partition p, without writing it anywhere.
func hashKeyOn(t *testing.T, partitions, p int, prefix string) string {
	t.Helper()
	ctx := context.Background()
	part, err := hash.Open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := part.Configure(ctx, partitions, nil); err != nil {
		t.Fatal(err)
	}
	out := make([]int, 1)
	for i := range 1000 {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if err := part.Locate(ctx, [][]byte{[]byte(k)}, out); err != nil {
			t.Fatal(err)
		}
		if out[0] == p {
			return k
		}
	}
	t.Fatalf("no key %s-N of partition %d", prefix, p)
	return ""
}

// wantWrongPartition fails unless err is a node's refusal of key, a key of
// partition owner, by node addr of partition served.
func wantWrongPartition(t *testing.T, what string, err error, key string, owner, served int, addr string) {
	t.Helper()
	msg := fmt.Sprintf("key %q belongs to partition %d, this node (%s) serves partition %d", key, owner, addr, served)
	if got, ok := api.WrongPartition(err); !ok || got != owner || status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("%s: %v, want FailedPrecondition WRONG_PARTITION containing %q", what, err, msg)
	}
}

// TestNodeRefusesKeysOfAnotherPartition sends a key of partition 1 straight
// to partition 0's leader, by the CLI and over gRPC with every verb: each is
// refused naming both partitions, and nothing is written anywhere.
func TestNodeRefusesKeysOfAnotherPartition(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 2, 1)
	foreign := hashKeyOn(t, 2, 1, "own")
	mine := hashKeyOn(t, 2, 0, "own")
	st := mustStatus(t, c)
	leader0, _ := c.leaderOf(st, 0)

	res := runPlugdb(t, 30*time.Second, "put", "--addr", leader0, foreign, "v")
	want := fmt.Sprintf("key %q belongs to partition 1, this node (%s) serves partition 0", foreign, leader0)
	if res.code != 2 || !strings.Contains(res.stderr, want) {
		t.Fatalf("plugdb put --addr %s %s: code %d %q, want 2 and %q", leader0, foreign, res.code, res.stderr, want)
	}
	res = runPlugdb(t, 30*time.Second, "get", "--node", leader0, foreign)
	if res.code != 2 || !strings.Contains(res.stderr, want) {
		t.Fatalf("plugdb get --node %s %s: code %d %q, want 2 and %q", leader0, foreign, res.code, res.stderr, want)
	}

	kv := plugdbv1.NewKVClient(dial(t, leader0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fk := []byte(foreign)
	_, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: fk, Value: []byte("v")})
	wantWrongPartition(t, "put", err, foreign, 1, 0, leader0)
	_, err = kv.Create(ctx, &plugdbv1.PutRequest{Key: fk, Value: []byte("v")})
	wantWrongPartition(t, "create", err, foreign, 1, 0, leader0)
	_, err = kv.Update(ctx, &plugdbv1.PutRequest{Key: fk, Value: []byte("v")})
	wantWrongPartition(t, "update", err, foreign, 1, 0, leader0)
	_, err = kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: fk})
	wantWrongPartition(t, "delete", err, foreign, 1, 0, leader0)
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: fk})
	wantWrongPartition(t, "strong get", err, foreign, 1, 0, leader0)
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: fk, Consistency: plugdbv1.Consistency_CONSISTENCY_STALE})
	wantWrongPartition(t, "stale get", err, foreign, 1, 0, leader0)
	// A batch with one foreign key writes none of its keys.
	_, err = kv.Batch(ctx, &plugdbv1.BatchRequest{Ops: []*plugdbv1.BatchOp{
		{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte(mine), Value: []byte("v")},
		{Op: plugdbv1.BatchOp_OP_PUT, Key: fk, Value: []byte("v")},
	}})
	wantWrongPartition(t, "batch", err, foreign, 1, 0, leader0)

	// Nothing was written: the router finds neither key, the node's scan
	// holds neither.
	for _, k := range []string{foreign, mine} {
		if _, err := c.kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(k)}); status.Code(err) != codes.NotFound {
			t.Fatalf("router get %s after the refusals: %v, want NotFound", k, err)
		}
	}
	rows, err := scanNode(t, leader0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rows[foreign]; ok {
		t.Fatalf("partition 0's scan holds %s, which it refused", foreign)
	}
	if _, ok := rows[mine]; ok {
		t.Fatalf("partition 0's scan holds %s, of a refused batch", mine)
	}

	// The same key through the router lands on partition 1, and its own
	// key on partition 0: the node and the router agree.
	for k, p := range map[string]uint32{foreign: 1, mine: 0} {
		resp, err := c.kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte(k), Value: []byte("v")})
		if err != nil || resp.GetPartition() != p {
			t.Fatalf("router put %s: %v %v, want partition %d", k, resp, err, p)
		}
	}
	if _, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(mine)}); err != nil {
		t.Fatalf("partition 0's leader refuses its own key %s: %v", mine, err)
	}
}

// TestNodeScanSkipsRowsOfAnotherPartition plants a row of partition 1 in
// partition 0's engine (as a node that took any key it was sent could
// have): the node's scans, strong and stale, with and without a limit, and
// the router's scan leave it out, and a read of it is refused.
func TestNodeScanSkipsRowsOfAnotherPartition(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 2, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var owned []string
	for i := range 20 {
		k := hashKeyOn(t, 2, 0, fmt.Sprintf("scan%02d", i))
		if _, err := c.kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		owned = append(owned, k)
	}
	st := mustStatus(t, c)
	leader0, _ := c.leaderOf(st, 0)
	stray := hashKeyOn(t, 2, 1, "scan05")

	// Stop the node and write the stray row into its engine, after its
	// last LSN (the replicator is none: the engine is the only record).
	c.nodes[leader0].kill()
	plantRow(t, datadir.PartitionDir(c.dataOf[leader0], 0), stray)
	c.startNode(leader0)
	c.waitReady()

	rows, err := scanNode(t, leader0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rows[stray]; ok || len(rows) != len(owned) {
		t.Fatalf("stale scan of partition 0: %d rows (stray %s present: %v), want its %d own", len(rows), stray, ok, len(owned))
	}
	kv := plugdbv1.NewKVClient(dial(t, leader0))
	// A strong scan from just below the stray row with a limit: the limit
	// counts owned rows.
	stream, err := kv.Scan(ctx, &plugdbv1.ScanRequest{Start: []byte("scan05"), Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		row, err := stream.Recv()
		if err != nil {
			break
		}
		got = append(got, string(row.GetKey()))
	}
	if len(got) != 3 || strings.Contains(strings.Join(got, " "), stray) {
		t.Fatalf("strong scan from scan05 limit 3: %v, want 3 owned rows without %s", got, stray)
	}
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(stray), Consistency: plugdbv1.Consistency_CONSISTENCY_STALE})
	wantWrongPartition(t, "get of the stray row", err, stray, 1, 0, leader0)

	res := runPlugdb(t, 30*time.Second, "scan", "--addr", c.grpc, "--prefix", "scan")
	if res.code != 0 || strings.Contains(res.stdout, stray) || strings.Count(res.stdout, "\n") != len(owned) {
		t.Fatalf("router scan: code %d\n%s%s\nwant the %d owned rows only", res.code, res.stdout, res.stderr, len(owned))
	}
}

// plantRow writes key into the rowfile engine in dir, at the LSN after its
// last, with the engine opened in this process.
func plantRow(t *testing.T, dir, key string) {
	t.Helper()
	ctx := context.Background()
	eng, err := rowfile.Open(ctx, engines.Options{Dir: dir, Params: map[string]string{"sync": "batch"}})
	if err != nil {
		t.Fatal(err)
	}
	lsn, err := eng.AppliedLSN(ctx)
	if err == nil {
		err = eng.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte(key), Value: []byte("stray"), LSN: lsn + 1}})
	}
	if closeErr := eng.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		t.Fatalf("plant %s in %s: %v", key, dir, err)
	}
}

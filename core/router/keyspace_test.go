package router

import (
	"context"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
)

// keyspaceNode is a node's backend that serves every request and reports
// itself as partition 0's leader.
type keyspaceNode struct{ refusingNode }

func (*keyspaceNode) Status(context.Context) (*plugdbv1.StatusResponse, error) {
	return &plugdbv1.StatusResponse{Partitions: []*plugdbv1.PartitionStatus{{Replicas: []*plugdbv1.Replica{{Role: "leader"}}}}}, nil
}

// A keyspace's router names its keyspace in every request it sends a node:
// the node serves that keyspace alone, and refuses a request naming none.
func TestRouterNamesItsKeyspace(t *testing.T) {
	n := &keyspaceNode{}
	r := routeToKeyspace(t, n, "events")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Get(ctx, 0, []byte("k"), api.Read{}); err != nil {
		t.Errorf("get: %v", err)
	}
	put := partition.Write{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), Cond: partition.Always}
	for _, w := range []struct {
		name   string
		writes []partition.Write
	}{
		{"put", []partition.Write{put}},
		{"create", []partition.Write{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), Cond: partition.MustNotExist}}},
		{"update", []partition.Write{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), Cond: partition.MustExist}}},
		{"delete", []partition.Write{{Op: engines.OpDelete, Key: []byte("k"), Cond: partition.MustExist}}},
		{"delete always", []partition.Write{{Op: engines.OpDelete, Key: []byte("k"), Cond: partition.Always}}},
		{"batch", []partition.Write{put, put}},
	} {
		if _, err := r.Write(ctx, 0, w.writes, replicators.AckDefault, partition.RequestID{}); err != nil {
			t.Errorf("%s: %v", w.name, err)
		}
	}
	for _, err := range r.Scan(ctx, 0, engines.ScanRange{}, api.Read{}) {
		t.Errorf("scan: %v", err)
	}
	st, err := r.Status(ctx)
	if err != nil || len(st.GetPartitions()[0].GetReplicas()) != 1 || st.GetPartitions()[0].GetReplicas()[0].GetRole() != "leader" {
		t.Errorf("status: %v, %v; want the node's own report (role leader)", st, err)
	}
	if got := n.calls.Load(); got != 7 {
		t.Errorf("%d reads and writes served, want 7", got)
	}
}

package router

import (
	"testing"

	"google.golang.org/protobuf/proto"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

func TestStatusMergeReplication(t *testing.T) {
	leader := &plugdbv1.Replica{Partition: 0, Addr: "127.0.0.1:7101", Role: "leader", Epoch: 2, AppliedLsn: 9, PersistedLsn: 9}
	f1 := &plugdbv1.Replica{Partition: 0, Addr: "127.0.0.1:7102", Role: "follower", Epoch: 2, AppliedLsn: 8, PersistedLsn: 8}
	f2 := &plugdbv1.Replica{Partition: 0, Addr: "127.0.0.1:7103", Role: "unreachable", Epoch: 2, AppliedLsn: 3}
	ps := &plugdbv1.PartitionStatus{Partition: 0, Epoch: 2, Replicas: []*plugdbv1.Replica{f1, leader, f2}}
	nodes := []*plugdbv1.PartitionStatus{
		{Partition: 0, Epoch: 2, Replicas: []*plugdbv1.Replica{f1}, Ack: "async"},
		{Partition: 0, Epoch: 2, Ack: "semi-sync", AckFallback: true, Replicas: []*plugdbv1.Replica{leader,
			{Addr: "127.0.0.1:7102", Role: "follower", Isr: true, PersistedLsn: 9, LagStatements: 0, LagMs: 0},
			{Addr: "127.0.0.1:7103", Role: "follower", PersistedLsn: 4, LagStatements: 5, LagMs: 2500, ReplicationError: "connection refused"},
		}},
		nil, // did not answer
	}
	mergeReplication(ps, nodes)
	if ps.GetAck() != "semi-sync" || !ps.GetAckFallback() {
		t.Errorf("ack %q fallback %v, want the leader's: semi-sync, true", ps.GetAck(), ps.GetAckFallback())
	}
	want := []*plugdbv1.Replica{
		{Partition: 0, Addr: "127.0.0.1:7102", Role: "follower", Epoch: 2, AppliedLsn: 8, Isr: true, PersistedLsn: 9},
		{Partition: 0, Addr: "127.0.0.1:7101", Role: "leader", Epoch: 2, AppliedLsn: 9, PersistedLsn: 9},
		{Partition: 0, Addr: "127.0.0.1:7103", Role: "unreachable", Epoch: 2, AppliedLsn: 3, PersistedLsn: 4, LagStatements: 5, LagMs: 2500, ReplicationError: "connection refused"},
	}
	for i, r := range ps.GetReplicas() {
		if !proto.Equal(r, want[i]) {
			t.Errorf("replica %d: %v\nwant %v", i, r, want[i])
		}
	}

	// Without a leader: the first mode reported, and nothing else changes.
	f := &plugdbv1.Replica{Addr: "127.0.0.1:7102", Role: "follower", Isr: true, LagStatements: 1, LagMs: 3}
	ps = &plugdbv1.PartitionStatus{Replicas: []*plugdbv1.Replica{f}}
	mergeReplication(ps, []*plugdbv1.PartitionStatus{{Replicas: []*plugdbv1.Replica{f}, Ack: "sync"}})
	if ps.GetAck() != "sync" || ps.GetAckFallback() || !f.GetIsr() || f.GetLagStatements() != 1 || f.GetLagMs() != 3 {
		t.Errorf("without a leader: %v", ps)
	}
	// Nobody answered: zero.
	ps = &plugdbv1.PartitionStatus{Replicas: []*plugdbv1.Replica{{Addr: "x", Role: "unreachable"}}}
	mergeReplication(ps, []*plugdbv1.PartitionStatus{nil})
	if ps.GetAck() != "" || ps.GetAckFallback() {
		t.Errorf("nobody answered: %v", ps)
	}
}

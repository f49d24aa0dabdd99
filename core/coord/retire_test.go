package coord_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/coord"
)

// TestForgetPartitions: the znodes of partitions a move retired are removed
// once no node of theirs is registered — refused while one runs or a move
// is recorded — and the partitions kept are untouched; a new candidate of a
// forgotten partition then leads with a new in-sync set.
func TestForgetPartitions(t *testing.T) {
	cfg, c := newMetaCluster(t) // 2 partitions
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for n := range 4 {
		if err := coord.EnsurePartition(ctx, c, n); err != nil {
			t.Fatal(err)
		}
	}
	// Partition 3 ran a replica, which left an in-sync set naming it.
	old := startCandidate(t, cfg, coord.CandidateConfig{Partition: 3, Addr: "127.0.0.1:1"})
	if !waitLeader(old) {
		t.Fatal("partition 3's replica never leads")
	}
	if _, err := coord.ForgetPartitions(ctx, c, 2); !errors.Is(err, coord.ErrPartitionInUse) {
		t.Fatalf("ForgetPartitions with a node running = %v, want ErrPartitionInUse", err)
	}
	old.stop()
	<-old.done

	if _, err := coord.BeginReshard(ctx, c, coord.Meta{Partitions: 3, Partitioner: meta.Partitioner}); err != nil {
		t.Fatal(err)
	}
	if _, err := coord.ForgetPartitions(ctx, c, 2); !errors.Is(err, coord.ErrReshardRunning) {
		t.Fatalf("ForgetPartitions during a move = %v, want ErrReshardRunning", err)
	}
	if err := coord.AbortReshard(ctx, c); err != nil {
		t.Fatal(err)
	}

	got, err := coord.ForgetPartitions(ctx, c, 2)
	if err != nil || !slices.Equal(got, []int{2, 3}) {
		t.Fatalf("ForgetPartitions = %v, %v; want [2 3]", got, err)
	}
	p := coord.PathsOf(cfg)
	for n := range 4 {
		ok, _, err := c.Conn().Exists(p.Epoch(n))
		if err != nil || ok != (n < 2) {
			t.Errorf("partition %d's epoch znode exists = %v (%v); want %v", n, ok, err, n < 2)
		}
	}
	// A replica at another address leads the partition made again: no
	// in-sync set from before bars it.
	if err := coord.EnsurePartition(ctx, c, 3); err != nil {
		t.Fatal(err)
	}
	if fresh := startCandidate(t, cfg, coord.CandidateConfig{Partition: 3, Addr: "127.0.0.1:2"}); !waitLeader(fresh) {
		t.Fatal("a new replica of the forgotten partition 3 never leads")
	}
	if ok, _, _ := c.Conn().Exists(p.ISR(3)); !ok {
		t.Error("no in-sync set after the new replica leads")
	}
}

// waitLeader waits up to 10 s for r to lead.
func waitLeader(r *replica) bool {
	for range 200 {
		if _, ok := r.k.Leader(); ok {
			return true
		}
		time.Sleep(50 * time.Millisecond) // polling the candidate, bounded
	}
	return false
}

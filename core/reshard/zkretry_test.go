package reshard

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/plugdb/plugdb/core/coord"
)

// TestAdvanceThroughALostAnswer: a step of the move whose answer is lost
// with the ZooKeeper connection, but which was made, is taken as made (the
// record says so) and not refused as out of order; one that was not made is
// made again; another error is not retried.
func TestAdvanceThroughALostAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := coord.Meta{Partitions: 2, Partitioner: coord.PluginMeta{Plugin: "hash"}}
	client := connectCluster(t, "reshard-advance-", from)
	if _, err := coord.BeginReshard(ctx, client, coord.Meta{Partitions: 3, Partitioner: from.Partitioner}); err != nil {
		t.Fatal(err)
	}
	m := &Mover{Client: client}
	calls := 0
	err := m.advance(ctx, coord.ReshardFenced, func() error {
		calls++
		if calls == 1 {
			return fmt.Errorf("set state: %w", zk.ErrConnectionClosed) // lost before it reached ZooKeeper
		}
		if err := coord.SetReshardState(ctx, client, coord.ReshardCopying, coord.ReshardFenced); err != nil {
			return err
		}
		return fmt.Errorf("set state: %w", zk.ErrConnectionClosed) // made, its answer lost
	})
	if err != nil || calls != 2 {
		t.Fatalf("advance = %v after %d calls; want nil after 2", err, calls)
	}
	if r, _, err := coord.ReadReshard(ctx, client); err != nil || r.State != coord.ReshardFenced {
		t.Fatalf("state %s, %v; want fenced", r.State, err)
	}
	calls = 0
	err = m.advance(ctx, coord.ReshardFlipped, func() error { calls++; return zk.ErrNoAuth })
	if err != zk.ErrNoAuth || calls != 1 {
		t.Fatalf("advance on another error = %v after %d calls; want it at once", err, calls)
	}
	if err := Abort(ctx, client); err != nil {
		t.Fatal(err)
	}
}

package reshard

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/coord"
	nodev1 "github.com/plugdb/plugdb/proto/plugdb/node/v1"
)

// TestGRPCNodesGiveUpOnABlackHole: a leader whose address accepts
// connections but never answers (a black-holed link) fails a snapshot
// after Idle, naming the stuck node, and an import with Unavailable (which
// the mover retries), instead of holding the move until its deadline.
func TestGRPCNodesGiveUpOnABlackHole(t *testing.T) {
	hole := blackHole(t)
	client := connectCluster(t, "reshard-blackhole-", coord.Meta{Partitions: 1, Partitioner: coord.PluginMeta{Plugin: "hash"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := coord.EnsurePartition(ctx, client, 0); err != nil {
		t.Fatal(err)
	}
	// The leader znode as a leader writes it, naming the black hole.
	info, _ := json.Marshal(coord.LeaderInfo{Addr: hole, Epoch: 1})
	leaderPath := coord.PathsOf(client.Config()).Leader(0)
	if _, err := client.Conn().Create(leaderPath, info, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	top := coord.WatchTopology(ctx, client, 1)
	defer top.Close()
	for top.Partition(0).Leader.Addr != hole {
		select {
		case <-ctx.Done():
			t.Fatal("the topology never shows the leader")
		case <-top.Changed():
		}
	}
	nodes := NewGRPCNodes(top)
	nodes.Idle = 300 * time.Millisecond
	defer nodes.Close()

	start := time.Now()
	err := nodes.Snapshot(ctx, 0, 0, func(uint64, uint64, []Row) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "snapshot from "+hole+": no rows for 300ms") {
		t.Fatalf("snapshot from a black hole = %v", err)
	}
	err = nodes.Import(ctx, 0, 2, []*nodev1.ImportRow{{Key: []byte("k"), Value: []byte("v")}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no answer in 300ms") {
		t.Fatalf("import into a black hole = %v, want Unavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("gave up only at the test's deadline, after %v", time.Since(start))
	}
}

// blackHole listens on 127.0.0.1 and reads and drops whatever its
// connections send, answering nothing; the test's cleanup closes it.
func blackHole(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

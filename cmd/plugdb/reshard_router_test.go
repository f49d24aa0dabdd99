package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// TestClusterRouterFollowsAReshard moves a serving keyspace from 2
// partitions to 3 with `plugdb reshard` while a client writes through the
// router: every write succeeds (the router retries the refused ones at the
// keys' new owners), every row is read back after the move, and the router
// reports the new layout.
func TestClusterRouterFollowsAReshard(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 2, 1)
	for i := range 100 {
		if _, err := c.put(fmt.Sprintf("user:%03d", i), "v", 10*time.Second); err != nil {
			t.Fatalf("put: %v\n%s", err, c.logs())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written []string
		errs    []error
	)
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			k := fmt.Sprintf("live:%05d", i)
			if _, err := c.put(k, "v", 15*time.Second); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("put %s: %w", k, err))
				mu.Unlock()
				continue
			}
			mu.Lock()
			written = append(written, k)
			mu.Unlock()
		}
	})
	defer func() { cancel(); wg.Wait() }()

	mv := startProc(t, "reshard", "reshard", "--config", c.cfg, "--partitions", "3")
	c.waitFor("the move to be recorded", func() bool { return strings.Contains(mv.out.String(), "moving keyspace") || mv.exited() })
	addr := testutil.FreeAddr(t)
	c.dataOf[addr] = t.TempDir()
	c.partOf[addr] = 2
	c.startNode(addr, "--new-partition") // the move adds it
	select {
	case <-mv.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("reshard still running after 90s\n%s\n%s", mv.out.String(), c.logs())
	}
	if mv.waitErr != nil {
		t.Fatalf("reshard: %v\n%s\n%s", mv.waitErr, mv.out.String(), c.logs())
	}
	c.waitFor("the router to report 3 partitions", func() bool {
		st, err := c.status()
		return err == nil && len(st.GetPartitions()) == 3
	})
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d of %d writes failed during the move, first: %v\n%s\n%s", len(errs), len(errs)+len(written), errs[0], mv.out.String(), c.logs())
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	keys := written
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("user:%03d", i))
	}
	parts := map[uint32]int{}
	for _, k := range keys {
		resp, err := c.kv.Get(rctx, &plugdbv1.GetRequest{Key: []byte(k)})
		if err != nil || string(resp.GetValue()) != "v" {
			t.Fatalf("get %s after the move: %v, %v\n%s", k, resp, err, c.logs())
		}
		w, err := c.put(k, "v", 10*time.Second)
		if err != nil {
			t.Fatalf("put %s after the move: %v", k, err)
		}
		parts[w.GetPartition()]++
	}
	if len(parts) != 3 {
		t.Fatalf("writes after the move landed on partitions %v, want 3", parts)
	}
	t.Logf("%d writes during the move; %s", len(written), strings.TrimSpace(mv.out.String()))
}

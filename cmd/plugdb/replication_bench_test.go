package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Benchmarks of statement replication on real processes (a router, partition
// nodes with rowfile `sync: batch` engines and their plugin processes, and
// ZooKeeper). Each sub-benchmark starts its own cluster; run them with a fixed
// count, e.g.
//
//	go test -run '^$' -bench 'BenchmarkReplication|BenchmarkFollowerCatchUp' -benchtime 20000x ./cmd/plugdb

// replBenchWorkers is the number of concurrent clients, over 4 connections.
const replBenchWorkers = 64

// BenchmarkReplicationAckModes puts b.N unique keys (16 bytes, 100-byte
// values) with 64 concurrent clients through the router, on 2 partitions ×
// 2 replicas: replicator none (the follower receives nothing; same process
// count) and statement with ack async, semi-sync and sync. It reports ops/s,
// p50 and p99 latency, and the largest follower lag (lag_statements, lag_ms)
// seen by sampling the router's Status every 100 ms during the run (in every
// mode, so the sampling costs all of them alike).
func BenchmarkReplicationAckModes(b *testing.B) {
	for _, mode := range []string{"none", "async", "semi-sync", "sync"} {
		b.Run(fmt.Sprintf("%s/clients=%d", mode, replBenchWorkers), func(b *testing.B) {
			repl := "{plugin: none}"
			if mode != "none" {
				repl = fmt.Sprintf("{plugin: statement, options: {ack: %s}}", mode)
			}
			c := newReplicatedCluster(b, 2, 2, repl)
			replBenchWaitInSync(b, c)
			benchReplicatedPuts(b, c)
		})
	}
}

// replBenchWaitInSync waits until every replica is in its partition's in-sync
// set, so semi-sync and sync writes have followers to count from the start.
func replBenchWaitInSync(b *testing.B, c *testCluster) {
	b.Helper()
	c.waitFor("every replica in sync", func() bool {
		st, err := c.status()
		if err != nil {
			return false
		}
		n := 0
		for _, ps := range st.GetPartitions() {
			for _, r := range ps.GetReplicas() {
				if !r.GetIsr() {
					return false
				}
				n++
			}
		}
		return n == len(c.nodes)
	})
}

func benchReplicatedPuts(b *testing.B, c *testCluster) {
	ctx := context.Background()
	var clients []plugdbv1.KVClient
	for range 4 {
		clients = append(clients, plugdbv1.NewKVClient(dial(b, c.grpc)))
	}
	value := make([]byte, 100)
	// Warm every connection up (and both partitions) before the clock starts.
	for i := range 64 {
		if _, err := clients[i%len(clients)].Put(ctx, &plugdbv1.PutRequest{Key: fmt.Appendf(nil, "warm%012d", i), Value: value}); err != nil {
			b.Fatalf("warm-up put: %v\n%s", err, c.logs())
		}
	}

	// Sample the router's view of the followers' lag every 100 ms.
	var maxLagStatements uint64
	var maxLagMs int64
	samples := 0
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
			st, err := c.status()
			if err != nil {
				continue
			}
			samples++
			for _, ps := range st.GetPartitions() {
				for _, r := range ps.GetReplicas() {
					maxLagStatements = max(maxLagStatements, r.GetLagStatements())
					maxLagMs = max(maxLagMs, r.GetLagMs())
				}
			}
		}
	})

	lat := make([][]time.Duration, replBenchWorkers)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range replBenchWorkers {
		wg.Go(func() {
			kv := clients[w%len(clients)]
			mine := make([]time.Duration, 0, b.N/replBenchWorkers+1)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					break
				}
				k := fmt.Appendf(nil, "key%013d", i) // unique, 16 bytes
				t0 := time.Now()
				if _, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: k, Value: value}); err != nil {
					b.Error(err)
					break
				}
				mine = append(mine, time.Since(t0))
			}
			lat[w] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	stopSampling()
	sampler.Wait()

	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds())
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(maxLagStatements), "max-lag-statements")
	b.ReportMetric(float64(maxLagMs), "max-lag-ms")
	if b.N > 1 {
		b.Logf("%d puts in %v; %d status samples", len(all), elapsed.Round(time.Millisecond), samples)
	}
}

// BenchmarkFollowerCatchUp measures how fast a follower catches up from the
// leader's statement log (retain_bytes is 1 GiB, so no snapshot): on 1
// partition × 2 replicas with ack async, it stops the follower (SIGTERM),
// puts b.N unique keys (64 clients, 100-byte values; the leader groups
// concurrent puts into statements), starts the follower again and times it
// until its applied LSN equals the leader's. It reports the catch-up time
// from the follower's start, the writes (LSNs) replayed per second over that
// time (writes/s) and over the time after its first applied statement
// (replay-writes/s, which leaves out the process start and the reconnection).
// It fails if the follower's applied LSN stops moving for 15 s short of the
// leader's.
func BenchmarkFollowerCatchUp(b *testing.B) {
	c := newReplicatedCluster(b, 1, 2, "{plugin: statement, options: {ack: async, retain_bytes: 1073741824}}")
	replBenchWaitInSync(b, c)
	leader, _ := c.leaderOf(mustStatusTB(b, c), 0)
	follower := ""
	for addr := range c.nodes {
		if addr != leader {
			follower = addr
		}
	}
	if leader == "" || follower == "" {
		b.Fatalf("leader %q, follower %q\n%s", leader, follower, c.logs())
	}
	applied := func(kv plugdbv1.KVClient) (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := kv.Status(ctx, &plugdbv1.StatusRequest{})
		if err != nil {
			return 0, err
		}
		if len(st.GetPartitions()) != 1 || len(st.GetPartitions()[0].GetReplicas()) == 0 {
			return 0, fmt.Errorf("status without the replica: %v", st)
		}
		return st.GetPartitions()[0].GetReplicas()[0].GetAppliedLsn(), nil
	}
	leaderKV := plugdbv1.NewKVClient(dial(b, leader))
	followerKV := plugdbv1.NewKVClient(dial(b, follower))

	before, err := applied(followerKV)
	if err != nil {
		b.Fatal(err)
	}
	// Stop the follower cleanly.
	p := c.nodes[follower]
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		b.Fatalf("follower %s did not stop in 30s\n%s", follower, c.logs())
	}

	// Write b.N puts to the leader through the router.
	ctx := context.Background()
	value := make([]byte, 100)
	var next atomic.Int64
	var wg sync.WaitGroup
	kv := c.kv
	for range replBenchWorkers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: fmt.Appendf(nil, "key%013d", i), Value: value}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	target, err := applied(leaderKV)
	if err != nil {
		b.Fatal(err)
	}

	// Start the follower and time it until it applied everything.
	b.ResetTimer()
	start := time.Now()
	c.startNode(follower)
	var up, firstApply time.Duration
	var from, firstLSN, last uint64
	moved := start // the last time the follower's applied LSN moved
	caughtUp, stalled := false, false
	testutil.Eventually(b.Context(), 2*time.Minute, func() bool {
		lsn, err := applied(followerKV)
		if err == nil {
			if up == 0 {
				up, from = time.Since(start), lsn
			}
			if firstApply == 0 && lsn > before {
				firstApply, firstLSN = time.Since(start), lsn
			}
			if caughtUp = lsn >= target; caughtUp {
				return true
			}
			if lsn != last {
				last, moved = lsn, time.Now()
			}
		}
		stalled = time.Since(moved) > 15*time.Second
		return stalled
	})
	if !caughtUp {
		st, err := c.status()
		b.Fatalf("follower %s did not catch up with the leader's lsn %d (stalled: %v): applied lsn %d, unchanged for %v; router status: %v %v\n%s",
			follower, target, stalled, last, time.Since(moved).Round(time.Millisecond), st, err, c.logs())
	}
	took := time.Since(start)
	b.StopTimer()
	out := c.nodes[follower].out.String()
	if strings.Contains(out, "rebuilding from a snapshot") {
		b.Fatalf("the follower was rebuilt from a snapshot, not caught up from the log\n%s", out)
	}
	behind := float64(target - before)
	b.ReportMetric(float64(took.Milliseconds()), "catchup-ms")
	b.ReportMetric(behind, "behind-writes")
	b.ReportMetric(behind/took.Seconds(), "writes/s")
	if firstApply > 0 && took > firstApply {
		b.ReportMetric(float64(target-firstLSN)/(took-firstApply).Seconds(), "replay-writes/s")
	}
	if b.N > 1 {
		b.Logf("follower %s behind by %d lsns (applied %d before its stop, %d after its start, leader at %d): answering after %v, first apply after %v (at lsn %d), caught up after %v",
			follower, target-before, before, from, target, up.Round(time.Millisecond), firstApply.Round(time.Millisecond), firstLSN, took.Round(time.Millisecond))
	}
}

func mustStatusTB(b testing.TB, c *testCluster) *plugdbv1.StatusResponse {
	b.Helper()
	st, err := c.status()
	if err != nil {
		b.Fatal(err)
	}
	return st
}

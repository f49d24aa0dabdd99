package main

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/datadir"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// End-to-end tests of statement replication: real ZooKeeper, router and node
// processes; writes go through the router, follower reads straight to the
// follower's node API with stale consistency (what `plugdb get --node` does).

// replWorkers bounds the goroutines of a bulk write or read.
const replWorkers = 64

// replKey and replValue name the i-th key of a test and its value.
func replKey(prefix string, i int) string { return fmt.Sprintf("%s-%05d", prefix, i) }

func replValue(tag string, i, size int) string {
	v := fmt.Sprintf("%s-%05d-", tag, i)
	if len(v) < size {
		v += strings.Repeat("x", size-len(v))
	}
	return v
}

// putAll writes every key of kvs through client (the router's, or a node's)
// with replWorkers goroutines, failing the test on the first errors. It
// returns the partition each key landed on.
func putAll(t *testing.T, c *testCluster, kvs map[string]string) map[string]int {
	t.Helper()
	keys := make([]string, 0, len(kvs))
	for k := range kvs {
		keys = append(keys, k)
	}
	parts := make([]int, len(keys))
	var next atomic.Int64
	var failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for range replWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) || failed.Load() > 0 {
					return
				}
				resp, err := c.put(keys[i], kvs[keys[i]], 20*time.Second)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					errs = append(errs, fmt.Sprintf("put %s: %v", keys[i], err))
					mu.Unlock()
					return
				}
				parts[i] = int(resp.GetPartition())
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d writes failed, first: %s\n%s", len(errs), errs[0], c.logs())
	}
	byKey := make(map[string]int, len(keys))
	for i, k := range keys {
		byKey[k] = parts[i]
	}
	return byKey
}

// readAll reads every key of want from the node at addr with a stale read,
// concurrently; a value of "" means the key must be absent. It reports every
// mismatch (the first few in detail).
func readAll(t *testing.T, c *testCluster, addr string, want map[string]string) {
	t.Helper()
	kv := plugdbv1.NewKVClient(dial(t, addr))
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	var next atomic.Int64
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for range replWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				k := keys[i]
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(k), Consistency: plugdbv1.Consistency_CONSISTENCY_STALE})
				cancel()
				var problem string
				switch {
				case want[k] == "" && status.Code(err) != codes.NotFound:
					problem = fmt.Sprintf("%s: want not found, got %q %v", k, resp.GetValue(), err)
				case want[k] != "" && err != nil:
					problem = fmt.Sprintf("%s: %v", k, err)
				case want[k] != "" && string(resp.GetValue()) != want[k]:
					problem = fmt.Sprintf("%s: value %.40q, want %.40q", k, resp.GetValue(), want[k])
				}
				if problem != "" {
					mu.Lock()
					bad = append(bad, problem)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("node %s: %d of %d keys wrong, e.g. %s\n%s", addr, len(bad), len(keys), strings.Join(bad[:min(5, len(bad))], "; "), c.logs())
	}
}

// replicaIn returns the replica at addr of partition p in st.
func replicaIn(st *plugdbv1.StatusResponse, p int, addr string) *plugdbv1.Replica {
	for _, ps := range st.GetPartitions() {
		if int(ps.GetPartition()) != p {
			continue
		}
		for _, r := range ps.GetReplicas() {
			if r.GetAddr() == addr {
				return r
			}
		}
	}
	return nil
}

// followersOf returns partition p's nodes other than its leader.
func (c *testCluster) followersOf(st *plugdbv1.StatusResponse, p int) []string {
	leader, _ := c.leaderOf(st, p)
	var fs []string
	for addr, part := range c.partOf {
		if part == p && addr != leader {
			fs = append(fs, addr)
		}
	}
	return fs
}

// waitCaughtUp waits until follower of partition p is a follower in the ISR
// with no lag and the leader's applied LSN, and returns the last status.
func (c *testCluster) waitCaughtUp(p int, follower string) *plugdbv1.StatusResponse {
	c.t.Helper()
	var last *plugdbv1.StatusResponse
	c.waitFor(fmt.Sprintf("follower %s of partition %d to catch up", follower, p), func() bool {
		st, err := c.status()
		if err != nil {
			return false
		}
		last = st
		leader, _ := c.leaderOf(st, p)
		l, f := replicaIn(st, p, leader), replicaIn(st, p, follower)
		return l != nil && f != nil && f.GetRole() == "follower" && f.GetIsr() && f.GetLagStatements() == 0 &&
			l.GetAppliedLsn() > 0 && f.GetAppliedLsn() == l.GetAppliedLsn() && f.GetPersistedLsn() >= l.GetAppliedLsn()
	})
	return last
}

func TestReplicationEveryAckMode(t *testing.T) {
	t.Parallel()
	const n = 10000
	for _, mode := range []string{"async", "semi-sync", "sync"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel() // the write path is latency-bound: three clusters share the cores well
			c := newReplicatedCluster(t, 2, 2, fmt.Sprintf("{plugin: statement, options: {ack: %s}}", mode))
			kvs := make(map[string]string, n)
			for i := range n {
				kvs[replKey("k", i)] = replValue(mode, i, 32)
			}
			start := time.Now()
			parts := putAll(t, c, kvs)
			wrote := time.Since(start)
			perPart := make([]map[string]string, 2)
			for p := range perPart {
				perPart[p] = map[string]string{}
			}
			for k, p := range parts {
				perPart[p][k] = kvs[k]
			}
			if len(perPart[0]) == 0 || len(perPart[1]) == 0 {
				t.Fatalf("keys per partition: %d and %d, want both used", len(perPart[0]), len(perPart[1]))
			}
			start = time.Now()
			for p := range 2 {
				st := mustStatus(t, c)
				fs := c.followersOf(st, p)
				if len(fs) != 1 {
					t.Fatalf("partition %d: followers %v, want one", p, fs)
				}
				st = c.waitCaughtUp(p, fs[0])
				if got := st.GetPartitions()[p].GetAck(); got != mode {
					t.Fatalf("partition %d: status ack %q, want %q", p, got, mode)
				}
				if st.GetPartitions()[p].GetAckFallback() {
					t.Fatalf("partition %d: ack fallback reported", p)
				}
				if f := replicaIn(st, p, fs[0]); !f.GetIsr() || f.GetReplicationError() != "" {
					t.Fatalf("partition %d follower: %v", p, f)
				}
				readAll(t, c, fs[0], perPart[p])
				// The follower serves only its partition: a key of the other is refused.
				for k := range perPart[1-p] {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := plugdbv1.NewKVClient(dial(t, fs[0])).Get(ctx, &plugdbv1.GetRequest{Key: []byte(k), Consistency: plugdbv1.Consistency_CONSISTENCY_STALE})
					cancel()
					wantWrongPartition(t, "stale get of the other partition's key", err, k, 1-p, p, fs[0])
					break
				}
			}
			t.Logf("ack %s: %d writes through the router in %v (%.0f/s; %d and %d per partition); followers caught up and all read back in %v",
				mode, n, wrote.Round(time.Millisecond), float64(n)/wrote.Seconds(), len(perPart[0]), len(perPart[1]), time.Since(start).Round(time.Millisecond))
		})
	}
}

// downFollowerScenario is the common part of a follower that misses writes
// while down: returns the cluster, the follower and what it must hold once back.
// It also returns the follower's applied LSN when it went down.
func downFollowerScenario(t *testing.T, replicator string, n, valueSize int) (*testCluster, string, map[string]string, uint64) {
	t.Helper()
	c := newReplicatedCluster(t, 1, 2, replicator)
	// Rows the follower has before it goes down.
	before := map[string]string{}
	for i := range 200 {
		before[replKey("old", i)] = replValue("before", i, 24)
	}
	putAll(t, c, before)
	fs := c.followersOf(mustStatus(t, c), 0)
	if len(fs) != 1 {
		t.Fatalf("followers %v, want one", fs)
	}
	follower := fs[0]
	applied := replicaIn(c.waitCaughtUp(0, follower), 0, follower).GetAppliedLsn()
	c.nodes[follower].kill()

	// While it is down: new rows, overwrites and deletes of old ones.
	want := map[string]string{}
	for i := range n {
		want[replKey("new", i)] = replValue("while-down", i, valueSize)
	}
	for i := 100; i < 200; i++ {
		want[replKey("old", i)] = replValue("overwritten", i, 24)
	}
	start := time.Now()
	putAll(t, c, want)
	for i := range 100 {
		k := replKey("old", i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte(k)})
		cancel()
		if err != nil {
			t.Fatalf("delete %s: %v\n%s", k, err, c.logs())
		}
		want[k] = ""
	}
	t.Logf("%d writes and 100 deletes with the follower down in %v", n+100, time.Since(start).Round(time.Millisecond))
	return c, follower, want, applied
}

// statementLogStart is the first LSN of the oldest segment of the statement
// log under a node's data folder (its files are named by their first LSN,
// 20 digits and .log), and whether there is one.
func statementLogStart(t *testing.T, dataDir string) (uint64, bool) {
	t.Helper()
	var start uint64
	found := false
	filepath.WalkDir(dataDir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		base, ok := strings.CutSuffix(d.Name(), ".log")
		if !ok || len(base) != 20 {
			return nil
		}
		if n, err := strconv.ParseUint(base, 10, 64); err == nil && (!found || n < start) {
			start, found = n, true
		}
		return nil
	})
	return start, found
}

func TestReplicationFollowerCatchesUpFromLog(t *testing.T) {
	t.Parallel()
	c, follower, want, _ := downFollowerScenario(t, "{plugin: statement, options: {ack: async}}", 5000, 32)
	start := time.Now()
	c.startNode(follower)
	c.waitCaughtUp(0, follower)
	t.Logf("restarted follower caught up in %v", time.Since(start).Round(time.Millisecond))
	readAll(t, c, follower, want)
	if out := c.nodes[follower].out.String(); strings.Contains(out, "rebuilding from a snapshot") || strings.Contains(out, "rebuilt from a snapshot") {
		t.Fatalf("the follower was rebuilt from a snapshot; it should have caught up from the leader's log\n%s", c.logs())
	}
}

func TestReplicationFollowerRebuiltFromSnapshot(t *testing.T) {
	t.Parallel()
	c, follower, want, applied := downFollowerScenario(t,
		"{plugin: statement, options: {ack: async, retain_bytes: 65536, segment_bytes: 16384}}", 5000, 200)
	// The leader trims its log every second: wait until it no longer holds
	// the statement after the follower's last, so only a rebuild can help.
	leader, _ := c.leaderOf(mustStatus(t, c), 0)
	var logStart uint64
	c.waitFor(fmt.Sprintf("the leader to trim its log past lsn %d", applied+1), func() bool {
		var ok bool
		logStart, ok = statementLogStart(t, c.dataOf[leader])
		return ok && logStart > applied+1
	})
	t.Logf("the leader's log starts at lsn %d; the follower applied through %d", logStart, applied)

	// Writes keep flowing while the follower comes back and is rebuilt.
	type span struct {
		key        string
		start, end time.Time
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var during []span
	var errs []string
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("during-%d-%04d", w, i)
				s := time.Now()
				if _, err := c.put(k, "v"+k, 5*time.Second); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("put %s: %v", k, err))
					mu.Unlock()
					return
				}
				mu.Lock()
				during = append(during, span{k, s, time.Now()})
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // not a synchronisation: the writers' pace
			}
		})
	}
	start := time.Now()
	c.startNode(follower)
	c.waitFor("the follower to log its rebuild", func() bool {
		return strings.Contains(c.nodes[follower].out.String(), "rebuilt from a snapshot: rows=")
	})
	rebuilt := time.Since(start)
	mu.Lock()
	atRebuild := len(during)
	mu.Unlock()
	c.waitFor("some writes after the rebuild", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(during) >= min(atRebuild+50, 4*5000) || len(errs) > 0
	})
	close(stop)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d writes failed while the follower was rebuilt, first: %s\n%s", len(errs), errs[0], c.logs())
	}
	out := c.nodes[follower].out.String()
	from, fromOK := logTime(out, "rebuilding from a snapshot: leader=")
	to, toOK := logTime(out, "rebuilt from a snapshot: rows=")
	if !fromOK || !toOK {
		t.Fatalf("the follower did not log its rebuild\n%s", c.logs())
	}
	// Log times have millisecond precision.
	from, to = from.Add(-time.Millisecond), to.Add(time.Millisecond)
	overlap := 0
	for _, w := range during {
		if w.start.Before(to) && w.end.After(from) {
			overlap++
		}
	}
	if overlap == 0 {
		t.Fatalf("no write overlapped the rebuild (%v to %v; %d writes in all)\n%s", from, to, len(during), c.logs())
	}
	c.waitCaughtUp(0, follower)
	t.Logf("restarted follower rebuilt in %v (the restore itself %v), caught up in %v; %d writes meanwhile, %d of them during the restore, all succeeded",
		rebuilt.Round(time.Millisecond), to.Sub(from).Round(time.Millisecond), time.Since(start).Round(time.Millisecond), len(during), overlap)
	for _, w := range during {
		want[w.key] = "v" + w.key
	}
	readAll(t, c, follower, want)

	// It keeps up with further writes.
	after := map[string]string{}
	for i := range 500 {
		after[replKey("after", i)] = replValue("after", i, 200)
	}
	putAll(t, c, after)
	c.waitCaughtUp(0, follower)
	readAll(t, c, follower, after)
	if n := strings.Count(c.nodes[follower].out.String(), "rebuilt from a snapshot: rows="); n != 1 {
		t.Fatalf("the follower was rebuilt %d times, want once\n%s", n, c.logs())
	}
}

// logTime returns the time of the first line of a node's log containing msg.
func logTime(out, msg string) (time.Time, bool) {
	for line := range strings.Lines(out) {
		if !strings.Contains(line, msg) {
			continue
		}
		ts, _, _ := strings.Cut(line, " ")
		t, err := time.Parse(time.RFC3339Nano, ts)
		return t, err == nil
	}
	return time.Time{}, false
}

// putOn writes key with ack straight to addr (a node) or through the router
// (addr ""), returning the error and how long it took.
func putOn(t *testing.T, c *testCluster, addr, key, value string, ack plugdbv1.Ack, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	kv := c.kv
	if addr != "" {
		kv = plugdbv1.NewKVClient(dial(t, addr))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	_, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(value), Ack: ack})
	return time.Since(start), err
}

func TestReplicationSemiSyncWithoutFollowerFailsUnavailable(t *testing.T) {
	t.Parallel()
	t.Run("semi-sync", func(t *testing.T) {
		c := newReplicatedCluster(t, 2, 2, "{plugin: statement, options: {ack: semi-sync, ack_timeout: 1s, isr_lag: 500ms}}")
		k0, k1 := c.keyOn(0, "p0"), c.keyOn(1, "p1")
		st := mustStatus(t, c)
		leader0, _ := c.leaderOf(st, 0)
		fs := c.followersOf(st, 0)
		if len(fs) != 1 {
			t.Fatalf("partition 0 followers %v, want one", fs)
		}
		follower := fs[0]
		c.waitCaughtUp(0, follower)
		c.nodes[follower].kill()

		// Partition 0 refuses to acknowledge: straight at its leader within
		// about ack_timeout, through the router by the client's deadline.
		// Never a silent success.
		for i := range 3 {
			took, err := putOn(t, c, leader0, k0, fmt.Sprint("direct-", i), plugdbv1.Ack_ACK_DEFAULT, 10*time.Second)
			if err == nil || status.Code(err) != codes.Unavailable || took > 4*time.Second {
				t.Fatalf("write %d to partition 0's leader without its follower: %v after %v, want Unavailable within ~1s\n%s", i, err, took, c.logs())
			}
			if !strings.Contains(err.Error(), "semi-sync") {
				t.Fatalf("write %d: %v, want the unmet ack mode named", i, err)
			}
			if i == 0 {
				t.Logf("direct to the leader, after %v: %v", took.Round(time.Millisecond), err)
			}
			took, err = putOn(t, c, "", k0, fmt.Sprint("routed-", i), plugdbv1.Ack_ACK_DEFAULT, 3*time.Second)
			if err == nil || status.Code(err) != codes.Unavailable || took > 4*time.Second {
				t.Fatalf("write %d to partition 0 through the router without its follower: %v after %v, want Unavailable within the 3s deadline\n%s", i, err, took, c.logs())
			}
			if i == 0 {
				t.Logf("through the router, after %v: %v", took.Round(time.Millisecond), err)
			}
			// Partition 1 is unaffected.
			if _, err := putOn(t, c, "", k1, fmt.Sprint("p1-", i), plugdbv1.Ack_ACK_DEFAULT, 5*time.Second); err != nil {
				t.Fatalf("write to partition 1: %v\n%s", err, c.logs())
			}
		}
		// The follower is out of the in-sync set.
		c.waitFor("the dead follower out of the ISR", func() bool {
			st, err := c.status()
			if err != nil {
				return false
			}
			f := replicaIn(st, 0, follower) // gone once its ZooKeeper session expired
			return f == nil || !f.GetIsr()
		})

		// Back: writes to partition 0 succeed again once it caught up.
		start := time.Now()
		c.startNode(follower)
		c.waitFor("a write to partition 0 to succeed with its follower back", func() bool {
			_, err := putOn(t, c, "", k0, "back", plugdbv1.Ack_ACK_DEFAULT, 3*time.Second)
			return err == nil
		})
		t.Logf("follower restarted to the first successful semi-sync write: %v", time.Since(start).Round(time.Millisecond))
		c.waitCaughtUp(0, follower)
		readAll(t, c, follower, map[string]string{k0: "back"})
		if _, err := putOn(t, c, "", k0, "again", plugdbv1.Ack_ACK_DEFAULT, 5*time.Second); err != nil {
			t.Fatalf("write to partition 0 after catch-up: %v\n%s", err, c.logs())
		}
	})

	t.Run("per-write sync on an async cluster", func(t *testing.T) {
		c := newReplicatedCluster(t, 1, 2, "{plugin: statement, options: {ack: async, ack_timeout: 1s, isr_lag: 500ms}}")
		key := c.keyOn(0, "k")
		st := mustStatus(t, c)
		fs := c.followersOf(st, 0)
		if len(fs) != 1 {
			t.Fatalf("followers %v, want one", fs)
		}
		follower := fs[0]
		c.waitCaughtUp(0, follower)
		if ack := mustStatus(t, c).GetPartitions()[0].GetAck(); ack != "async" {
			t.Fatalf("status ack %q, want async", ack)
		}
		for i := range 20 {
			if _, err := putOn(t, c, "", fmt.Sprint(key, i), "sync", plugdbv1.Ack_ACK_SYNC, 5*time.Second); err != nil {
				t.Fatalf("ACK_SYNC write with the follower up: %v\n%s", err, c.logs())
			}
		}
		c.waitCaughtUp(0, follower)
		want := map[string]string{}
		for i := range 20 {
			want[fmt.Sprint(key, i)] = "sync"
		}
		readAll(t, c, follower, want)

		// With the follower down, a sync write cannot be acknowledged; the
		// configured async one can.
		if err := syscall.Kill(c.nodes[follower].cmd.Process.Pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-c.nodes[follower].done
		took, err := putOn(t, c, "", key, "sync-down", plugdbv1.Ack_ACK_SYNC, 3*time.Second)
		if err == nil || status.Code(err) != codes.Unavailable {
			t.Fatalf("ACK_SYNC write with the follower down: %v after %v, want Unavailable\n%s", err, took, c.logs())
		}
		if _, err := putOn(t, c, "", key, "async-down", plugdbv1.Ack_ACK_DEFAULT, 5*time.Second); err != nil {
			t.Fatalf("async write with the follower down: %v\n%s", err, c.logs())
		}
	})
}

// TestReplicationRestartReplaysLogIntoLaggingEngine checks that the statement
// log is the commit point: a follower whose engine lost writes its log holds
// (here its engine folder is put back to an older copy, as a power loss could
// leave an engine that was not fsynced) replays its own log into the engine
// when it restarts, without a snapshot, and ends with every write.
func TestReplicationRestartReplaysLogIntoLaggingEngine(t *testing.T) {
	t.Parallel()
	c := newReplicatedCluster(t, 1, 2, "{plugin: statement, options: {ack: async}}")
	before := map[string]string{}
	for i := range 200 {
		before[replKey("before", i)] = replValue("before", i, 24)
	}
	putAll(t, c, before)
	fs := c.followersOf(mustStatus(t, c), 0)
	if len(fs) != 1 {
		t.Fatalf("followers %v, want one", fs)
	}
	follower := fs[0]
	c.waitCaughtUp(0, follower)

	// Keep a copy of the follower's engine as it is now.
	c.nodes[follower].kill()
	engineDir := datadir.PartitionDir(c.dataOf[follower], 0)
	older := filepath.Join(t.TempDir(), "engine")
	if err := os.CopyFS(older, os.DirFS(engineDir)); err != nil {
		t.Fatal(err)
	}
	c.startNode(follower)
	c.waitCaughtUp(0, follower)

	// Writes that reach the follower's log and engine (waitCaughtUp: it
	// persisted and applied all of them) ...
	after := map[string]string{}
	for i := range 300 {
		after[replKey("after", i)] = replValue("after", i, 24)
	}
	for i := range 50 {
		after[replKey("before", i)] = replValue("overwritten", i, 24)
	}
	putAll(t, c, after)
	c.waitCaughtUp(0, follower)
	c.nodes[follower].kill()

	// ... and then the engine loses them: only the log still has them.
	if err := os.RemoveAll(engineDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(engineDir, os.DirFS(older)); err != nil {
		t.Fatal(err)
	}
	c.startNode(follower)
	c.waitCaughtUp(0, follower)
	want := maps.Clone(before)
	maps.Copy(want, after)
	readAll(t, c, follower, want)
	if out := c.nodes[follower].out.String(); strings.Contains(out, "rebuilding from a snapshot") {
		t.Fatalf("the follower was rebuilt from a snapshot; it should have replayed its own log\n%s", c.logs())
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Fault tests of live resharding (docs/resharding.md, "Interruptions"): moves
// run under writers while processes are killed or paused, ZooKeeper restarts
// or a link is black-holed; after each step every acknowledged write reads
// back and a scan reads every key exactly once (no key with two owners or
// none). Long: make test-long.

// reshardLoad is the fault tests' load: keys k000000… loaded with v0,
// overwritten by writers that remember every acknowledged value.
type reshardLoad struct {
	t    *testing.T
	c    *reshardCluster
	kv   plugdbv1.KVClient
	keys int

	mu    sync.Mutex
	acked map[string]string
}

func newReshardLoad(t *testing.T, ctx context.Context, c *reshardCluster, keys int) *reshardLoad {
	l := &reshardLoad{t: t, c: c, kv: plugdbv1.NewKVClient(dial(t, c.grpc)), keys: keys, acked: map[string]string{}}
	loadKeys(t, ctx, l.kv, keys)
	return l
}

// write runs 4 writers over the loaded keys until stop (at most a million
// writes each); the function it returns waits for them and says how many
// writes failed.
func (l *reshardLoad) write(ctx context.Context, stop <-chan struct{}) func() int64 {
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 1; i <= 1_000_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k%06d", (w*l.keys/4+i)%l.keys)
				val := fmt.Sprintf("w%d-%d", w, i)
				wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := l.kv.Put(wctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(val)})
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				l.mu.Lock()
				l.acked[key] = val
				l.mu.Unlock()
			}
		})
	}
	return func() int64 { wg.Wait(); return failed.Load() }
}

// check reads every loaded key with one strong scan through the router: each
// exactly once, with its last acknowledged value (or v0). A write that
// failed may or may not have happened; none ran on these keys since, as
// the writers are stopped before a check, except through an unanswered
// write, which the test does not count on either way.
func (l *reshardLoad) check(ctx context.Context, step string) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	stream, err := l.kv.Scan(ctx, &plugdbv1.ScanRequest{})
	if err != nil {
		l.t.Fatalf("%s: scan: %v", step, err)
	}
	n := 0
	for {
		row, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			l.t.Fatalf("%s: scan: %v\n%s", step, err, l.c.logs())
		}
		if !strings.HasPrefix(string(row.GetKey()), "k") {
			continue // another load's key (the linearizability clients')
		}
		n++
		want, ok := l.acked[string(row.GetKey())]
		if !ok {
			want = "v0"
		}
		if string(row.GetValue()) != want {
			l.t.Fatalf("%s: %s = %q; want %q\n%s", step, row.GetKey(), row.GetValue(), want, l.c.logs())
		}
	}
	if n != l.keys {
		l.t.Fatalf("%s: the scan reads %d keys, want %d", step, n, l.keys)
	}
}

// startMove runs plugdb reshard with config cfg and waits until it copies
// (or ends).
func (l *reshardLoad) startMove(ctx context.Context, cfg string, args ...string) *proc {
	l.t.Helper()
	mv := startProc(l.t, "reshard", append([]string{"reshard", "--config", cfg}, args...)...)
	if !testutil.Eventually(ctx, 60*time.Second, func() bool { return strings.Contains(mv.out.String(), "copy ") || mv.exited() }) {
		l.t.Fatalf("the move does not copy:\n%s", mv.out.String())
	}
	return mv
}

// finish waits for the move mv and, unless its output says want, runs the
// recorded move again once, which must end with want.
func (l *reshardLoad) finish(mv *proc, step, want string) {
	l.t.Helper()
	<-mv.done
	if strings.Contains(mv.out.String(), want) {
		return
	}
	l.t.Logf("%s: the move stopped; running it again:\n%s", step, mv.out.String())
	res := runPlugdb(l.t, 3*time.Minute, "reshard", "--config", l.c.cfg)
	if res.code != 0 || !strings.Contains(res.stdout, want) {
		l.t.Fatalf("%s: the move run again:\n%s\n%s", step, res, l.c.logs())
	}
}

// restart kills the named process with SIGKILL and starts it again with
// the same arguments.
func (c *reshardCluster) restart(t *testing.T, name string) {
	old := c.procs[name]
	old.kill()
	c.procs[name] = startProc(t, name+" again", old.cmd.Args[1:]...)
}

// TestReshardSurvivesKills moves a cluster under writers while processes
// are killed with SIGKILL: the reshard command itself during its copy (run
// again, it resumes the recorded move); in a second move a source
// partition's node (restarted; the move, run again, finishes); in a third a
// target's node and the router (restarted) while a source is paused
// (SIGSTOP past its session); and a fourth move is aborted after a kill (the
// layout stays and every key is served). Every acknowledged write reads back
// after each step; requests may fail only while the killed node is down.
func TestReshardSurvivesKills(t *testing.T) {
	requireLong(t)
	c := startReshardCluster(t, 2, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l := newReshardLoad(t, ctx, c, 30000)

	// 1. kill -9 the reshard command while it copies; run again: it resumes.
	stop := make(chan struct{})
	wait := l.write(ctx, stop)
	mv := l.startMove(ctx, c.cfg, "--partitions", "3")
	mv.kill()
	res := runPlugdb(t, 2*time.Minute, "status", "--addr", c.grpc)
	if !strings.Contains(res.stdout, "reshard: ") {
		t.Errorf("status during the interrupted move names no move:\n%s", res)
	}
	res = runPlugdb(t, 3*time.Minute, "reshard", "--config", c.cfg)
	close(stop)
	if failed := wait(); failed > 0 {
		t.Errorf("move 1: %d writes failed", failed)
	}
	if res.code != 0 || !strings.Contains(res.stderr, "resuming the recorded move") || !strings.Contains(res.stdout, "now has 3 partitions") {
		t.Fatalf("the resumed move:\n%s\n%s", res, c.logs())
	}
	l.check(ctx, "after the resumed move")

	// 2. kill -9 a source's node during the second move and restart it;
	// the move fails or waits; run again, it finishes.
	stop = make(chan struct{})
	wait = l.write(ctx, stop)
	mv = l.startMove(ctx, c.cfg, "--partitions", "4")
	c.restart(t, "node 0")
	l.finish(mv, "move 2", "now has 4 partitions")
	close(stop)
	t.Logf("move 2: %d writes failed while partition 0's only node was down", wait())
	l.check(ctx, "after the move with a source killed")

	// 3. during a move to ring partitioning, kill -9 a target's node (the
	// new partition 3's, restarted) and the router (restarted), and pause a
	// source's node longer than its ZooKeeper session (SIGSTOP, 3 s): the
	// move finishes (run again if it failed).
	stop = make(chan struct{})
	wait = l.write(ctx, stop)
	mv = l.startMove(ctx, c.cfg, "--partitions", "4", "--partitioner", "ring", "--option", "vnodes=64")
	c.restart(t, "node 3")
	c.restart(t, "router")
	node1 := c.procs["node 1"]
	_ = syscall.Kill(-node1.cmd.Process.Pid, syscall.SIGSTOP)
	time.Sleep(3 * time.Second) // fault injection: a source paused past its session timeout
	_ = syscall.Kill(-node1.cmd.Process.Pid, syscall.SIGCONT)
	l.finish(mv, "move 3", "now has 4 partitions placed by ring")
	close(stop)
	t.Logf("move 3: %d writes failed while the router was down or partition 1 paused", wait())
	l.check(ctx, "after the move with a target and the router killed and a source paused")

	// 4. kill -9 the reshard command, then abort: the layout stays.
	mv = l.startMove(ctx, c.cfg, "--partitions", "4", "--partitioner", "hash")
	mv.kill()
	if res := runPlugdb(t, time.Minute, "reshard", "--config", c.cfg, "--abort"); res.code != 0 || !strings.Contains(res.stdout, "reshard aborted") {
		t.Fatalf("abort:\n%s", res)
	}
	st, err := l.kv.Status(ctx, &plugdbv1.StatusRequest{})
	if err != nil || len(st.GetPartitions()) != 4 || st.GetReshard() != nil || st.GetPartitioner().GetPlugin() != "ring" {
		t.Fatalf("after the abort: %d partitions by %s, reshard %v, %v", len(st.GetPartitions()), st.GetPartitioner().GetPlugin(), st.GetReshard(), err)
	}
	l.check(ctx, "after the aborted move")
}

// TestReshardSurvivesNetworkFaults moves a cluster on a ZooKeeper of its own
// under writers while the network fails: ZooKeeper is stopped mid-copy
// longer than the sessions' timeout and started again; a source node's link
// to ZooKeeper is black-holed mid-move (its session expires while the
// process runs on); the reshard command's own link to ZooKeeper is
// black-holed mid-move. Each move finishes (run again once if it stopped),
// every acknowledged write reads back after each, and porcupine finds the
// history of clients running through all three linearizable.
func TestReshardSurvivesNetworkFaults(t *testing.T) {
	requireLong(t)
	zk := zktest.Start(t, 1)
	nodeLink := newFaultProxy(t, "node 0 to zookeeper", zk.Servers()[0])
	c := startReshardClusterWith(t, reshardSetup{partitions: 2, nodes: 4, zk: zk, nodeZK: map[int]string{0: nodeLink.Addr()}})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l := newReshardLoad(t, ctx, c, 30000)
	// Linearizability clients run through every step; porcupine checks
	// their history at the end.
	lin := startLinClients(l.kv)
	defer lin.stop()

	// 1. ZooKeeper stops mid-copy for 4 s (twice the session timeout) and
	// starts again on its data.
	stop := make(chan struct{})
	wait := l.write(ctx, stop)
	mv := l.startMove(ctx, c.cfg, "--partitions", "3")
	if err := zk.StopServer(0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // fault injection: ZooKeeper down past the sessions' timeout
	if err := zk.StartServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	l.finish(mv, "move 1", "now has 3 partitions")
	close(stop)
	t.Logf("move 1: %d writes failed while ZooKeeper was down", wait())
	l.check(ctx, "after the move across a ZooKeeper restart")

	// 2. node 0 (a source) loses its link to ZooKeeper mid-move for 4 s:
	// its session expires while it runs, so it must stop leading, and lead
	// again (a new epoch) once the link heals.
	stop = make(chan struct{})
	wait = l.write(ctx, stop)
	mv = l.startMove(ctx, c.cfg, "--partitions", "4")
	nodeLink.Cut()
	time.Sleep(4 * time.Second) // fault injection: a black-holed link past the session timeout
	nodeLink.Heal()
	l.finish(mv, "move 2", "now has 4 partitions")
	close(stop)
	t.Logf("move 2: %d writes failed while partition 0's node was cut from ZooKeeper", wait())
	l.check(ctx, "after the move with a source cut from ZooKeeper")

	// 3. the reshard command's own link to ZooKeeper is black-holed
	// mid-move for 4 s: its session expires; the move ends (or, run again,
	// resumes) with one owner for every key.
	cmdLink := newFaultProxy(t, "reshard to zookeeper", zk.Servers()[0])
	stop = make(chan struct{})
	wait = l.write(ctx, stop)
	mv = l.startMove(ctx, c.configFor("reshard", cmdLink.Addr()), "--partitions", "4", "--partitioner", "ring", "--option", "vnodes=64")
	cmdLink.Cut()
	time.Sleep(4 * time.Second) // fault injection: the command cut from ZooKeeper past its session timeout
	cmdLink.Heal()
	l.finish(mv, "move 3", "now has 4 partitions placed by ring")
	close(stop)
	if failed := wait(); failed > 0 {
		t.Errorf("move 3: %d writes failed while only the reshard command was cut from ZooKeeper", failed)
	}
	l.check(ctx, "after the move with the command cut from ZooKeeper")

	lin.check(t, "reshard-network-faults", c.logs)
}

// TestClusterReshardSurvivesLeaderKills moves a fresh `plugdb cluster up`
// (2 partitions × 3 replicas, semi-sync) to 3 partitions under writers and
// porcupine's clients while the leaders of a source (partition 0) and of
// the new target (partition 2) are killed with SIGKILL mid-move: followers
// take over, fence again under their new epochs, and the move ends (the
// same `cluster reshard` run again resumes it if it stopped). Every
// acknowledged write reads back, every key once, and the history is
// linearizable.
func TestClusterReshardSurvivesLeaderKills(t *testing.T) {
	requireLong(t)
	dir := filepath.Join(t.TempDir(), "cluster")
	nodes := testutil.FreePortRun(t, 9) // the six of cluster up and partition 2's three after them
	grpcAddr := testutil.FreeAddr(t)
	cfg := writeClusterUpConfig(t, "kills", nodes, grpcAddr)
	up := startClusterUp(t, dir, cfg, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &reshardCluster{cfg: cfg, grpc: grpcAddr, procs: map[string]*proc{}}
	l := newReshardLoad(t, ctx, c, 20000)
	lin := startLinClients(l.kv)
	defer lin.stop()
	stop := make(chan struct{})
	wait := l.write(ctx, stop)
	stopLoad := sync.OnceFunc(func() { close(stop) })
	defer stopLoad()

	move := func() *proc {
		return startProc(t, "cluster reshard", "cluster", "reshard", "--dir", dir, "--partitions", "3")
	}
	mv := move()
	if !testutil.Eventually(ctx, time.Minute, func() bool { return strings.Contains(mv.out.String(), "copy ") || mv.exited() }) {
		t.Fatalf("the move does not copy:\n%s", mv.out.String())
	}
	// killLeader kills partition p's leader with SIGKILL (the supervisor
	// reports it and leaves it down) and returns its address; a node of
	// partition p names it (the router lists the current layout's only).
	killLeader := func(p int) string {
		t.Helper()
		procs := recorded(t, dir)
		for _, pr := range procs {
			if !strings.HasPrefix(pr.Name, fmt.Sprintf("node-p%d-", p)) || !pr.Alive() {
				continue
			}
			st, err := plugdbv1.NewKVClient(dial(t, pr.Addr)).Status(ctx, &plugdbv1.StatusRequest{})
			if err != nil {
				continue
			}
			for _, ps := range st.GetPartitions() {
				for _, r := range ps.GetReplicas() {
					if r.GetRole() != "leader" {
						continue
					}
					for _, victim := range procs {
						if victim.Addr == r.GetAddr() {
							_ = syscall.Kill(victim.PID, syscall.SIGKILL)
							return victim.Addr
						}
					}
				}
			}
		}
		t.Fatalf("partition %d: no node names a leader to kill", p)
		return ""
	}
	killed := []string{killLeader(0), killLeader(2)}
	<-mv.done
	if strings.Contains(mv.out.String(), "now has 3 partitions") {
		t.Logf("the move rode through the failovers:\n%s", mv.out.String())
	} else {
		t.Logf("the move stopped; the same command again:\n%s", mv.out.String())
		again := move()
		<-again.done
		if !strings.Contains(again.out.String(), "now has 3 partitions") {
			t.Fatalf("cluster reshard run again:\n%s\n%s", again.out.String(), up.output())
		}
	}
	time.Sleep(500 * time.Millisecond) // load pacing: the load runs on the new layout too
	stopLoad()
	t.Logf("killed leaders %v; %d writes failed during the failovers", killed, wait())
	l.check(ctx, "after the move with leaders killed")
	lin.check(t, "cluster-reshard-leader-kills", up.output)
}

// linClients are 4 linearizability clients on 8 keys of their own
// (lin-00…), running until stopped.
type linClients struct {
	h    *linHistory
	keys []string
	stop func() // stops them and waits; it may be called more than once
}

func startLinClients(kv plugdbv1.KVClient) *linClients {
	l := &linClients{h: &linHistory{start: time.Now()}}
	for i := range 8 {
		l.keys = append(l.keys, fmt.Sprintf("lin-%02d", i))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for id := range 4 {
		wg.Go(func() { runLinClient(kv, l.h, id, l.keys, done) })
	}
	l.stop = sync.OnceFunc(func() { close(done); wg.Wait() })
	return l
}

// check stops the clients and has porcupine check their history.
func (l *linClients) check(t *testing.T, name string, logs func() string) {
	t.Helper()
	l.stop()
	ops := l.h.finish()
	t.Logf("%d operations by 4 clients on %d keys (%d with unknown outcome): %v", len(ops), len(l.keys), len(l.h.open), l.h.summary())
	checkHistory(t, name, ops, logs)
}

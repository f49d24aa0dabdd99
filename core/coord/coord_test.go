package coord_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(zktest.M{M: m}) }

const session = 2 * time.Second

// clusters numbers the clusters newCluster names, so that a test run again
// (go test -count) starts with a fresh cluster.
var clusters atomic.Int64

// newCluster returns a config naming a cluster of its own.
func newCluster(t *testing.T, servers []string) coord.Config {
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + "-" + strconv.FormatInt(clusters.Add(1), 10)
	return coord.Config{Servers: servers, SessionTimeout: session, Root: "/plugdb-test", Cluster: name,
		Logger: hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Info, Output: testWriter{t}})}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func connect(t *testing.T, cfg coord.Config) *coord.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := coord.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var meta = coord.Meta{Partitions: 2, Partitioner: coord.PluginMeta{Plugin: "hash"}}

func TestMetaIsWrittenOnceAndConflictsAreRefused(t *testing.T) {
	zkSrv := zktest.Shared(t)
	cfg := newCluster(t, zkSrv.Servers())
	c := connect(t, cfg)
	ctx := context.Background()
	if _, err := coord.EnsureMeta(ctx, c, meta); err != nil {
		t.Fatal(err)
	}
	got, err := coord.EnsureMeta(ctx, connect(t, cfg), meta)
	if err != nil || got.Partitions != 2 {
		t.Fatalf("second EnsureMeta = %+v, %v", got, err)
	}
	other := meta
	other.Partitions = 3
	_, err = coord.EnsureMeta(ctx, c, other)
	if !errors.Is(err, coord.ErrConflict) || !strings.Contains(err.Error(), "created with partitions=2") || !strings.Contains(err.Error(), "this config has partitions=3") {
		t.Fatalf("conflicting partitions: %v", err)
	}
	other = meta
	other.Partitioner.Options = map[string]string{"vnodes": "8"}
	if _, err := coord.EnsureMeta(ctx, c, other); !errors.Is(err, coord.ErrConflict) {
		t.Fatalf("conflicting partitioner options: %v", err)
	}
}

type replica struct {
	c    *coord.Client
	k    *coord.Candidate
	stop context.CancelFunc
	done chan struct{}
}

func startReplica(t *testing.T, cfg coord.Config, addr string) *replica {
	t.Helper()
	return startCandidate(t, cfg, coord.CandidateConfig{Partition: 0, Addr: addr})
}

// startCandidate starts a replica of kc's partition with a client of its own.
func startCandidate(t *testing.T, cfg coord.Config, kc coord.CandidateConfig) *replica {
	t.Helper()
	c := connect(t, cfg)
	if _, err := coord.EnsureMeta(context.Background(), c, meta); err != nil {
		t.Fatal(err)
	}
	kc.Publish = 100 * time.Millisecond
	k := coord.NewCandidate(c, kc)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{c: c, k: k, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = k.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func leaders(rs []*replica) (n int, who *replica, epoch uint64) {
	for _, r := range rs {
		if e, ok := r.k.Leader(); ok {
			n, who, epoch = n+1, r, e
		}
	}
	return n, who, epoch
}

func TestOneLeaderAndFailoverWithHigherEpoch(t *testing.T) {
	zkSrv := zktest.Shared(t)
	cfg := newCluster(t, zkSrv.Servers())
	rs := []*replica{startReplica(t, cfg, "127.0.0.1:1"), startReplica(t, cfg, "127.0.0.1:2"), startReplica(t, cfg, "127.0.0.1:3")}
	var first *replica
	var epoch1 uint64
	testutil.WaitFor(t, 20*time.Second, func() bool {
		var n int
		n, first, epoch1 = leaders(rs)
		return n == 1
	}, "a leader")
	// Every replica is in sync (only in-sync replicas may take over).
	if err := first.k.SetISR(t.Context(), []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}); err != nil {
		t.Fatal(err)
	}
	// The router's view agrees.
	top := coord.WatchTopology(t.Context(), connect(t, cfg), 2)
	testutil.WaitFor(t, 20*time.Second, func() bool {
		v := top.Partition(0)
		return v.Leader.Epoch == epoch1 && len(v.Members) == 3 && len(v.Followers()) == 2
	}, "topology shows the leader and 3 members")
	// The leader withdraws: exactly one other replica takes over, in a later epoch.
	first.stop()
	<-first.done
	first.c.Close()
	rest := []*replica{}
	for _, r := range rs {
		if r != first {
			rest = append(rest, r)
		}
	}
	var epoch2 uint64
	testutil.WaitFor(t, 20*time.Second, func() bool {
		var n int
		n, _, epoch2 = leaders(rest)
		return n == 1
	}, "a new leader")
	if epoch2 <= epoch1 {
		t.Fatalf("new epoch %d, want above %d", epoch2, epoch1)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool {
		v := top.Partition(0)
		return v.Leader.Epoch == epoch2 && len(v.Members) == 2
	}, "topology shows the new leader")
}

func TestLeaderStopsBeforeAnotherIsElectedAndRejoinsAfterExpiry(t *testing.T) {
	zkSrv := zktest.Shared(t)
	px := newProxy(t, zkSrv.Servers()[0])
	cfgProxied := newCluster(t, []string{px.Addr()})
	cfgDirect := cfgProxied
	cfgDirect.Servers = zkSrv.Servers()

	a := startReplica(t, cfgProxied, "127.0.0.1:1")
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := a.k.Leader(); return ok }, "a leads")
	epochA, _ := a.k.Leader()
	b := startReplica(t, cfgDirect, "127.0.0.1:2")
	top := coord.WatchTopology(t.Context(), b.c, 1)
	testutil.WaitFor(t, 20*time.Second, func() bool {
		return len(top.Partition(0).Members) == 2
	}, "b registered")
	// b is in sync (only in-sync replicas may take over).
	if err := a.k.SetISR(t.Context(), []string{"127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}

	// Partition a from ZooKeeper: a must stop acting as leader before b can
	// be elected (b waits for a's session to expire).
	px.Cut()
	var aStopped, bLead time.Time
	testutil.WaitFor(t, 20*time.Second, func() bool {
		now := time.Now()
		if _, ok := a.k.Leader(); !ok && aStopped.IsZero() {
			aStopped = now
		}
		if _, ok := b.k.Leader(); ok {
			bLead = now
			return true
		}
		return false
	}, "b leads")
	if aStopped.IsZero() || aStopped.After(bLead) {
		t.Fatalf("a stopped leading at %v, b was elected at %v: a must stop first", aStopped, bLead)
	}
	epochB, _ := b.k.Leader()
	if epochB <= epochA {
		t.Fatalf("b's epoch %d, want above a's %d", epochB, epochA)
	}
	// Heal: a finds its session expired, registers again under a new one and
	// follows b; it does not lead.
	px.Heal()
	testutil.WaitFor(t, 20*time.Second, func() bool {
		v := top.Partition(0)
		for _, m := range v.Members {
			if m.Addr == "127.0.0.1:1" && m.Role == coord.RoleFollower {
				return v.Leader.Addr == "127.0.0.1:2"
			}
		}
		return false
	}, "a registered again as follower")
	if _, ok := a.k.Leader(); ok {
		t.Fatal("a leads after rejoining while b holds the partition")
	}
	// b withdraws: a leads again, in a later epoch still.
	b.stop()
	<-b.done
	testutil.WaitFor(t, 20*time.Second, func() bool { e, ok := a.k.Leader(); return ok && e > epochB }, "a leads again")
}

func TestZooKeeperDownStopsLeaderAndRecovers(t *testing.T) {
	zkSrv := zktest.Start(t, 1)
	cfg := newCluster(t, zkSrv.Servers())
	a := startReplica(t, cfg, "127.0.0.1:1")
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := a.k.Leader(); return ok }, "a leads")
	e1, _ := a.k.Leader()
	if err := zkSrv.StopServer(0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := a.k.Leader(); return !ok }, "a stops leading")
	short, cancelShort := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancelShort()
	if _, err := coord.Connect(short, coord.Config{Servers: zkSrv.Servers(), SessionTimeout: session, Root: "/x", Cluster: "y"}); err == nil {
		t.Fatal("connected to a stopped ZooKeeper")
	} else if !errors.Is(err, coord.ErrNoSession) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("connect to a stopped ZooKeeper: %v, want it to say ZooKeeper is unreachable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := zkSrv.StartServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool { e, ok := a.k.Leader(); return ok && e > e1 }, "a leads again")
}

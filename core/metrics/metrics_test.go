package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/metrics/metricstest"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/replicators"
)

// gather reads reg as a scrape would.
func gather(t *testing.T, reg *prometheus.Registry) metricstest.Families {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := metricstest.Families{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeMetricsAndHealth(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	var unhealthy error
	s, err := Serve("127.0.0.1:0", reg, func(context.Context) error { return unhealthy })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())

	f, err := metricstest.Scrape(t.Context(), "http://"+s.Addr()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Sum("plugdb_test_things_total", nil); !ok || v != 3 {
		t.Errorf("plugdb_test_things_total = %v, %v; want 3", v, ok)
	}
	if m := f.Missing("go_goroutines", "process_cpu_seconds_total"); len(m) > 0 {
		t.Errorf("registry lacks the runtime's and process's families %v", m)
	}
	if code, body := get(t, "http://"+s.Addr()+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz healthy: %d %q", code, body)
	}
	unhealthy = errors.New("no leader for partition 1")
	if code, body := get(t, "http://"+s.Addr()+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no leader for partition 1") {
		t.Errorf("/healthz unhealthy: %d %q, want 503 with the reason", code, body)
	}
}

func TestServeRefusesBadAddress(t *testing.T) {
	used, err := Serve("127.0.0.1:0", NewRegistry(), func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer used.Close(context.Background())
	_, err = Serve(used.Addr(), NewRegistry(), func(context.Context) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "open metrics listener "+used.Addr()) {
		t.Fatalf("second listener on %s: %v, want an error naming it", used.Addr(), err)
	}
}

func TestGRPCCountsCalls(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := NewGRPC(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(g.ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	g.Init(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	before := gather(t, reg)
	if _, ok := before.Sum("plugdb_grpc_server_handled_total", map[string]string{"grpc_method": "Check"}); !ok {
		t.Fatal("Init did not create the series of the registered methods")
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	for range 3 {
		if _, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = client.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "nope"}) // NotFound
	f := gather(t, reg)
	if v, _ := f.Sum("plugdb_grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "OK"}); v != 3 {
		t.Errorf("handled OK = %v, want 3", v)
	}
	if v, _ := f.Sum("plugdb_grpc_server_handled_total", map[string]string{"grpc_method": "Check", "grpc_code": "NotFound"}); v != 1 {
		t.Errorf("handled NotFound = %v, want 1", v)
	}
	if v, _ := f.Sum("plugdb_grpc_server_handling_seconds", map[string]string{"grpc_method": "Check"}); v != 4 {
		t.Errorf("handling_seconds count = %v, want 4", v)
	}
}

// fakeTopology is a Topology whose views the test sets.
type fakeTopology struct {
	views   []coord.View
	changed chan struct{}
}

func (f *fakeTopology) Partitions() int                   { return len(f.views) }
func (f *fakeTopology) Partition(n int) coord.View        { return f.views[n] }
func (f *fakeTopology) Changed() <-chan struct{}          { return f.changed }
func (f fakeSession) State() (zk.State, int64, time.Time) { return f.state, 1, time.Time{} }

type fakeSession struct{ state zk.State }

func TestPartitions(t *testing.T) {
	reg := prometheus.NewRegistry()
	topo := &fakeTopology{views: []coord.View{
		{Partition: 0, Leader: coord.LeaderInfo{Addr: "a:1", Epoch: 3}, ISR: []string{"a:1", "b:1"}, Members: []coord.Member{{Addr: "a:1"}, {Addr: "b:1"}}},
		{Partition: 1},
	}}
	session := &fakeSession{state: zk.StateHasSession}
	p, err := NewPartitions(reg, Keyspace{Name: "default", Partition: -1, Session: session, Topology: func() Topology { return topo }})
	if err != nil {
		t.Fatal(err)
	}
	f := gather(t, reg)
	p0 := map[string]string{"keyspace": "default", "partition": "0"}
	for name, want := range map[string]float64{"plugdb_partition_has_leader": 1, "plugdb_partition_leader_epoch": 3, "plugdb_partition_isr_size": 2, "plugdb_partition_members": 2} {
		if v, _ := f.Sum(name, p0); v != want {
			t.Errorf("%s{partition=0} = %v, want %v", name, v, want)
		}
	}
	if v, _ := f.Sum("plugdb_partition_has_leader", map[string]string{"partition": "1"}); v != 0 {
		t.Errorf("has_leader{partition=1} = %v, want 0", v)
	}
	if v, _ := f.Sum("plugdb_zookeeper_session_state", map[string]string{"state": "has_session"}); v != 1 {
		t.Errorf("session_state{has_session} = %v, want 1", v)
	}
	if v, _ := f.Sum("plugdb_zookeeper_session_state", nil); v != 1 {
		t.Errorf("session_state sums to %v, want 1 (one state at a time)", v)
	}
	err = p.Health(t.Context())
	if err == nil || !strings.Contains(err.Error(), "keyspace default: no leader for partition 1") {
		t.Errorf("Health with partition 1 leaderless: %v", err)
	}
	topo.views[1].Leader = coord.LeaderInfo{Addr: "c:1", Epoch: 1}
	if err := p.Health(t.Context()); err != nil {
		t.Errorf("Health with every partition led: %v", err)
	}
	session.state = zk.StateConnecting
	if err := p.Health(t.Context()); err == nil || !strings.Contains(err.Error(), "no ZooKeeper session (connecting)") {
		t.Errorf("Health without a session: %v", err)
	}
	if v, _ := gather(t, reg).Sum("plugdb_zookeeper_session_up", nil); v != 0 {
		t.Errorf("session_up while connecting = %v, want 0", v)
	}
}

func TestPartitionsCountLeaderChanges(t *testing.T) {
	reg := prometheus.NewRegistry()
	topo := &fakeTopology{views: []coord.View{{Partition: 0}}, changed: make(chan struct{})}
	var mu = make(chan struct{}, 1) // guards topo.views between the test and Watch
	mu <- struct{}{}
	locked := &lockedTopology{t: topo, mu: mu}
	heard := make(chan LeaderChange, 10)
	p, err := NewPartitions(reg, Keyspace{Name: "default", Partition: 0, Topology: func() Topology { return locked },
		OnLeaderChange: func(c LeaderChange) { heard <- c }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Watch(ctx); close(done) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()
	changes := func() float64 { v, _ := gather(t, reg).Sum("plugdb_partition_leader_changes_total", nil); return v }
	// set sets the leader and waits until Watch read it.
	set := func(l coord.LeaderInfo) {
		<-mu
		topo.views[0].Leader = l
		old := topo.changed
		topo.changed = make(chan struct{})
		reads := locked.reads
		mu <- struct{}{}
		close(old)
		testutil.WaitFor(t, 10*time.Second, func() bool {
			<-mu
			defer func() { mu <- struct{}{} }()
			return locked.reads > reads
		}, "Watch to read the partition")
	}
	set(coord.LeaderInfo{Addr: "a:1", Epoch: 1}) // the first leader seen: no change
	set(coord.LeaderInfo{})                      // none for a while
	set(coord.LeaderInfo{Addr: "b:1", Epoch: 2}) // a new one
	testutil.WaitFor(t, 10*time.Second, func() bool { return changes() == 1 }, "one leader change counted")
	set(coord.LeaderInfo{Addr: "b:1", Epoch: 3}) // same node, new epoch
	testutil.WaitFor(t, 10*time.Second, func() bool { return changes() == 2 }, "a new epoch counted")
	cancel()
	<-done
	stopped = true
	close(heard)
	var got []LeaderChange
	for c := range heard {
		got = append(got, c)
	}
	want := []LeaderChange{
		{Keyspace: "default", Partition: 0, From: "a:1", FromEpoch: 1, To: "b:1", Epoch: 2},
		{Keyspace: "default", Partition: 0, From: "b:1", FromEpoch: 2, To: "b:1", Epoch: 3},
	}
	if !slices.Equal(got, want) {
		t.Errorf("OnLeaderChange heard %+v, want %+v", got, want)
	}
}

// lockedTopology reads a fakeTopology under mu.
type lockedTopology struct {
	t     *fakeTopology
	mu    chan struct{}
	reads int // of Partition
}

func (l *lockedTopology) Partitions() int {
	<-l.mu
	defer func() { l.mu <- struct{}{} }()
	return l.t.Partitions()
}
func (l *lockedTopology) Partition(n int) coord.View {
	<-l.mu
	defer func() { l.mu <- struct{}{} }()
	l.reads++
	return l.t.Partition(n)
}
func (l *lockedTopology) Changed() <-chan struct{} {
	<-l.mu
	defer func() { l.mu <- struct{}{} }()
	return l.t.Changed()
}

func TestReplica(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := replicators.NewLatencyRecorder(replicators.SyncBounds)
	rec.Observe(300 * time.Microsecond)
	rec.Observe(5 * time.Millisecond)
	role := coord.RoleLeader
	err := RegisterReplica(reg, Replica{Keyspace: "default", Partition: 2,
		Role: func() (string, uint64) { return role, 7 },
		Status: func(context.Context) (replicators.Status, error) {
			return replicators.Status{InSync: 2, LogSync: rec.Latency(), Followers: []replicators.FollowerStatus{
				{Addr: "127.0.0.1:9", LagStatements: 4, LagTime: 1500 * time.Millisecond}}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	f := gather(t, reg)
	p2 := map[string]string{"keyspace": "default", "partition": "2"}
	for name, want := range map[string]float64{"plugdb_replica_is_leader": 1, "plugdb_replica_epoch": 7, "plugdb_replication_in_sync_replicas": 2,
		"plugdb_replication_lag_statements": 4, "plugdb_replication_lag_seconds": 1.5, "plugdb_replication_log_fsync_duration_seconds": 2} {
		if v, _ := f.Sum(name, p2); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	h := f["plugdb_replication_log_fsync_duration_seconds"].GetMetric()[0].GetHistogram()
	if got := h.GetSampleSum(); got < 0.0053 || got > 0.00531 {
		t.Errorf("fsync histogram sum %v, want 0.0053", got)
	}
	role = coord.RoleFollower
	f = gather(t, reg)
	if v, _ := f.Sum("plugdb_replica_is_leader", p2); v != 0 {
		t.Errorf("follower: is_leader %v", v)
	}
	if m := f.Missing("plugdb_replication_lag_statements"); len(m) == 0 {
		t.Error("a follower reports followers' lag")
	}
}

func TestPluginsEngine(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := NewPlugins(reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	inner, err := memory.Open(ctx, engines.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	e := p.Engine(inner, "memory", "default", 0)
	defer e.Close()
	if got, want := engines.InterfacesOf(e), engines.InterfacesOf(inner); got != want {
		t.Errorf("the timed engine has interfaces %v, the engine %v", got, want)
	}
	if got, want := engines.CapabilitiesOf(e), engines.CapabilitiesOf(inner); got != want {
		t.Errorf("the timed engine has capabilities %+v, the engine %+v", got, want)
	}
	for i := range 3 {
		if err := e.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte{byte('a' + i)}, Value: []byte("v"), LSN: uint64(i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Get(ctx, []byte("zz")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("get of a missing key: %v", err)
	}
	n := 0
	for _, err := range engines.Scan(ctx, e, engines.ScanRange{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("scan through the timed engine: %d rows, want 3", n)
	}
	p.Restarted("engine", "memory")
	f := gather(t, reg)
	if v, _ := f.Sum("plugdb_engine_apply_duration_seconds", map[string]string{"keyspace": "default", "partition": "0"}); v != 3 {
		t.Errorf("engine apply count %v, want 3", v)
	}
	if v, _ := f.Sum("plugdb_plugin_call_duration_seconds", map[string]string{"kind": "engine", "plugin": "memory", "method": "Get"}); v != 1 {
		t.Errorf("Get calls %v, want 1", v)
	}
	if v, ok := f.Sum("plugdb_plugin_call_errors_total", nil); !ok || v != 0 {
		t.Errorf("plugin call errors %v (family there: %v); want 0: a not-found Get is no failed call", v, ok)
	}
	if v, _ := f.Sum("plugdb_plugin_restarts_total", map[string]string{"kind": "engine", "plugin": "memory"}); v != 1 {
		t.Errorf("restarts %v, want 1", v)
	}
}

func TestPluginsPartitioner(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := NewPlugins(reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	inner, err := hash.Open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	part := p.Partitioner(inner, "hash")
	defer part.Close()
	if err := part.Configure(ctx, 4, nil); err != nil {
		t.Fatal(err)
	}
	keys := [][]byte{[]byte("a"), []byte("b")}
	got, want := make([]int, 2), make([]int, 2)
	if err := part.Locate(ctx, keys, got); err != nil {
		t.Fatal(err)
	}
	if err := inner.Locate(ctx, keys, want); err != nil || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("the timed partitioner places %v, the partitioner %v (%v)", got, want, err)
	}
	if err := part.Configure(ctx, 0, nil); err == nil {
		t.Fatal("0 partitions configured")
	}
	f := gather(t, reg)
	for _, c := range []struct {
		name, method string
		want         float64
	}{
		{"plugdb_plugin_call_duration_seconds", "Locate", 1},
		{"plugdb_plugin_call_duration_seconds", "Configure", 2},
		{"plugdb_plugin_call_errors_total", "Configure", 1},
		{"plugdb_plugin_call_errors_total", "Locate", 0},
	} {
		if v, _ := f.Sum(c.name, map[string]string{"kind": "partitioner", "plugin": "hash", "method": c.method}); v != c.want {
			t.Errorf("%s{method=%s} = %v, want %v", c.name, c.method, v, c.want)
		}
	}
}

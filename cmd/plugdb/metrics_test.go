package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/metrics/metricstest"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
)

// The metrics each process serves (docs/metrics.md lists them).
var (
	everyProcessFamilies = []string{
		"plugdb_requests_total", "plugdb_request_duration_seconds",
		"plugdb_grpc_server_started_total", "plugdb_grpc_server_handled_total", "plugdb_grpc_server_handling_seconds",
		"plugdb_partition_has_leader", "plugdb_partition_leader_epoch", "plugdb_partition_isr_size",
		"plugdb_partition_members", "plugdb_partition_leader_changes_total",
		"plugdb_zookeeper_session_up", "plugdb_zookeeper_session_state",
		"go_goroutines", "process_cpu_seconds_total",
	}
	nodeFamilies = []string{
		"plugdb_replica_is_leader", "plugdb_replica_epoch",
		"plugdb_replication_in_sync_replicas", "plugdb_replication_lag_statements", "plugdb_replication_lag_seconds",
		"plugdb_replication_log_fsync_duration_seconds", "plugdb_engine_apply_duration_seconds",
		"plugdb_plugin_call_duration_seconds", "plugdb_plugin_restarts_total",
	}
)

// docFamilyRE finds a family in a table row of docs/metrics.md.
var docFamilyRE = regexp.MustCompile("(?m)^\\| `(plugdb_[a-z0-9_]+)`")

// checkMetricsDoc: docs/metrics.md lists every plugdb_ family the router
// and a leader node expose, and no other.
func checkMetricsDoc(t *testing.T, scrapes ...metricstest.Families) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range docFamilyRE.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	exposed := map[string]bool{}
	for _, f := range scrapes {
		for name := range f {
			if strings.HasPrefix(name, "plugdb_") {
				exposed[name] = true
			}
		}
	}
	for name := range exposed {
		if !documented[name] {
			t.Errorf("%s is exposed but not in docs/metrics.md", name)
		}
	}
	for name := range documented {
		if !exposed[name] {
			t.Errorf("docs/metrics.md lists %s, which neither the router nor a leader node exposes", name)
		}
	}
}

// healthz returns the status code and body of url's /healthz, or 0 and the
// error.
func healthz(addr string) (int, string) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func scrape(t *testing.T, c *testCluster, addr string) metricstest.Families {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	f, err := metricstest.Scrape(ctx, "http://"+addr+"/metrics")
	if err != nil {
		t.Fatalf("%v\n%s", err, c.logs())
	}
	return f
}

func sum(t *testing.T, f metricstest.Families, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := f.Sum(name, labels)
	if !ok {
		t.Fatalf("no family %s", name)
	}
	return v
}

// TestMetricsAndHealth: on a real cluster (ZooKeeper, a router, 2
// partitions × 2 statement-replicated nodes, their plugin processes), the
// router's /metrics (router.http) and each node's (--metrics-addr) list the
// families of docs/metrics.md; a bounded load moves the request counters,
// the log fsync and engine apply histograms; /healthz is 200 while every
// partition has a leader, and the router's turns 503, naming the partition,
// once one has none.
func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	metricsOf := map[string]string{} // node address -> metrics address
	c := startClusterWith(t, zktest.Shared(t), 2, 2, "{plugin: hash}", "{plugin: statement, options: {ack: semi-sync}}",
		func(addr string) []string {
			if metricsOf[addr] == "" {
				metricsOf[addr] = testutil.FreeAddr(t)
			}
			return []string{"--metrics-addr", metricsOf[addr]}
		})
	st := mustStatus(t, c)
	leader0, _ := c.leaderOf(st, 0)
	leader1, _ := c.leaderOf(st, 1)
	follower0 := c.followersOf(st, 0)[0]

	// Healthy: the router's /healthz and every node's say so (the router
	// and the nodes learn the leaders from their own ZooKeeper watches).
	for _, a := range append([]string{c.http}, metricsOf[leader0], metricsOf[follower0], metricsOf[leader1]) {
		var code int
		var body string
		c.waitFor("/healthz 200 at "+a, func() bool { code, body = healthz(a); return code == http.StatusOK })
		if !strings.HasPrefix(body, "ok") {
			t.Errorf("%s/healthz: 200 %q, want ok", a, body)
		}
	}

	router := scrape(t, c, c.http)
	if m := router.Missing(everyProcessFamilies...); len(m) > 0 {
		t.Errorf("router /metrics lacks %v", m)
	}
	if v := sum(t, router, "plugdb_partition_has_leader", map[string]string{"keyspace": "default"}); v != 2 {
		t.Errorf("router: plugdb_partition_has_leader sums to %v, want 2 (both partitions)", v)
	}
	if v := sum(t, router, "plugdb_zookeeper_session_up", nil); v != 1 {
		t.Errorf("router: plugdb_zookeeper_session_up %v, want 1", v)
	}
	nodeBefore := scrape(t, c, metricsOf[leader0])
	if m := nodeBefore.Missing(append(everyProcessFamilies, nodeFamilies...)...); len(m) > 0 {
		t.Errorf("node %s /metrics lacks %v", leader0, m)
	}
	p0 := map[string]string{"keyspace": "default", "partition": "0"}
	if v := sum(t, nodeBefore, "plugdb_replica_is_leader", p0); v != 1 {
		t.Errorf("leader %s: plugdb_replica_is_leader %v, want 1", leader0, v)
	}
	followerBefore := scrape(t, c, metricsOf[follower0])
	if v := sum(t, followerBefore, "plugdb_replica_is_leader", p0); v != 0 {
		t.Errorf("follower %s: plugdb_replica_is_leader %v, want 0", follower0, v)
	}
	if v := sum(t, nodeBefore, "plugdb_partition_isr_size", p0); v != 2 {
		t.Errorf("leader %s: plugdb_partition_isr_size %v, want 2", leader0, v)
	}

	// A bounded load: at most n puts, for at most a minute.
	const n = 200
	putOK := map[string]string{"method": "Put", "code": "OK"}
	routerPuts := sum(t, router, "plugdb_requests_total", putOK)
	deadline := time.Now().Add(time.Minute)
	sent, onP0 := 0, 0
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		resp, err := c.put(fmt.Sprintf("metrics-%03d", i), "v", 10*time.Second)
		if err != nil {
			t.Fatalf("put %d: %v\n%s", i, err, c.logs())
		}
		sent++
		if resp.GetPartition() == 0 {
			onP0++
		}
	}
	if sent < n || onP0 == 0 {
		t.Fatalf("sent %d of %d puts in a minute, %d on partition 0", sent, n, onP0)
	}

	router = scrape(t, c, c.http)
	if got := sum(t, router, "plugdb_requests_total", putOK) - routerPuts; got < float64(sent) {
		t.Errorf("router: plugdb_requests_total{method=Put,code=OK} grew by %v, want at least the %d puts sent", got, sent)
	}
	if got := sum(t, router, "plugdb_request_duration_seconds", putOK) - routerPuts; got < float64(sent) {
		t.Errorf("router: plugdb_request_duration_seconds{method=Put} counted %v more, want at least %d", got, sent)
	}
	if got := sum(t, router, "plugdb_grpc_server_handled_total", map[string]string{"grpc_method": "Put", "grpc_code": "OK"}); got < float64(sent) {
		t.Errorf("router: plugdb_grpc_server_handled_total{grpc_method=Put} %v, want at least %d", got, sent)
	}
	if got := sum(t, router, "plugdb_plugin_call_duration_seconds", map[string]string{"kind": "partitioner", "plugin": "hash", "method": "Locate"}); got < float64(sent) {
		t.Errorf("router: partitioner Locate calls %v, want at least one per put (%d)", got, sent)
	}
	node := scrape(t, c, metricsOf[leader0])
	grew := func(f, before metricstest.Families, name string, labels map[string]string) float64 {
		return sum(t, f, name, labels) - sum(t, before, name, labels)
	}
	if got := grew(node, nodeBefore, "plugdb_requests_total", putOK); got < float64(onP0) {
		t.Errorf("leader %s: plugdb_requests_total{method=Put,code=OK} grew by %v, want at least the %d puts of partition 0", leader0, got, onP0)
	}
	for _, h := range []struct {
		name   string
		labels map[string]string
	}{
		{"plugdb_replication_log_fsync_duration_seconds", p0},
		{"plugdb_engine_apply_duration_seconds", p0},
		{"plugdb_plugin_call_duration_seconds", map[string]string{"kind": "replicator", "method": "Replicate"}},
		{"plugdb_plugin_call_duration_seconds", map[string]string{"kind": "engine", "method": "Apply"}},
	} {
		if got := grew(node, nodeBefore, h.name, h.labels); got <= 0 {
			t.Errorf("leader %s: %s%v counted nothing more under load", leader0, h.name, h.labels)
		}
	}
	// The follower persists the same statements in its own log, and applies them.
	follower := scrape(t, c, metricsOf[follower0])
	for _, name := range []string{"plugdb_replication_log_fsync_duration_seconds", "plugdb_engine_apply_duration_seconds"} {
		if got := grew(follower, followerBefore, name, p0); got <= 0 {
			t.Errorf("follower %s: %s counted nothing more under load", follower0, name)
		}
	}
	if v := sum(t, node, "plugdb_replication_in_sync_replicas", p0); v != 2 {
		t.Errorf("leader %s: plugdb_replication_in_sync_replicas %v, want 2", leader0, v)
	}
	checkMetricsDoc(t, router, node)

	// Partition 1 loses both its nodes: it has no leader, and the router
	// cannot serve it.
	for _, a := range c.followersOf(st, 1) {
		c.nodes[a].kill()
	}
	c.nodes[leader1].kill()
	var body string
	c.waitFor("the router's /healthz to turn 503", func() bool {
		var code int
		code, body = healthz(c.http)
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "no leader for partition 1") {
		t.Errorf("router /healthz 503 body %q, want it to name partition 1", body)
	}
	router = scrape(t, c, c.http)
	if v := sum(t, router, "plugdb_partition_has_leader", map[string]string{"partition": "1"}); v != 0 {
		t.Errorf("router: plugdb_partition_has_leader{partition=1} %v after its nodes died, want 0", v)
	}
	// Partition 0's leader still serves, and says so.
	if code, body := healthz(metricsOf[leader0]); code != http.StatusOK {
		t.Errorf("leader %s of the healthy partition: /healthz %d %q, want 200", leader0, code, body)
	}
}

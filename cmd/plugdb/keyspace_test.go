package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// End-to-end tests of keyspaces (docs/keyspaces.md): a config with the
// default keyspace and a keyspace events that differ in partitioner,
// partition count, engine or ack mode, served by plugdb dev and by a
// cluster (router and nodes on ZooKeeper).

// eventsRange is the events keyspace's partitioner in these tests: range
// with splits g and n over 3 partitions (a… in 0, h… in 1, u… in 2).
const eventsRange = "{plugin: range, mode: inprocess, options: {splits: 'g,n'}}"

// ksPut writes key=value into keyspace ks ("" the default one) and returns
// the partition that took it.
func ksPut(t *testing.T, kv plugdbv1.KVClient, ks, key, value string) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kv.Put(ctx, &plugdbv1.PutRequest{Keyspace: ks, Key: []byte(key), Value: []byte(value)})
	if err != nil {
		t.Fatalf("put %s in keyspace %q: %v", key, ks, err)
	}
	return resp.GetPartition()
}

// ksGet reads key from keyspace ks; "" with the error when it fails.
func ksGet(kv plugdbv1.KVClient, ks, key string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kv.Get(ctx, &plugdbv1.GetRequest{Keyspace: ks, Key: []byte(key)})
	if err != nil {
		return "", err
	}
	return string(resp.GetValue()), nil
}

// ksScan scans all of keyspace ks: "key=value" in key order.
func ksScan(t *testing.T, kv plugdbv1.KVClient, ks string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := kv.Scan(ctx, &plugdbv1.ScanRequest{Keyspace: ks})
	if err != nil {
		t.Fatalf("scan keyspace %q: %v", ks, err)
	}
	var out []string
	for {
		row, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("scan keyspace %q: %v", ks, err)
		}
		out = append(out, string(row.GetKey())+"="+string(row.GetValue()))
	}
}

// ksStatus asks for keyspace ks's status.
func ksStatus(t *testing.T, kv plugdbv1.KVClient, ks string) *plugdbv1.StatusResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := kv.Status(ctx, &plugdbv1.StatusRequest{Keyspace: ks})
	if err != nil {
		t.Fatalf("status of keyspace %q: %v", ks, err)
	}
	return st
}

// wantRefused checks err is InvalidArgument and its message names each of
// names.
// everyPartitionLed reports whether the router's status of each keyspace
// lists partitions (want[keyspace] of them, when not 0), each with a leader.
func everyPartitionLed(kv plugdbv1.KVClient, want map[string]int) bool {
	for ks, n := range want {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := kv.Status(ctx, &plugdbv1.StatusRequest{Keyspace: ks})
		cancel()
		if err != nil || len(st.GetPartitions()) == 0 || n > 0 && len(st.GetPartitions()) != n {
			return false
		}
		for _, p := range st.GetPartitions() {
			if len(p.GetReplicas()) == 0 || p.GetReplicas()[0].GetRole() != "leader" {
				return false
			}
		}
	}
	return true
}

func wantRefused(t *testing.T, what string, err error, names ...string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("%s: %v, want InvalidArgument", what, err)
		return
	}
	for _, n := range names {
		if !strings.Contains(status.Convert(err).Message(), n) {
			t.Errorf("%s: %q does not name %q", what, status.Convert(err).Message(), n)
		}
	}
}

// checkKeyspaces writes the same key into both keyspaces of kv's server with
// different values, and keys of each keyspace alone, and checks that each
// keyspace reads and scans its own rows only, that an unknown keyspace is
// refused naming both, and that the status lists both keyspaces.
func checkKeyspaces(t *testing.T, kv plugdbv1.KVClient, wantEvents string) {
	t.Helper()
	ksPut(t, kv, "", "user:1", "in-default")
	ksPut(t, kv, "default", "a:default-only", "d")
	if p := ksPut(t, kv, "events", "user:1", "in-events"); p != 2 {
		t.Errorf("events put user:1: partition %d, want 2 (range splits g,n)", p)
	}
	if p := ksPut(t, kv, "events", "h:events-only", "e"); p != 1 {
		t.Errorf("events put h:events-only: partition %d, want 1 (range splits g,n)", p)
	}
	for _, c := range []struct{ ks, key, want string }{
		{"", "user:1", "in-default"}, {"default", "user:1", "in-default"}, {"events", "user:1", "in-events"},
		{"default", "a:default-only", "d"}, {"events", "h:events-only", "e"},
	} {
		if got, err := ksGet(kv, c.ks, c.key); err != nil || got != c.want {
			t.Errorf("get %s in keyspace %q: %q, %v; want %q", c.key, c.ks, got, err, c.want)
		}
	}
	for _, c := range []struct{ ks, key string }{{"events", "a:default-only"}, {"", "h:events-only"}} {
		if _, err := ksGet(kv, c.ks, c.key); status.Code(err) != codes.NotFound {
			t.Errorf("get %s in keyspace %q: %v, want NotFound (the other keyspace's key)", c.key, c.ks, err)
		}
	}
	if got, want := ksScan(t, kv, ""), []string{"a:default-only=d", "user:1=in-default"}; !slices.Equal(got, want) {
		t.Errorf("scan of the default keyspace: %q, want %q", got, want)
	}
	if got, want := ksScan(t, kv, "events"), []string{"h:events-only=e", "user:1=in-events"}; !slices.Equal(got, want) {
		t.Errorf("scan of keyspace events: %q, want %q", got, want)
	}

	_, err := ksGet(kv, "nope", "user:1")
	wantRefused(t, "get in keyspace nope", err, `"nope"`, "default, events")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Keyspace: "nope", Key: []byte("k"), Value: []byte("v")})
	wantRefused(t, "put in keyspace nope", err, `"nope"`, "default, events")

	st := ksStatus(t, kv, "")
	var got []string
	for _, k := range st.GetKeyspaces() {
		got = append(got, fmt.Sprintf("%s %s %d", k.GetName(), k.GetPartitioner().GetPlugin(), len(k.GetPartitions())))
	}
	if want := []string{"default hash 2", "events range 3"}; !slices.Equal(got, want) {
		t.Errorf("status keyspaces %q, want %q", got, want)
	}
	if n := len(st.GetPartitions()); n != 2 {
		t.Errorf("status of the default keyspace: %d partitions, want 2", n)
	}
	ev := ksStatus(t, kv, "events")
	if n := len(ev.GetPartitions()); n != 3 || ev.GetPartitioner().GetPlugin() != "range" || ev.GetEngine().GetPlugin() != wantEvents {
		t.Errorf("status of keyspace events: %d partitions, partitioner %s, engine %s; want 3, range, %s",
			n, ev.GetPartitioner().GetPlugin(), ev.GetEngine().GetPlugin(), wantEvents)
	}
}

// checkKeyspacesREST reads user:1 from each keyspace over REST and checks
// an unknown keyspace is a 400 naming the served ones.
func checkKeyspacesREST(t *testing.T, httpAddr string) {
	t.Helper()
	d := &devProc{http: httpAddr}
	for path, want := range map[string]string{"/v1/kv/user:1": "in-default", "/v1/keyspaces/default/kv/user:1": "in-default", "/v1/keyspaces/events/kv/user:1": "in-events"} {
		if m := wantHTTP(t, d, "GET", path, "", 200); m != nil && m["value"] != want {
			t.Errorf("GET %s: %v, want value %s", path, m, want)
		}
	}
	wantHTTPError(t, d, "GET", "/v1/keyspaces/nope/kv/user:1", "", 400, codes.InvalidArgument, "INVALID_ARGUMENT")
}

// checkStatusCLI checks `plugdb status` lists both keyspaces: its output
// says each of wantLines, with runs of spaces as one.
func checkStatusCLI(t *testing.T, grpcAddr string, wantLines ...string) {
	t.Helper()
	res := runPlugdb(t, 30*time.Second, "status", "--addr", grpcAddr)
	if res.code != 0 || !strings.Contains(res.stdout, "KEYSPACE") {
		t.Fatalf("plugdb status: want a KEYSPACE table\n%s", res)
	}
	var lines []string
	for _, l := range strings.Split(res.stdout, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	for _, w := range wantLines {
		if !slices.Contains(lines, w) {
			t.Errorf("plugdb status does not say %q\n%s", w, res.stdout)
		}
	}
	res = runPlugdb(t, 30*time.Second, "status", "-o", "json", "--addr", grpcAddr)
	var st statusJSON
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || len(st.Keyspaces) != 2 || st.Keyspaces[1].Name != "events" || len(st.Keyspaces[1].Partitions) != 3 {
		t.Errorf("plugdb status -o json: want keyspaces default and events (3 partitions): %v\n%s", err, res)
	}
}

// plugdb dev with two keyspaces: events has its own partitioner (range),
// partition count and engine (memory), and its data folder under
// DATA/keyspaces/events.
func TestDevKeyspaces(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "plugdb.yaml")
	text := "partitions: 2\nkeyspaces:\n  events:\n    partitions: 3\n    partitioner: " + eventsRange + "\n    engine: {plugin: memory}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	d := startDev(t, data, nil, "--config", cfg)
	if !strings.Contains(d.stdout.String(), "keyspace events: 3 partitions, engine memory, partitioner range") {
		t.Errorf("banner does not describe keyspace events\n%s", d.output())
	}
	kv := plugdbv1.NewKVClient(dial(t, d.grpcAddr))
	checkKeyspaces(t, kv, "memory")
	checkKeyspacesREST(t, d.http)
	checkStatusCLI(t, d.grpcAddr, "events 3 range (inprocess; splits=g,n) none (inprocess) memory (process)")
	for _, f := range []string{"plugdb.json", "p1", filepath.Join("keyspaces", "events", "plugdb.json"), filepath.Join("keyspaces", "events", "p2")} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("data folder: %v", err)
		}
	}
	d.stop(t, 5)
}

// ksCluster is a router and one replica per partition of two keyspaces on
// the shared ZooKeeper.
type ksCluster struct {
	grpc, http string
	router     *proc
	nodes      map[string]*proc // by "keyspace/partition"
	addrs      map[string]string
}

func (c *ksCluster) logs() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- router:\n%s", c.router.out.String())
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range c.nodes {
			if !yield(n) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "--- node %s (%s):\n%s", name, c.addrs[name], c.nodes[name].out.String())
	}
	return b.String()
}

// A cluster of two keyspaces: the default one (hash, 2 partitions, ack
// semi-sync, which with one replica needs min_insync 1) and events (range, 3 partitions, ack async), one router
// serving both, each node serving its own keyspace alone.
func TestClusterKeyspaces(t *testing.T) {
	t.Parallel()
	zk := zktest.Shared(t)
	dir := t.TempDir()
	c := &ksCluster{grpc: testutil.FreeAddr(t), http: testutil.FreeAddr(t), nodes: map[string]*proc{}, addrs: map[string]string{}}
	servers, _ := json.Marshal(zk.Servers())
	yaml := fmt.Sprintf(`cluster: e2e
partitions: 2
zookeeper: {servers: %s, session_timeout: 2s, root: /e2e-%d}
engine: {plugin: rowfile, options: {sync: batch}}
partitioner: {plugin: hash, mode: inprocess}
replicator: {plugin: statement, options: {ack: semi-sync, min_insync: "1"}}
router: {grpc: %q, http: %q}
nodes: {replicas: 1}
keyspaces:
  events:
    partitions: 3
    partitioner: %s
    replicator: {plugin: statement, options: {ack: async}}
`, servers, clusterRoots.Add(1), c.grpc, c.http, eventsRange)
	cfg := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c.router = startProc(t, "router", "router", "--config", cfg)
	for _, ks := range []struct {
		name       string
		partitions int
	}{{"default", 2}, {"events", 3}} {
		for p := range ks.partitions {
			name := fmt.Sprintf("%s/%d", ks.name, p)
			addr := testutil.FreeAddr(t)
			c.addrs[name] = addr
			args := []string{"node", "--config", cfg, "--partition", fmt.Sprint(p), "--addr", addr, "--data", filepath.Join(dir, ks.name, fmt.Sprint(p))}
			if ks.name != "default" {
				args = append(args, "--keyspace", ks.name)
			}
			c.nodes[name] = startProc(t, "node "+name, args...)
		}
	}
	kv := plugdbv1.NewKVClient(dial(t, c.grpc))
	ready := testutil.Eventually(t.Context(), 60*time.Second, func() bool {
		return everyPartitionLed(kv, map[string]int{"": 0, "events": 0})
	})
	if !ready {
		t.Fatalf("no leader in every partition of both keyspaces after 60s\n%s", c.logs())
	}
	if !strings.Contains(c.router.out.String(), "keyspaces default (hash, 2 partitions), events (range, 3 partitions)") {
		t.Errorf("router's startup lines do not list the keyspaces\n%s", c.router.out.String())
	}

	checkKeyspaces(t, kv, "rowfile")
	checkKeyspacesREST(t, c.http)
	checkStatusCLI(t, c.grpc, "default 2 hash (inprocess) statement (process; ack=semi-sync; min_insync=1) rowfile (process; sync=batch)",
		"events 3 range (inprocess; splits=g,n) statement (process; ack=async) rowfile (process; sync=batch)")
	// Each keyspace's leaders serve its own ack mode.
	for ks, want := range map[string]string{"": "semi-sync", "events": "async"} {
		for _, p := range ksStatus(t, kv, ks).GetPartitions() {
			if p.GetAck() != want {
				t.Errorf("keyspace %q partition %d: ack %q, want %q", ks, p.GetPartition(), p.GetAck(), want)
			}
		}
	}
	// A node serves its own keyspace alone: a request naming another one,
	// or none (the default one), is refused with the keyspace it serves.
	evNode := plugdbv1.NewKVClient(dial(t, c.addrs["events/2"]))
	if got, err := ksGet(evNode, "events", "user:1"); err != nil || got != "in-events" {
		t.Errorf("events node, get user:1 in events: %q, %v", got, err)
	}
	for _, ks := range []string{"", "default"} {
		_, err := ksGet(evNode, ks, "user:1")
		wantRefused(t, fmt.Sprintf("events node, get in keyspace %q", ks), err, "events")
	}
	defNode := plugdbv1.NewKVClient(dial(t, c.addrs["default/0"]))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := defNode.Put(ctx, &plugdbv1.PutRequest{Keyspace: "events", Key: []byte("user:1"), Value: []byte("x")})
	wantRefused(t, "default node, put in keyspace events", err, `"events"`, "default")
	if got, err := ksGet(kv, "events", "user:1"); err != nil || got != "in-events" {
		t.Errorf("after the refused put, events user:1: %q, %v", got, err)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", c.logs())
	}
}

// plugdb cluster up with two keyspaces starts the nodes of both (events'
// with --keyspace, on the ports after the default keyspace's, their data
// and logs apart), is ready once both have leaders, serves both through its
// router, and cluster down stops every node of both.
func TestClusterUpKeyspaces(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cluster")
	zk := testutil.FreePortRun(t, 1)
	nodes := testutil.FreePortRun(t, 1+2)
	grpcAddr, httpAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	text := fmt.Sprintf(`cluster: e2e
partitions: 1
zookeeper: {servers: ["127.0.0.1:%d"], session_timeout: 2s}
engine: {plugin: rowfile, options: {sync: batch}}
partitioner: {plugin: hash, mode: inprocess}
replicator: {plugin: none}
router: {grpc: "%s", http: "%s"}
nodes: {replicas: 1, base_port: %d}
keyspaces:
  events:
    partitions: 2
    partitioner: {plugin: ring, mode: inprocess}
`, zk, grpcAddr, httpAddr, nodes)
	cfg := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	up := startClusterUp(t, dir, cfg, 1)
	procs := recorded(t, dir)
	rec, _ := cluster.ReadRecord(dir)
	var names []string
	for _, p := range rec.Children {
		names = append(names, p.Name+"@"+p.Addr)
	}
	want := []string{"zookeeper-1@" + rec.ZooKeeper[0], "router@" + grpcAddr, fmt.Sprintf("node-p0-r0@127.0.0.1:%d", nodes),
		fmt.Sprintf("node-events-p0-r0@127.0.0.1:%d", nodes+1), fmt.Sprintf("node-events-p1-r0@127.0.0.1:%d", nodes+2)}
	if !slices.Equal(names, want) {
		t.Fatalf("recorded children %q, want %q\n%s", names, want, up.output())
	}
	for _, w := range []string{"keyspaces: default (1 partitions, hash, none), events (2 partitions, ring, none)",
		"status of keyspace events: cluster e2e; partition 0 leader", "partition 1 leader"} {
		if !strings.Contains(up.stdout.String(), w) {
			t.Errorf("cluster up did not print %q\n%s", w, up.output())
		}
	}
	kv := plugdbv1.NewKVClient(dial(t, grpcAddr))
	ksPut(t, kv, "", "user:1", "in-default")
	ksPut(t, kv, "events", "user:1", "in-events")
	for ks, want := range map[string]string{"": "in-default", "events": "in-events"} {
		if got, err := ksGet(kv, ks, "user:1"); err != nil || got != want {
			t.Errorf("get user:1 in keyspace %q: %q, %v; want %q", ks, got, err, want)
		}
	}
	for _, f := range []string{filepath.Join("data", "p0-r0"), filepath.Join("data", "keyspaces", "events", "p1-r0"), filepath.Join("logs", "node-events-p1-r0.log")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("cluster folder: %v", err)
		}
	}
	down := runPlugdb(t, 2*time.Minute, "cluster", "down", "--dir", dir)
	if down.code != 0 || !strings.Contains(down.stdout, "node-events-p1-r0 (pid") {
		t.Fatalf("cluster down\n%s", down)
	}
	if code := up.waitExit(t, time.Minute); code != 0 {
		t.Fatalf("cluster up exited %d after down\n%s", code, up.output())
	}
	assertAllGone(t, procs, dir, rec.ZooKeeper)
}

// plugdb node --keyspace refuses a keyspace the config does not declare,
// naming those it does, before it starts anything.
func TestNodeUnknownKeyspace(t *testing.T) {
	t.Parallel()
	zk := zktest.Shared(t)
	servers, _ := json.Marshal(zk.Servers())
	cfg := filepath.Join(t.TempDir(), "plugdb.yaml")
	yaml := fmt.Sprintf("zookeeper: {servers: %s, root: /e2e-%d}\nkeyspaces:\n  events: {partitions: 3}\n", servers, clusterRoots.Add(1))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runPlugdb(t, 30*time.Second, "node", "--config", cfg, "--keyspace", "nope", "--partition", "0", "--addr", "127.0.0.1:1", "--data", t.TempDir())
	if res.code != 2 || !strings.Contains(res.stderr, `--keyspace: keyspace "nope": allowed values are default, events`) {
		t.Fatalf("plugdb node --keyspace nope: want exit 2 naming default and events\n%s", res)
	}
	// --partition counts the keyspace's partitions, as ZooKeeper records
	// them (a reshard changes them): a partition a reshard will add needs
	// --new-partition.
	res = runPlugdb(t, 30*time.Second, "node", "--config", cfg, "--keyspace", "events", "--partition", "3", "--addr", "127.0.0.1:1", "--data", t.TempDir())
	if res.code != 2 || !strings.Contains(res.stderr, "--partition 3: allowed values are 0..2 (the keyspace has 3 partitions); to start a node of a partition a reshard will add, give --new-partition") {
		t.Fatalf("plugdb node --keyspace events --partition 3: want exit 2 naming 0..2\n%s", res)
	}
}

package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/core/local"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// startKeyspaceKV serves two keyspaces on a free 127.0.0.1 port, through
// api.NewKeyspaceServer over in-process memory partitions: "default" (2
// partitions, partitioner hash) and "events" (3, shown as partitioner range),
// and returns the address.
func startKeyspaceKV(t *testing.T) string {
	t.Helper()
	l := &loader.Loader{Self: os.Args[0], Engines: map[string]engines.OpenFunc{"memory": memory.Open}}
	backends := map[string]api.Backend{}
	for _, ks := range []struct {
		name, partitioner string
		n                 int
	}{{api.DefaultKeyspace, "hash", 2}, {"events", "range", 3}} {
		b, err := local.Open(context.Background(), l, loader.Block{Plugin: "memory", Mode: loader.ModeInProcess}, t.TempDir(), ks.n, local.Info{
			Cluster: "t", Addr: "x",
			Engine:      &plugdbv1.Plugin{Plugin: "memory", Mode: "inprocess"},
			Partitioner: &plugdbv1.Plugin{Plugin: ks.partitioner, Mode: "inprocess"},
			Replicator:  &plugdbv1.Plugin{Plugin: "none", Mode: "inprocess"},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		backends[ks.name] = b
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	plugdbv1.RegisterKVServer(srv, api.NewKeyspaceServer(backends))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestCLIKeyspace: --keyspace reaches the server on every verb, and status
// lists the keyspaces.
func TestCLIKeyspace(t *testing.T) {
	a := "--addr=" + startKeyspaceKV(t)
	ev := "--keyspace=events"
	expectCLI(t, runCLI(t, "put", ev, "user:1", "alice", a), 0, "", "")
	expectCLI(t, runCLI(t, "create", ev, "user:2", "bob", a), 0, "", "")
	expectCLI(t, runCLI(t, "update", "--keyspace", "events", "user:2", "bobby", a), 0, "", "")
	expectCLI(t, runCLI(t, "put", "user:9", "default", a), 0, "", "")
	expectCLI(t, runCLI(t, "get", ev, "user:1", a), 0, "alice\n", "")
	expectCLI(t, runCLI(t, "get", "user:1", a), 1, "", "not found: user:1\n")
	expectCLI(t, runCLI(t, "get", "--keyspace", "default", "user:9", a), 0, "default\n", "")
	expectCLI(t, runCLI(t, "scan", ev, "--prefix", "user:", a), 0, "user:1\talice\nuser:2\tbobby\n", "")
	expectCLI(t, runCLI(t, "scan", "--prefix", "user:", a), 0, "user:9\tdefault\n", "")
	expectCLI(t, runCLI(t, "delete", ev, "user:1", a), 0, "", "")
	expectCLI(t, runCLI(t, "get", ev, "user:1", "--consistency", "stale", a), 1, "", "not found: user:1\n")
	expectCLI(t, runCLI(t, "update", ev, "user:9", "x", a), 1, "", "not found: user:9\n")

	// An unknown keyspace: the server's message, naming the served ones.
	const unknown = "plugdb: keyspace \"nosuch\": allowed values are default, events (empty: default)\n"
	for _, args := range [][]string{
		{"get", "k"}, {"put", "k", "v"}, {"create", "k", "v"}, {"update", "k", "v"}, {"delete", "k"}, {"scan"}, {"status"},
	} {
		expectCLI(t, runCLI(t, append(args, "--keyspace", "nosuch", a)...), 2, "", unknown)
	}

	r := runCLI(t, "status", a)
	for _, want := range []string{
		"cluster: t\n\nKEYSPACE  PARTITIONS  PARTITIONER        REPLICATOR        ENGINE\n" +
			"default   2           hash (inprocess)   none (inprocess)  memory (inprocess)\n" +
			"events    3           range (inprocess)  none (inprocess)  memory (inprocess)\n\n" +
			"keyspace: default\nplugins: engine=memory (inprocess)  partitioner=hash (inprocess)  replicator=none (inprocess)\n\nPARTITION",
		"\n1          leader",
	} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("status: want %q in\n%v", want, r)
		}
	}
	r = runCLI(t, "status", ev, a)
	if r.code != 0 || !strings.Contains(r.stdout, "keyspace: events\nplugins: engine=memory (inprocess)  partitioner=range") || !strings.Contains(r.stdout, "\n2          leader") {
		t.Errorf("status --keyspace events:\n%v", r)
	}

	r = runCLI(t, "status", "-o", "json", ev, a)
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil {
		t.Fatalf("status -o json: %v %v", err, r)
	}
	if st.Partitioner.Plugin != "range" || len(st.Partitions) != 3 || len(st.Keyspaces) != 2 {
		t.Errorf("status -o json --keyspace events: %s", r.stdout)
	}
	for i, want := range []struct {
		name, partitioner string
		n                 int
	}{{"default", "hash", 2}, {"events", "range", 3}} {
		if i >= len(st.Keyspaces) {
			break
		}
		ks := st.Keyspaces[i]
		if ks.Name != want.name || ks.Partitioner.Plugin != want.partitioner || ks.Replicator.Plugin != "none" || ks.Engine.Plugin != "memory" || len(ks.Partitions) != want.n {
			t.Errorf("keyspaces[%d]: %+v, want %s with partitioner %s and %d partitions", i, ks, want.name, want.partitioner, want.n)
		}
	}
	if !strings.Contains(r.stdout, "\n  \"keyspaces\": [\n    {\n      \"name\": \"default\",") {
		t.Errorf("status -o json: keyspaces not listed as expected:\n%s", r.stdout)
	}
}

// TestCLIKeyspaceDev runs the flag against plugdb dev: a keyspace it does not
// serve is refused naming the default one, and status names the default one.
func TestCLIKeyspaceDev(t *testing.T) {
	t.Parallel()
	d := startDev(t, t.TempDir(), nil)
	res := d.cli(t, "get", "--keyspace", "nosuch", "k")
	if res.code != 2 || !strings.HasPrefix(res.stderr, `plugdb: keyspace "nosuch": allowed values are default`) {
		t.Errorf("get --keyspace nosuch:\n%s", res)
	}
	wantRun(t, d.cli(t, "put", "--keyspace", "default", "k", "v"), 0, "", "")
	wantRun(t, d.cli(t, "get", "k"), 0, "v\n", "")
	res = d.cli(t, "status")
	// One keyspace: no table of keyspaces, the line naming it.
	if res.code != 0 || !strings.HasPrefix(res.stdout, "cluster: dev\nkeyspace: default\nplugins: ") || strings.Contains(res.stdout, "KEYSPACE") {
		t.Errorf("status:\n%s", res)
	}
	d.stop(t, 0)
}

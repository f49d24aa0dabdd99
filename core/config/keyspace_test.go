package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var keyspaceKnown = Known{Engines: []string{"rowfile", "memory"}, Partitioners: []string{"hash", "range"}, Replicators: []string{"none", "statement"}}

func loadYAML(t *testing.T, y string) (Config, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(f, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Source{File: f})
	if err != nil {
		return c, err
	}
	return c, c.Validate(keyspaceKnown)
}

func TestKeyspacesInheritAndOffsetPorts(t *testing.T) {
	c, err := loadYAML(t, `
partitions: 2
data: /d
nodes: {replicas: 3, base_port: 7101}
replicator: {plugin: statement, options: {ack: semi-sync}}
keyspaces:
  users: {}
  events:
    partitions: 3
    partitioner: {plugin: range}
    replicator: {plugin: statement, options: {ack: async}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.KeyspaceNames(), ","); got != "default,events,users" {
		t.Fatalf("KeyspaceNames = %s, want default,events,users", got)
	}
	def, err := c.ForKeyspace("")
	if err != nil || def.Keyspace != "" || def.Data != "/d" || def.NodeAddr(0, 0) != "127.0.0.1:7101" {
		t.Fatalf("default: %+v %v", def, err)
	}
	ev, err := c.ForKeyspace("events")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Keyspace != "events" || ev.Partitions != 3 || ev.Partitioner.Plugin != "range" || ev.Replicator.Options["ack"] != "async" || ev.Engine.Plugin != "rowfile" {
		t.Fatalf("events: %+v", ev)
	}
	if ev.Data != filepath.Join("/d", "keyspaces", "events") {
		t.Fatalf("events data %s", ev.Data)
	}
	// default: 2×3 nodes on 7101..7106; events next: 3×3 on 7107..7115; users: 2×3 from 7116.
	if ev.NodeAddr(0, 0) != "127.0.0.1:7107" || ev.NodeAddr(2, 2) != "127.0.0.1:7115" {
		t.Fatalf("events ports %s..%s", ev.NodeAddr(0, 0), ev.NodeAddr(2, 2))
	}
	us, err := c.ForKeyspace("users")
	if err != nil || us.Partitions != 2 || us.Partitioner.Plugin != "hash" || us.Replicator.Options["ack"] != "semi-sync" || us.NodeAddr(0, 0) != "127.0.0.1:7116" {
		t.Fatalf("users: %+v %v", us, err)
	}
	if _, err := c.ForKeyspace("nosuch"); err == nil || !strings.Contains(err.Error(), "allowed values are default, events, users") {
		t.Fatalf("unknown keyspace: %v", err)
	}
}

func TestKeyspaceErrorsNameTheProblem(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`keyspaces: {Bad: {}}`, `keyspaces "Bad": does not start with a letter`},
		{`keyspaces: {default: {}}`, `keyspaces "default": reserved`},
		{`keyspaces: {a_b: {}}`, `character '_' not allowed`},
		{`keyspaces: {ev: {partitions: 0}}`, `keyspaces.ev: partitions 0: out of range (allowed: 1..1024)`},
		{`keyspaces: {ev: {nodes: {}}}`, `unknown key "keyspaces.ev.nodes" (allowed under keyspaces.ev: partitions, engine, partitioner, replicator)`},
		{`keyspaces: {ev: {engine: {plugin: nosuch}}}`, `keyspaces.ev: engine.plugin "nosuch": no such bundled engine`},
		{`keyspaces: {ev: {engine: {mode: x}}}`, `keyspaces.ev: engine.mode "x": not a mode`},
		{`keyspaces: [a]`, `keyspaces ["a"]: not a mapping`},
		{`keyspaces: {ev: 3}`, `keyspaces.ev 3: not a mapping`},
		{"keyspaces: {ev: {partitions: 1000}}\nnodes: {base_port: 65000}", `1002 partitions × 1 replicas need ports 65000..66001`},
	} {
		_, err := loadYAML(t, tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant …%s…", tc.yaml, err, tc.want)
		}
	}
}

func TestKeyspacesAreFileOnly(t *testing.T) {
	_, err := Load(Source{Env: []string{"PLUGDB_KEYSPACES_EV_PARTITIONS=3"}})
	if err == nil || !strings.Contains(err.Error(), "not a plugdb setting") {
		t.Fatalf("env keyspace: %v", err)
	}
	for _, k := range Keys() {
		if strings.HasPrefix(k, "keyspaces") {
			t.Fatalf("Keys() lists %s", k)
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/plugdb/plugdb/core/loader"
)

const defaultYAML = "../../configs/default.yaml"

// writeFile writes a config file in a temp folder and returns its path.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, src Source) Config {
	t.Helper()
	c, err := Load(src)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaultYAMLIsDefault(t *testing.T) {
	c := mustLoad(t, Source{File: defaultYAML})
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("configs/default.yaml loads as\n%+v\nDefault() is\n%+v", c, Default())
	}
	// The file spells out every key, so it is the defaults, not an empty overlay.
	fk := koanf.New(".")
	if err := fk.Load(file.Provider(defaultYAML), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	for _, key := range Keys() {
		if strings.HasSuffix(key, ".sha256") || key == "partitioner.mode" || key == "replicator.mode" || strings.HasPrefix(key, "tls.") {
			continue // empty in Default(): not spelled out
		}
		if !fk.Exists(key) {
			t.Errorf("configs/default.yaml does not set %s", key)
		}
	}
	if err := c.Validate(Known{Engines: []string{"memory", "rowfile"}, Partitioners: []string{"hash"}, Replicators: []string{"none"}}); err != nil {
		t.Fatalf("default config does not validate: %v", err)
	}
}

func TestLoadNothingIsDefault(t *testing.T) {
	c := mustLoad(t, Source{Env: []string{"HOME=/root", "PATH=/bin"}})
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("Load of nothing = %+v, want Default() %+v", c, Default())
	}
	// Default returns a fresh value each time.
	d := Default()
	d.Engine.Options["sync"] = "none"
	d.ZooKeeper.Servers[0] = "x:1"
	if Default().Engine.Options["sync"] != "batch" || Default().ZooKeeper.Servers[0] != "127.0.0.1:2181" {
		t.Fatal("Default shares its maps or slices")
	}
}

func TestPrecedence(t *testing.T) {
	path := writeFile(t, `
cluster: from-file
data: /file/data
partitions: 3
router: { http: 127.0.0.1:9000 }
engine: { options: { index: btree } }
`)
	env := []string{
		"PLUGDB_CLUSTER=from-env",
		"PLUGDB_PARTITIONS=4",
		"PLUGDB_ENGINE_OPTIONS_SYNC=always",
		"HOME=/root",
	}
	flags := map[string]string{"partitions": "5", "engine.options.index": "hash"}

	c := mustLoad(t, Source{File: path, Env: env, Flags: flags})
	want := Default()
	want.Cluster = "from-env"                                                  // env over file
	want.Data = "/file/data"                                                   // file over defaults
	want.Partitions = 5                                                        // flags over env over file
	want.Router.HTTP = "127.0.0.1:9000"                                        // file, one key of a section
	want.Engine.Options = map[string]string{"sync": "always", "index": "hash"} // options merge by name
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", c, want)
	}

	// Each layer alone.
	if c := mustLoad(t, Source{File: path}); c.Partitions != 3 || c.Cluster != "from-file" || c.Router.GRPC != "127.0.0.1:7070" {
		t.Errorf("file only: %+v", c)
	}
	if c := mustLoad(t, Source{Env: env}); c.Partitions != 4 || c.Data != "./plugdb-data" {
		t.Errorf("env only: %+v", c)
	}
	if c := mustLoad(t, Source{Flags: flags}); c.Partitions != 5 || c.Cluster != "dev" {
		t.Errorf("flags only: %+v", c)
	}
}

func TestOptionsTyping(t *testing.T) {
	path := writeFile(t, `
engine:
  options:
    segment_size: 64MiB
    compact_threshold: 0.5
    verbose: true
    max_key_size: 1024
    ratio: 1.0
    hex: 0x10
    quoted: "0x10"
    big: 12345678901234567890
    empty: ""
`)
	c := mustLoad(t, Source{File: path})
	want := map[string]string{
		"sync":              "batch", // from the defaults
		"segment_size":      "64MiB",
		"compact_threshold": "0.5",
		"verbose":           "true",
		"max_key_size":      "1024",
		"ratio":             "1",
		"hex":               "16",
		"quoted":            "0x10",
		"big":               "12345678901234567890",
		"empty":             "",
	}
	if !reflect.DeepEqual(c.Engine.Options, want) {
		t.Fatalf("options = %#v, want %#v", c.Engine.Options, want)
	}
}

func TestOptionsMergeAndPluginSwap(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   []string
		flags map[string]string
		want  Plugin
	}{
		{"overlay keeps default options", "engine: {options: {index: btree}}", nil, nil,
			Plugin{Plugin: "rowfile", Mode: "process", Options: map[string]string{"sync": "batch", "index": "btree"}}},
		{"same plugin keeps options", "engine: {plugin: rowfile}", nil, nil,
			Plugin{Plugin: "rowfile", Mode: "process", Options: map[string]string{"sync": "batch"}}},
		{"file swap drops default options", "engine: {plugin: memory}", nil, nil,
			Plugin{Plugin: "memory", Mode: "process"}},
		{"file swap with own options", "engine: {plugin: memory, options: {max_key_size: 10}}", nil, nil,
			Plugin{Plugin: "memory", Mode: "process", Options: map[string]string{"max_key_size": "10"}}},
		{"env swap drops file options and sha256",
			"engine: {plugin: ./bin/eng, sha256: " + strings.Repeat("ab", 32) + ", options: {a: 1}}",
			[]string{"PLUGDB_ENGINE_PLUGIN=memory", "PLUGDB_ENGINE_OPTIONS_MAX_VALUE_SIZE=99"}, nil,
			Plugin{Plugin: "memory", Mode: "process", Options: map[string]string{"max_value_size": "99"}}},
		{"env options add to file swap", "engine: {plugin: memory, mode: inprocess}",
			[]string{"PLUGDB_ENGINE_OPTIONS_MAX_KEY_SIZE=10"}, nil,
			Plugin{Plugin: "memory", Mode: "inprocess", Options: map[string]string{"max_key_size": "10"}}},
		{"flag swap", "", []string{"PLUGDB_ENGINE_OPTIONS_INDEX=btree"}, map[string]string{"engine.plugin": "memory"},
			Plugin{Plugin: "memory", Mode: "process"}},
		{"null option removes it", "engine: {options: {sync: ~, index: hash}}", nil, nil,
			Plugin{Plugin: "rowfile", Mode: "process", Options: map[string]string{"index": "hash"}}},
		{"all options removed", "engine:\n  options:\n    sync:\n", nil, nil,
			Plugin{Plugin: "rowfile", Mode: "process"}},
		{"empty options mapping changes nothing", "engine: {options: {}}", nil, nil,
			Plugin{Plugin: "rowfile", Mode: "process", Options: map[string]string{"sync": "batch"}}},
		{"null section changes nothing", "engine:\n", nil, nil,
			Plugin{Plugin: "rowfile", Mode: "process", Options: map[string]string{"sync": "batch"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Source{Env: tt.env, Flags: tt.flags}
			if tt.file != "" {
				src.File = writeFile(t, tt.file)
			}
			c := mustLoad(t, src)
			if !reflect.DeepEqual(c.Engine, tt.want) {
				t.Fatalf("engine = %#v, want %#v", c.Engine, tt.want)
			}
		})
	}
}

func TestEnvMapping(t *testing.T) {
	sha := strings.Repeat("0f", 32)
	tests := []struct {
		env  string
		get  func(Config) any
		want any
	}{
		{"PLUGDB_CLUSTER=prod-1", func(c Config) any { return c.Cluster }, "prod-1"},
		{"PLUGDB_DATA=/var/lib/plugdb", func(c Config) any { return c.Data }, "/var/lib/plugdb"},
		{"PLUGDB_PARTITIONS=16", func(c Config) any { return c.Partitions }, 16},
		{"PLUGDB_ZOOKEEPER_SERVERS=10.0.0.1:2181, 10.0.0.2:2181,", func(c Config) any { return c.ZooKeeper.Servers }, []string{"10.0.0.1:2181", "10.0.0.2:2181"}},
		{"PLUGDB_ZOOKEEPER_SESSION_TIMEOUT=1500ms", func(c Config) any { return c.ZooKeeper.SessionTimeout }, 1500 * time.Millisecond},
		{"PLUGDB_ZOOKEEPER_ROOT=/x/y", func(c Config) any { return c.ZooKeeper.Root }, "/x/y"},
		{"PLUGDB_ENGINE_PLUGIN=memory", func(c Config) any { return c.Engine.Plugin }, "memory"},
		{"PLUGDB_ENGINE_MODE=inprocess", func(c Config) any { return c.Engine.Mode }, "inprocess"},
		{"PLUGDB_ENGINE_SHA256=" + sha, func(c Config) any { return c.Engine.SHA256 }, sha},
		{"PLUGDB_ENGINE_OPTIONS_SYNC=none", func(c Config) any { return c.Engine.Options["sync"] }, "none"},
		{"PLUGDB_ENGINE_OPTIONS_MAX_KEY_SIZE=64", func(c Config) any { return c.Engine.Options["max_key_size"] }, "64"},
		{"PLUGDB_ENGINE_OPTIONS_Compact_Interval=0", func(c Config) any { return c.Engine.Options["compact_interval"] }, "0"},
		{"PLUGDB_PARTITIONER_PLUGIN=./bin/range", func(c Config) any { return c.Partitioner.Plugin }, "./bin/range"},
		{"PLUGDB_PARTITIONER_MODE=process", func(c Config) any { return c.Partitioner.Mode }, "process"},
		{"PLUGDB_PARTITIONER_OPTIONS_SEED=7", func(c Config) any { return c.Partitioner.Options }, map[string]string{"seed": "7"}},
		{"PLUGDB_REPLICATOR_PLUGIN=statement", func(c Config) any { return c.Replicator.Plugin }, "statement"},
		{"PLUGDB_REPLICATOR_OPTIONS_ACK=semi-sync", func(c Config) any { return c.Replicator.Options["ack"] }, "semi-sync"},
		{"PLUGDB_REPLICATOR_SHA256=", func(c Config) any { return c.Replicator.SHA256 }, ""},
		{"PLUGDB_ROUTER_GRPC=0.0.0.0:7071", func(c Config) any { return c.Router.GRPC }, "0.0.0.0:7071"},
		{"PLUGDB_ROUTER_HTTP=:8081", func(c Config) any { return c.Router.HTTP }, ":8081"},
		{"PLUGDB_NODES_REPLICAS=2", func(c Config) any { return c.Nodes.Replicas }, 2},
		{"PLUGDB_NODES_BASE_PORT= 9100", func(c Config) any { return c.Nodes.BasePort }, 9100},
		// Not configuration: ignored.
		{"PLUGDB_PLUGIN=d3b6a8f0-plugdb-plugin", func(c Config) any { return reflect.DeepEqual(c, Default()) }, true},
		{"PLUGDB_BENCH_KEYS=100", func(c Config) any { return reflect.DeepEqual(c, Default()) }, true},
		{"plugdb_engine_plugin=memory", func(c Config) any { return c.Engine.Plugin }, "rowfile"},
		{"XPLUGDB_ENGINE_PLUGIN=memory", func(c Config) any { return c.Engine.Plugin }, "rowfile"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			c := mustLoad(t, Source{Env: []string{tt.env, "HOME=/root"}})
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("%s: got %#v, want %#v", tt.env, got, tt.want)
			}
		})
	}

	// A repeated variable: the first one counts, as for os.Getenv.
	c := mustLoad(t, Source{Env: []string{"PLUGDB_PARTITIONS=7", "PLUGDB_PARTITIONS=8"}})
	if c.Partitions != 7 {
		t.Errorf("repeated variable: partitions = %d, want 7", c.Partitions)
	}
}

// TestEnvNamesUnambiguous: every key has its own variable, it maps back to the
// key, and no key's variable could be read as an option variable.
func TestEnvNamesUnambiguous(t *testing.T) {
	seen := map[string]string{}
	for _, key := range Keys() {
		name := EnvName(key)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s both map to %s", other, key, name)
		}
		seen[name] = key
		if got, err := envKey(name); err != nil || got != key {
			t.Errorf("envKey(%s) = %q, %v; want %s", name, got, err, key)
		}
		for _, b := range blocks {
			if strings.HasPrefix(name, optionEnvPrefix(b)) {
				t.Errorf("%s (%s) starts like an option variable", name, key)
			}
		}
	}
	if got, _ := envKey("PLUGDB_ZOOKEEPER_SESSION_TIMEOUT"); got != "zookeeper.session_timeout" {
		t.Errorf("PLUGDB_ZOOKEEPER_SESSION_TIMEOUT → %q", got)
	}
	if got, _ := envKey("PLUGDB_ENGINE_OPTIONS_SEGMENT_SIZE"); got != "engine.options.segment_size" {
		t.Errorf("PLUGDB_ENGINE_OPTIONS_SEGMENT_SIZE → %q", got)
	}
	if got := EnvName("engine.options.max_key_size"); got != "PLUGDB_ENGINE_OPTIONS_MAX_KEY_SIZE" {
		t.Errorf("EnvName(engine.options.max_key_size) = %s", got)
	}
	wantKeys := []string{"cluster", "data", "partitions", "zookeeper.servers", "zookeeper.session_timeout", "zookeeper.root", "zookeeper.auth_file",
		"engine.plugin", "engine.mode", "engine.sha256", "partitioner.plugin", "partitioner.mode", "partitioner.sha256",
		"replicator.plugin", "replicator.mode", "replicator.sha256", "router.grpc", "router.http", "nodes.replicas", "nodes.base_port", "metrics.addr", "metrics.base_port", "tls.ca", "tls.cert", "tls.key"}
	if !slices.Equal(Keys(), wantKeys) {
		t.Errorf("Keys() = %v", Keys())
	}
}

func TestLoadErrors(t *testing.T) {
	const topKeys = "cluster, data, partitions, zookeeper, engine, partitioner, replicator, router, nodes, metrics, tls, keyspaces"
	tests := []struct {
		name  string
		file  string // FILE in want is the file's path
		env   []string
		flags map[string]string
		want  string
	}{
		// Unknown keys in the file.
		{name: "unknown key in a section", file: "engine: {plugn: memory}",
			want: `config file FILE: unknown key "engine.plugn" (allowed under engine: plugin, mode, sha256, options)`},
		{name: "unknown top-level key", file: "clustr: dev",
			want: `config file FILE: unknown key "clustr" (allowed at top level: ` + topKeys + `)`},
		{name: "unknown zookeeper key", file: "zookeeper: {timeout: 2s}",
			want: `config file FILE: unknown key "zookeeper.timeout" (allowed under zookeeper: servers, session_timeout, root, auth_file)`},
		{name: "unknown router key", file: "router:\n  rest: 127.0.0.1:8080\n",
			want: `config file FILE: unknown key "router.rest" (allowed under router: grpc, http)`},
		{name: "unknown replicator key", file: "replicator: {plugin: none, ack: sync}",
			want: `config file FILE: unknown key "replicator.ack" (allowed under replicator: plugin, mode, sha256, options)`},
		{name: "dotted key", file: "engine.plugin: memory",
			want: `config file FILE: unknown key "engine.plugin" (allowed at top level: ` + topKeys + `; write nested keys as YAML mappings)`},
		{name: "key under a leaf", file: "cluster: {name: x}",
			want: `config file FILE: cluster (a mapping): not a single value (allowed: lower-case letters, digits and '-', e.g. dev)`},
		{name: "section not a mapping", file: "engine: rowfile",
			want: `config file FILE: engine "rowfile": not a mapping (allowed: a mapping with keys plugin, mode, sha256, options)`},
		{name: "options not a mapping", file: "engine: {options: sync}",
			want: `config file FILE: engine.options "sync": not a mapping (allowed: a mapping of option names to values, e.g. {sync: batch})`},
		{name: "option value a list", file: "engine: {options: {sync: [a, b]}}",
			want: `config file FILE: engine.options.sync ["a", "b"]: not a single value (allowed: a scalar: string, number or bool)`},
		{name: "option value a mapping", file: "engine: {options: {sync: {a: b}}}",
			want: `config file FILE: engine.options.sync (a mapping): not a single value (allowed: a scalar: string, number or bool)`},
		{name: "dotted option name", file: `engine: {options: {"a.b": 1}}`,
			want: `config file FILE: engine.options "a.b": option name contains '.' (allowed: an option name without '.', e.g. sync)`},

		// Bad values in the file.
		{name: "partitions zero", file: "partitions: 0",
			want: `config file FILE: partitions 0: out of range (allowed: 1..1024)`},
		{name: "partitions too many", file: "partitions: 1025",
			want: `config file FILE: partitions 1025: out of range (allowed: 1..1024)`},
		{name: "partitions not a number", file: "partitions: two",
			want: `config file FILE: partitions "two": not an integer (allowed: 1..1024)`},
		{name: "partitions fractional", file: "partitions: 2.5",
			want: `config file FILE: partitions 2.5: not an integer (allowed: 1..1024)`},
		{name: "partitions empty", file: "partitions:",
			want: `config file FILE: partitions (no value): no value (allowed: 1..1024)`},
		{name: "duration without unit", file: "zookeeper: {session_timeout: 2}",
			want: `config file FILE: zookeeper.session_timeout 2: not a duration (a number needs a unit) (allowed: a positive duration such as 2s or 500ms)`},
		{name: "duration unparsable", file: "zookeeper: {session_timeout: 2 seconds}",
			want: `config file FILE: zookeeper.session_timeout "2 seconds": not a duration (allowed: a positive duration such as 2s or 500ms)`},
		{name: "duration negative", file: "zookeeper: {session_timeout: -1s}",
			want: `config file FILE: zookeeper.session_timeout "-1s": not positive (allowed: a positive duration such as 2s or 500ms)`},
		{name: "servers empty", file: "zookeeper: {servers: []}",
			want: `config file FILE: zookeeper.servers []: no servers (allowed: one or more host:port, e.g. 127.0.0.1:2181 (a YAML list or comma-separated))`},
		{name: "server without port", file: "zookeeper: {servers: [zk1]}",
			want: `config file FILE: zookeeper.servers ["zk1"]: server "zk1": not host:port (allowed: one or more host:port`},
		{name: "server bad port", file: "zookeeper: {servers: ['zk1:99999']}",
			want: `config file FILE: zookeeper.servers ["zk1:99999"]: server "zk1:99999": bad port (allowed: one or more host:port`},
		{name: "root relative", file: "zookeeper: {root: plugdb}",
			want: `config file FILE: zookeeper.root "plugdb": not an absolute path (allowed: an absolute ZooKeeper path such as /plugdb)`},
		{name: "root trailing slash", file: "zookeeper: {root: /plugdb/}",
			want: `config file FILE: zookeeper.root "/plugdb/": empty path element (allowed: an absolute ZooKeeper path such as /plugdb)`},
		{name: "grpc no port", file: "router: {grpc: localhost}",
			want: `config file FILE: router.grpc "localhost": not host:port (allowed: host:port with a port 1..65535, e.g. 127.0.0.1:7070)`},
		{name: "grpc port zero", file: "router: {grpc: '127.0.0.1:0'}",
			want: `config file FILE: router.grpc "127.0.0.1:0": bad port (allowed: host:port with a port 1..65535, e.g. 127.0.0.1:7070)`},
		{name: "http port too big", file: "router: {http: '127.0.0.1:65536'}",
			want: `config file FILE: router.http "127.0.0.1:65536": bad port (allowed: host:port with a port 1..65535, e.g. 127.0.0.1:7070)`},
		{name: "http port by name", file: "router: {http: 'localhost:http'}",
			want: `config file FILE: router.http "localhost:http": bad port (allowed: host:port with a port 1..65535, e.g. 127.0.0.1:7070)`},
		{name: "unknown nodes key", file: "nodes: {ports: 7101}",
			want: `config file FILE: unknown key "nodes.ports" (allowed under nodes: replicas, base_port)`},
		{name: "replicas zero", file: "nodes: {replicas: 0}",
			want: `config file FILE: nodes.replicas 0: out of range (allowed: 1..9)`},
		{name: "replicas ten", file: "nodes: {replicas: 10}",
			want: `config file FILE: nodes.replicas 10: out of range (allowed: 1..9)`},
		{name: "replicas not a number", file: "nodes: {replicas: two}",
			want: `config file FILE: nodes.replicas "two": not an integer (allowed: 1..9)`},
		{name: "base_port low", file: "nodes: {base_port: 80}",
			want: `config file FILE: nodes.base_port 80: out of range (allowed: 1024..65535, with a port for every node up to 65535)`},
		{name: "base_port high", file: "nodes: {base_port: 70000}",
			want: `config file FILE: nodes.base_port 70000: out of range (allowed: 1024..65535`},
		{name: "base_port empty", file: "nodes: {base_port: }",
			want: `config file FILE: nodes.base_port (no value): no value (allowed: 1024..65535`},
		{name: "mode", file: "engine: {mode: proc}",
			want: `config file FILE: engine.mode "proc": not a mode (allowed: process, inprocess)`},
		{name: "replicator mode", file: "replicator: {mode: thread}",
			want: `config file FILE: replicator.mode "thread": not a mode (allowed: process, inprocess)`},
		{name: "cluster upper case", file: "cluster: Dev",
			want: `config file FILE: cluster "Dev": character 'D' not allowed (allowed: lower-case letters, digits and '-', e.g. dev)`},
		{name: "cluster empty", file: `cluster: ""`,
			want: `config file FILE: cluster "": empty (allowed: lower-case letters, digits and '-', e.g. dev)`},
		{name: "data empty", file: "data:",
			want: `config file FILE: data (no value): empty (allowed: a folder path, e.g. ./plugdb-data)`},
		{name: "plugin empty", file: "partitioner: {plugin: ''}",
			want: `config file FILE: partitioner.plugin "": empty (allowed: a bundled plugin's name or a path to a plugin binary)`},
		{name: "sha256", file: "engine: {sha256: abc}",
			want: `config file FILE: engine.sha256 "abc": not a SHA-256 (allowed: empty, or 64 hex digits (the plugin binary's SHA-256))`},

		// The file itself.
		{name: "missing file", file: "-",
			want: `config file FILE: open FILE: no such file or directory`},
		{name: "yaml syntax", file: "engine: {plugin: memory\n",
			want: `config file FILE: yaml: line `},
		{name: "not a mapping", file: "- a\n- b\n",
			want: `config file FILE: yaml: unmarshal errors: line 1: cannot unmarshal !!seq into map[string]interface {}`},
		{name: "duplicate key", file: "cluster: a\ncluster: b\n",
			want: `config file FILE: yaml: unmarshal errors: line 2: mapping key "cluster" already defined at line 1`},

		// Environment.
		{name: "env bad value", env: []string{"PLUGDB_PARTITIONS=0"},
			want: `environment variable PLUGDB_PARTITIONS: partitions "0": out of range (allowed: 1..1024)`},
		{name: "env bad duration", env: []string{"PLUGDB_ZOOKEEPER_SESSION_TIMEOUT=soon"},
			want: `environment variable PLUGDB_ZOOKEEPER_SESSION_TIMEOUT: zookeeper.session_timeout "soon": not a duration (allowed: a positive duration such as 2s or 500ms)`},
		{name: "env bad server", env: []string{"PLUGDB_ZOOKEEPER_SERVERS=a:1,b"},
			want: `environment variable PLUGDB_ZOOKEEPER_SERVERS: zookeeper.servers "a:1,b": server "b": not host:port`},
		{name: "env bad replicas", env: []string{"PLUGDB_NODES_REPLICAS=x"},
			want: `environment variable PLUGDB_NODES_REPLICAS: nodes.replicas "x": not an integer (allowed: 1..9)`},
		{name: "env bad base port", env: []string{"PLUGDB_NODES_BASE_PORT=1"},
			want: `environment variable PLUGDB_NODES_BASE_PORT: nodes.base_port "1": out of range (allowed: 1024..65535`},
		{name: "env bad mode", env: []string{"PLUGDB_ENGINE_MODE=x"},
			want: `environment variable PLUGDB_ENGINE_MODE: engine.mode "x": not a mode (allowed: process, inprocess)`},
		{name: "env unknown", env: []string{"PLUGDB_ENGINE_PLUGN=memory"},
			want: `environment variable PLUGDB_ENGINE_PLUGN: not a plugdb setting (allowed: PLUGDB_CLUSTER, PLUGDB_DATA, PLUGDB_PARTITIONS, PLUGDB_ZOOKEEPER_SERVERS, PLUGDB_ZOOKEEPER_SESSION_TIMEOUT, PLUGDB_ZOOKEEPER_ROOT, PLUGDB_ZOOKEEPER_AUTH_`}, // cut before FILE, which the test replaces with the config file,
		{name: "env unknown lists ignored", env: []string{"PLUGDB_ROUTER=x"},
			want: `; ignored: PLUGDB_PLUGIN, PLUGDB_BENCH_KEYS, PLUGDB_TEST_ROLE)`},
		{name: "env unknown several", env: []string{"PLUGDB_X=1", "PLUGDB_CLUSTER=ok", "PLUGDB_A=2"},
			want: `environment variables PLUGDB_A, PLUGDB_X: not a plugdb setting (allowed: `},
		{name: "env lower case", env: []string{"PLUGDB_engine_plugin=memory"},
			want: `environment variable PLUGDB_engine_plugin: not a plugdb setting`},
		{name: "env section", env: []string{"PLUGDB_ENGINE=memory"},
			want: `environment variable PLUGDB_ENGINE: not a plugdb setting`},
		{name: "env options without name", env: []string{"PLUGDB_ENGINE_OPTIONS_=1"},
			want: `environment variable PLUGDB_ENGINE_OPTIONS_: bad option name "" (allowed: PLUGDB_ENGINE_OPTIONS_<NAME> with NAME made of letters, digits and '_', e.g. PLUGDB_ENGINE_OPTIONS_SYNC)`},
		{name: "env options bad name", env: []string{"PLUGDB_REPLICATOR_OPTIONS_A.B=1"},
			want: `environment variable PLUGDB_REPLICATOR_OPTIONS_A.B: bad option name "A.B"`},
		{name: "env options twice", env: []string{"PLUGDB_ENGINE_OPTIONS_SYNC=none", "PLUGDB_ENGINE_OPTIONS_sync=always"},
			want: `environment variables PLUGDB_ENGINE_OPTIONS_SYNC and PLUGDB_ENGINE_OPTIONS_sync both set engine.options.sync: set one of them`},

		// Flags.
		{name: "flag unknown", flags: map[string]string{"engine.plugn": "x"},
			want: `flags: unknown key "engine.plugn" (allowed under engine: plugin, mode, sha256, options)`},
		{name: "flag unknown top", flags: map[string]string{"datadir": "x"},
			want: `flags: unknown key "datadir" (allowed at top level: ` + topKeys + `)`},
		{name: "flag bad value", flags: map[string]string{"partitions": "x"},
			want: `flags: partitions "x": not an integer (allowed: 1..1024)`},
		{name: "flag empty data", flags: map[string]string{"data": ""},
			want: `flags: data "": empty (allowed: a folder path, e.g. ./plugdb-data)`},
		{name: "flag bad replicas", flags: map[string]string{"nodes.replicas": "-1"},
			want: `flags: nodes.replicas "-1": out of range (allowed: 1..9)`},
		{name: "flag dotted option", flags: map[string]string{"engine.options.a.b": "1"},
			want: `flags: engine.options.a.b: option name contains '.' (allowed: an option name without '.', e.g. sync)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Source{Env: tt.env, Flags: tt.flags}
			want := tt.want
			switch tt.file {
			case "":
			case "-":
				src.File = filepath.Join(t.TempDir(), "missing.yaml")
			default:
				src.File = writeFile(t, tt.file)
			}
			want = strings.ReplaceAll(want, "FILE", src.File)
			_, err := Load(src)
			if err == nil {
				t.Fatalf("Load succeeded, want error %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error\n%s\ndoes not contain\n%s", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// TestLoadIgnoresUnsetLayers: a file that sets nothing and empty flags change nothing.
func TestLoadEmptyLayers(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "{}\n"} {
		c := mustLoad(t, Source{File: writeFile(t, text), Flags: map[string]string{}})
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("file %q: %+v", text, c)
		}
	}
}

// TestLoadWritesNothing: loading does not create the data folder or anything else.
func TestLoadWritesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(path, []byte("data: "+data+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(Source{File: path}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("Load wrote to %s: %v", dir, entries)
	}
}

func TestValidate(t *testing.T) {
	known := Known{Engines: []string{"memory", "rowfile"}, Partitioners: []string{"hash"}, Replicators: []string{"none", "statement"}}
	dir := t.TempDir()
	exe := filepath.Join(dir, "myengine")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "notexec")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		change func(*Config)
		known  *Known
		want   string // "" for valid
	}{
		{"default", func(*Config) {}, nil, ""},
		{"bundled memory inprocess", func(c *Config) { c.Engine = Plugin{Plugin: "memory", Mode: "inprocess"} }, nil, ""},
		{"engine binary", func(c *Config) { c.Engine = Plugin{Plugin: exe, Mode: "process"} }, nil, ""},
		{"unknown engine", func(c *Config) { c.Engine.Plugin = "x" }, nil,
			`engine.plugin "x": no such bundled engine (bundled: memory, rowfile); a plugin binary is given by path, e.g. ./bin/myengine`},
		{"unknown partitioner", func(c *Config) { c.Partitioner.Plugin = "range" }, nil,
			`partitioner.plugin "range": no such bundled partitioner (bundled: hash); a plugin binary is given by path`},
		{"unknown replicator", func(c *Config) { c.Replicator.Plugin = "raft" }, nil,
			`replicator.plugin "raft": no such bundled replicator (bundled: none, statement); a plugin binary is given by path`},
		{"nothing bundled", func(c *Config) {}, &Known{Engines: []string{"rowfile"}, Partitioners: []string{"hash"}},
			`replicator.plugin "none": no such bundled replicator (no replicator is bundled); a plugin binary is given by path`},
		{"missing binary", func(c *Config) { c.Engine.Plugin = "./nope/engine" }, nil,
			`engine.plugin "./nope/engine": plugin binary not found (allowed: a bundled engine (bundled: memory, rowfile) or the path of an existing plugin binary)`},
		{"not executable", func(c *Config) { c.Engine.Plugin = plain }, nil,
			`engine.plugin "` + plain + `": not an executable file (allowed: the path of a plugin binary)`},
		{"directory", func(c *Config) { c.Engine.Plugin = dir + "/" }, nil,
			`engine.plugin "` + dir + `/": not an executable file`},
		{"binary inprocess", func(c *Config) { c.Engine = Plugin{Plugin: exe, Mode: "inprocess"} }, nil,
			`engine.mode inprocess: only bundled engines (memory, rowfile) link in process; ` + exe + ` runs as a process (allowed: process)`},
		{"empty plugin", func(c *Config) { c.Partitioner.Plugin = "" }, nil,
			`partitioner.plugin is empty: name a bundled partitioner (bundled: hash) or a plugin binary path`},
		{"bad mode", func(c *Config) { c.Engine.Mode = "fork" }, nil,
			`engine.mode "fork": not a mode (allowed: process, inprocess)`},
		{"bad partitions", func(c *Config) { c.Partitions = 0 }, nil,
			`partitions 0: out of range (allowed: 1..1024)`},
		{"bad cluster", func(c *Config) { c.Cluster = "my_cluster" }, nil,
			`cluster "my_cluster": character '_' not allowed (allowed: lower-case letters, digits and '-', e.g. dev)`},
		{"bad timeout", func(c *Config) { c.ZooKeeper.SessionTimeout = 0 }, nil,
			`zookeeper.session_timeout "0s": not positive (allowed: a positive duration such as 2s or 500ms)`},
		{"no servers", func(c *Config) { c.ZooKeeper.Servers = nil }, nil,
			`zookeeper.servers []: no servers`},
		{"bad grpc", func(c *Config) { c.Router.GRPC = "7070" }, nil,
			`router.grpc "7070": not host:port (allowed: host:port with a port 1..65535, e.g. 127.0.0.1:7070)`},
		{"same addresses", func(c *Config) { c.Router.HTTP = c.Router.GRPC }, nil,
			`router.grpc and router.http are both "127.0.0.1:7070" (allowed: two different addresses)`},
		{"bad sha256", func(c *Config) { c.Engine.SHA256 = "xyz" }, nil,
			`engine.sha256 "xyz": not a SHA-256`},
		{"bad option name", func(c *Config) { c.Engine.Options = map[string]string{"": "x"} }, nil,
			`engine.options "": empty option name`},
		{"bad replicas", func(c *Config) { c.Nodes.Replicas = 0 }, nil,
			`nodes.replicas 0: out of range (allowed: 1..9)`},
		{"bad base port", func(c *Config) { c.Nodes.BasePort = 100 }, nil,
			`nodes.base_port 100: out of range (allowed: 1024..65535, with a port for every node up to 65535)`},
		{"last node port fits", func(c *Config) { c.Partitions, c.Nodes.Replicas, c.Nodes.BasePort = 2, 2, 65532 }, nil, ""},
		{"no room for the nodes", func(c *Config) { c.Partitions, c.Nodes.Replicas, c.Nodes.BasePort = 2, 2, 65533 }, nil,
			`nodes.base_port 65533: 2 partitions × 2 replicas need ports 65533..65536 (allowed: a base_port of at most 65532 for 4 nodes)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			k := known
			if tt.known != nil {
				k = *tt.known
			}
			err := c.Validate(k)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error\n%s\ndoes not contain\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestBlock(t *testing.T) {
	p := Plugin{Plugin: "rowfile", Mode: "process", SHA256: "ab", Options: map[string]string{"sync": "batch"}}
	b := p.Block()
	want := loader.Block{Plugin: "rowfile", Mode: "process", SHA256: "ab", Options: map[string]string{"sync": "batch"}}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("Block() = %+v", b)
	}
	b.Options["sync"] = "none"
	if p.Options["sync"] != "batch" {
		t.Fatal("Block shares the options map")
	}
	if (Plugin{Plugin: "hash"}).Block().Options != nil {
		t.Fatal("Block of no options is not nil")
	}
}

func TestNodeAddr(t *testing.T) {
	c := Default()
	c.Partitions, c.Nodes.Replicas, c.Nodes.BasePort = 2, 2, 7101
	got := []string{c.NodeAddr(0, 0), c.NodeAddr(0, 1), c.NodeAddr(1, 0), c.NodeAddr(1, 1)}
	want := []string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103", "127.0.0.1:7104"}
	if !slices.Equal(got, want) {
		t.Fatalf("NodeAddr = %v, want %v", got, want)
	}
	if c := mustLoad(t, Source{File: writeFile(t, "nodes: {replicas: 3}")}); c.Nodes != (Nodes{Replicas: 3, BasePort: 7101}) {
		t.Fatalf("nodes overlay: %+v", c.Nodes)
	}
}

// TestClusterYAML: configs/cluster.yaml loads and validates, with the layout
// `plugdb cluster up` documents.
func TestClusterYAML(t *testing.T) {
	c := mustLoad(t, Source{File: "../../configs/cluster.yaml"})
	if err := c.Validate(Known{Engines: []string{"memory", "rowfile"}, Partitioners: []string{"hash"}, Replicators: []string{"none", "statement"}}); err != nil {
		t.Fatalf("configs/cluster.yaml does not validate: %v", err)
	}
	if c.Cluster != "local" || c.Partitions != 2 || c.Nodes != (Nodes{Replicas: 3, BasePort: 7101}) ||
		c.ZooKeeper.SessionTimeout != 2*time.Second || !slices.Equal(c.ZooKeeper.Servers, []string{"127.0.0.1:2181"}) ||
		c.Router != (Router{GRPC: "127.0.0.1:7070", HTTP: "127.0.0.1:8080"}) ||
		c.Replicator.Plugin != "statement" || c.Replicator.Options["ack"] != "semi-sync" {
		t.Fatalf("configs/cluster.yaml = %+v", c)
	}
}

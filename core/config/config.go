package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/plugdb/plugdb/core/loader"
)

// Config is plugdb's configuration.
type Config struct {
	// Cluster names the cluster: lower-case letters, digits and '-'.
	Cluster string `koanf:"cluster" json:"cluster"`
	// Data is the data folder; partition p's engine gets Data/p<p>.
	Data string `koanf:"data" json:"data"`
	// Partitions is the number of partitions, 1..1024.
	Partitions  int       `koanf:"partitions" json:"partitions"`
	ZooKeeper   ZooKeeper `koanf:"zookeeper" json:"zookeeper"`
	Engine      Plugin    `koanf:"engine" json:"engine"`
	Partitioner Plugin    `koanf:"partitioner" json:"partitioner"`
	Replicator  Plugin    `koanf:"replicator" json:"replicator"`
	Router      Router    `koanf:"router" json:"router"`
	Nodes       Nodes     `koanf:"nodes" json:"nodes"`
	Metrics     Metrics   `koanf:"metrics" json:"metrics"`
	TLS         TLS       `koanf:"tls" json:"tls,omitzero"`
	// Keyspaces are the keyspaces besides the default one (the top-level
	// partitions, engine, partitioner and replicator), by name; see
	// docs/keyspaces.md.
	Keyspaces map[string]Keyspace `koanf:"keyspaces" json:"keyspaces,omitempty"`
	// Keyspace is the keyspace this Config describes, as ForKeyspace made
	// it: "" for the default one. It is not a config key.
	Keyspace string `koanf:"-" json:"-"`
}

// DefaultKeyspace names the keyspace of the top-level settings: requests
// that name no keyspace address it.
const DefaultKeyspace = "default"

// Keyspace is one keyspace's own settings; a field left unset (zero) is the
// top-level one.
type Keyspace struct {
	// Partitions is the keyspace's number of partitions, 1..1024.
	Partitions  int    `koanf:"partitions" json:"partitions,omitempty"`
	Engine      Plugin `koanf:"engine" json:"engine,omitzero"`
	Partitioner Plugin `koanf:"partitioner" json:"partitioner,omitzero"`
	Replicator  Plugin `koanf:"replicator" json:"replicator,omitzero"`
}

// KeyspaceNames returns the keyspaces' names: DefaultKeyspace first, then the
// others by name.
func (c Config) KeyspaceNames() []string {
	names := slices.Sorted(maps.Keys(c.Keyspaces))
	return append([]string{DefaultKeyspace}, names...)
}

// ForKeyspace returns the config of keyspace name as a cluster of its own:
// its partitions and plugins in the top-level fields (unset ones inherited),
// its data under Data/keyspaces/NAME, and its nodes' ports after those of
// the keyspaces before it (KeyspaceNames order), so that NodeAddr gives each
// node of every keyspace its own port. "" and DefaultKeyspace return c.
func (c Config) ForKeyspace(name string) (Config, error) {
	if name == "" || name == DefaultKeyspace {
		c.Keyspace = ""
		return c, nil
	}
	ks, ok := c.Keyspaces[name]
	if !ok {
		return Config{}, fmt.Errorf("keyspace %q: allowed values are %s", name, strings.Join(c.KeyspaceNames(), ", "))
	}
	offset := 0
	for _, other := range c.KeyspaceNames() {
		if other == name {
			break
		}
		k, _ := c.ForKeyspace(other)
		offset += k.Partitions * c.Nodes.Replicas
	}
	out := c
	out.Keyspace = name
	out.Data = filepath.Join(c.Data, "keyspaces", name)
	out.Nodes.BasePort += offset
	if out.Metrics.BasePort != 0 {
		out.Metrics.BasePort += offset
	}
	if ks.Partitions != 0 {
		out.Partitions = ks.Partitions
	}
	for _, b := range []struct {
		dst *Plugin
		src Plugin
	}{{&out.Engine, ks.Engine}, {&out.Partitioner, ks.Partitioner}, {&out.Replicator, ks.Replicator}} {
		if b.src.Plugin != "" {
			*b.dst = b.src
		}
	}
	return out, nil
}

// ZooKeeper is the coordination service.
type ZooKeeper struct {
	// Servers are the ensemble's host:port addresses.
	Servers []string `koanf:"servers" json:"servers"`
	// SessionTimeout is the ZooKeeper session timeout ("2s").
	SessionTimeout time.Duration `koanf:"session_timeout" json:"session_timeout"`
	// Root is plugdb's root znode ("/plugdb").
	Root string `koanf:"root" json:"root"`
	// AuthFile names a file holding the digest credentials (user:password)
	// that protect plugdb's znodes; empty: none, the znodes are open.
	AuthFile string `koanf:"auth_file" json:"auth_file,omitempty"`
}

// Plugin is a plugin block: engine, partitioner or replicator.
type Plugin struct {
	// Plugin is a bundled plugin's name or a path (containing '/') to a binary.
	Plugin string `koanf:"plugin" json:"plugin"`
	// Mode is "process", "inprocess" (bundled plugins only) or empty (process).
	Mode string `koanf:"mode" json:"mode,omitempty"`
	// SHA256 pins a plugin binary by its SHA-256 in hex; empty: not pinned.
	SHA256 string `koanf:"sha256" json:"sha256,omitempty"`
	// Options are the plugin's own options.
	Options map[string]string `koanf:"options" json:"options,omitempty"`
}

// Block returns the plugin block as the loader takes it.
func (p Plugin) Block() loader.Block {
	return loader.Block{Plugin: p.Plugin, Mode: p.Mode, SHA256: p.SHA256, Options: maps.Clone(p.Options)}
}

// Router is where the router listens.
type Router struct {
	// GRPC is the gRPC listen address, host:port.
	GRPC string `koanf:"grpc" json:"grpc"`
	// HTTP is the REST listen address, host:port.
	HTTP string `koanf:"http" json:"http"`
}

// Nodes says where `plugdb cluster up` puts the nodes of a cluster on one
// machine: replica r of partition p listens on 127.0.0.1:BasePort+p*Replicas+r.
type Nodes struct {
	// Replicas is the number of replicas of each partition, 1..9 (leader and followers).
	Replicas int `koanf:"replicas" json:"replicas"`
	// BasePort is the first node's port; every node's port must be at most 65535.
	BasePort int `koanf:"base_port" json:"base_port"`
}

// NodeAddr returns the loopback address `plugdb cluster up` gives replica r of
// partition p: 127.0.0.1:BasePort+p*Replicas+r.
func (c Config) NodeAddr(p, r int) string {
	return fmt.Sprintf("127.0.0.1:%d", c.Nodes.BasePort+p*c.Nodes.Replicas+r)
}

// Default returns the built-in defaults, the dev configuration (configs/default.yaml).
func Default() Config {
	return Config{
		Cluster:    "dev",
		Data:       "./plugdb-data",
		Partitions: 2,
		ZooKeeper: ZooKeeper{
			Servers:        []string{"127.0.0.1:2181"},
			SessionTimeout: 2 * time.Second,
			Root:           "/plugdb",
		},
		Engine:      Plugin{Plugin: "rowfile", Mode: loader.ModeProcess, Options: map[string]string{"sync": "batch"}},
		Partitioner: Plugin{Plugin: "hash"},
		Replicator:  Plugin{Plugin: "none"},
		Router:      Router{GRPC: "127.0.0.1:7070", HTTP: "127.0.0.1:8080"},
		Nodes:       Nodes{Replicas: 1, BasePort: 7101},
	}
}

// Source is what Load reads besides the defaults.
type Source struct {
	// File is a YAML file overlaying the defaults; empty: none.
	File string
	// Env are environment variables in os.Environ form; only PLUGDB_ ones are read.
	Env []string
	// Flags are the flags the user set, by koanf key (engine.plugin,
	// engine.options.sync), with string values as in the environment.
	Flags map[string]string
}

// Load returns the defaults overlaid by the file, then the environment, then
// the flags, with every key and value checked. It does not check plugin names
// against the bundled plugins: see Validate.
func Load(src Source) (Config, error) {
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(toMap(Default()), ""), nil); err != nil {
		return Config{}, fmt.Errorf("config defaults: %v", err)
	}
	layer := func(s source, lk *koanf.Koanf) error {
		norm, err := normalize(s, lk.Raw())
		if err != nil {
			return err
		}
		return k.Load(confmap.Provider(norm, ""), nil, koanf.WithMergeFunc(mergeLayer))
	}

	if src.File != "" {
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(src.File), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %s", src.File, oneLine(err.Error()))
		}
		if err := layer(fileSource(src.File), fk); err != nil {
			return Config{}, err
		}
	}

	st := newEnvState()
	ek := koanf.New(".")
	err := ek.Load(env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		TransformFunc: st.transform,
		EnvironFunc:   func() []string { return src.Env },
	}), nil)
	if err == nil {
		err = st.err()
	}
	if err != nil {
		return Config{}, err
	}
	if err := layer(envSource(st.from), ek); err != nil {
		return Config{}, err
	}

	if len(src.Flags) > 0 {
		flat := make(map[string]any, len(src.Flags))
		for key, v := range src.Flags {
			if strings.Contains(key, ".options.") {
				// Option names may hold no '.': the rest of the key is the name.
				if e := checkOptionName(key[strings.Index(key, ".options.")+len(".options."):]); e != nil {
					return Config{}, fmt.Errorf("flags: %s: %s", key, e)
				}
			}
			flat[key] = v
		}
		fl := koanf.New(".")
		if err := fl.Load(confmap.Provider(flat, "."), nil); err != nil {
			return Config{}, fmt.Errorf("flags: %v", err)
		}
		if err := layer(flagSource{}, fl); err != nil {
			return Config{}, err
		}
	}

	var c Config
	if err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return Config{}, fmt.Errorf("config: %s", oneLine(err.Error()))
	}
	for _, p := range []*Plugin{&c.Engine, &c.Partitioner, &c.Replicator} {
		if len(p.Options) == 0 {
			p.Options = nil
		}
	}
	return c, nil
}

// toMap is c as a nested koanf map.
func toMap(c Config) map[string]any {
	block := func(p Plugin) map[string]any {
		m := map[string]any{"plugin": p.Plugin, "mode": p.Mode, "sha256": p.SHA256}
		if len(p.Options) > 0 {
			opts := make(map[string]any, len(p.Options))
			for k, v := range p.Options {
				opts[k] = v
			}
			m["options"] = opts
		}
		return m
	}
	return map[string]any{
		"cluster":    c.Cluster,
		"data":       c.Data,
		"partitions": c.Partitions,
		"zookeeper": map[string]any{
			"servers":         append([]string(nil), c.ZooKeeper.Servers...),
			"session_timeout": c.ZooKeeper.SessionTimeout,
			"root":            c.ZooKeeper.Root,
			"auth_file":       c.ZooKeeper.AuthFile,
		},
		"engine":      block(c.Engine),
		"partitioner": block(c.Partitioner),
		"replicator":  block(c.Replicator),
		"router":      map[string]any{"grpc": c.Router.GRPC, "http": c.Router.HTTP},
		"nodes":       map[string]any{"replicas": c.Nodes.Replicas, "base_port": c.Nodes.BasePort},
		"metrics":     map[string]any{"addr": c.Metrics.Addr, "base_port": c.Metrics.BasePort},
		"tls":         map[string]any{"ca": c.TLS.CA, "cert": c.TLS.Cert, "key": c.TLS.Key},
	}
}

// Known are the bundled plugins' names.
type Known struct {
	Engines, Partitioners, Replicators []string
}

// Validate checks every value of c and its plugins: a plugin is a bundled name
// from known or a path (containing '/') to an executable file; inprocess mode is
// for bundled plugins only.
func (c Config) Validate(known Known) error {
	type check struct {
		key string
		val any
		e   *valueError
	}
	checks := []check{
		{"cluster", c.Cluster, checkCluster(c.Cluster)},
		{"data", c.Data, checkData(c.Data)},
		{"partitions", c.Partitions, checkPartitions(c.Partitions)},
		{"zookeeper.servers", c.ZooKeeper.Servers, checkServers(c.ZooKeeper.Servers)},
		{"zookeeper.session_timeout", c.ZooKeeper.SessionTimeout, checkTimeout(c.ZooKeeper.SessionTimeout)},
		{"zookeeper.root", c.ZooKeeper.Root, checkRoot(c.ZooKeeper.Root)},
		{"zookeeper.auth_file", c.ZooKeeper.AuthFile, checkAuthFile(c.ZooKeeper.AuthFile)},
	}
	plugs := []struct {
		kind  string
		p     Plugin
		names []string
	}{
		{"engine", c.Engine, known.Engines},
		{"partitioner", c.Partitioner, known.Partitioners},
		{"replicator", c.Replicator, known.Replicators},
	}
	for _, b := range plugs {
		checks = append(checks,
			check{b.kind + ".mode", b.p.Mode, checkMode(b.p.Mode)},
			check{b.kind + ".sha256", b.p.SHA256, checkSHA256(b.p.SHA256)})
	}
	checks = append(checks,
		check{"router.grpc", c.Router.GRPC, checkAddr(c.Router.GRPC)},
		check{"router.http", c.Router.HTTP, checkAddr(c.Router.HTTP)},
		check{"nodes.replicas", c.Nodes.Replicas, checkReplicas(c.Nodes.Replicas)},
		check{"nodes.base_port", c.Nodes.BasePort, checkBasePort(c.Nodes.BasePort)})
	for _, ch := range checks {
		if ch.e != nil {
			return fmt.Errorf("%s %s: %s", ch.key, show(ch.val), ch.e)
		}
	}
	for _, b := range plugs {
		if err := checkPluginBlock(b.kind, b.p, b.names); err != nil {
			return err
		}
	}
	if _, err := c.TLS.Creds(); err != nil {
		return err
	}
	if c.Router.GRPC == c.Router.HTTP {
		return fmt.Errorf("router.grpc and router.http are both %q (allowed: two different addresses)", c.Router.GRPC)
	}
	total := 0
	for _, name := range c.KeyspaceNames() {
		k, err := c.ForKeyspace(name)
		if err != nil {
			return err
		}
		if name != DefaultKeyspace {
			if err := k.validateKeyspace(name, known); err != nil {
				return err
			}
		}
		total += k.Partitions
	}
	if e := checkNodePorts(c.Nodes.BasePort, total, c.Nodes.Replicas); e != nil {
		return fmt.Errorf("nodes.base_port %d: %s", c.Nodes.BasePort, e)
	}
	return c.validateMetrics(total)
}

// validateKeyspace checks what keyspace name (k, as ForKeyspace made it)
// sets of its own: its name, partition count and plugin blocks.
func (k Config) validateKeyspace(name string, known Known) error {
	key := "keyspaces." + name
	if e := checkKeyspaceName(name); e != nil {
		return fmt.Errorf("keyspaces %q: %s", name, e)
	}
	if e := checkPartitions(k.Partitions); e != nil {
		return fmt.Errorf("%s.partitions %d: %s", key, k.Partitions, e)
	}
	for _, b := range []struct {
		kind  string
		p     Plugin
		names []string
	}{{"engine", k.Engine, known.Engines}, {"partitioner", k.Partitioner, known.Partitioners}, {"replicator", k.Replicator, known.Replicators}} {
		if e := checkMode(b.p.Mode); e != nil {
			return fmt.Errorf("%s.%s.mode %s: %s", key, b.kind, show(b.p.Mode), e)
		}
		if e := checkSHA256(b.p.SHA256); e != nil {
			return fmt.Errorf("%s.%s.sha256 %s: %s", key, b.kind, show(b.p.SHA256), e)
		}
		if err := checkPluginBlock(b.kind, b.p, b.names); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// isPath reports whether a plugin is given by path rather than by name.
func isPath(plugin string) bool {
	return strings.ContainsRune(plugin, '/') || strings.ContainsRune(plugin, filepath.Separator)
}

// checkPluginBlock checks a block's plugin, in the loader's words.
func checkPluginBlock(kind string, p Plugin, bundled []string) error {
	list := "bundled: " + strings.Join(bundled, ", ")
	if len(bundled) == 0 {
		list = "no " + kind + " is bundled"
	}
	if strings.TrimSpace(p.Plugin) == "" {
		return fmt.Errorf("%s.plugin is empty: name a bundled %s (%s) or a plugin binary path", kind, kind, list)
	}
	for name := range p.Options {
		if e := checkOptionName(name); e != nil {
			return fmt.Errorf("%s.options %q: %s", kind, name, e)
		}
	}
	if !isPath(p.Plugin) {
		for _, n := range bundled {
			if n == p.Plugin {
				return nil
			}
		}
		return fmt.Errorf("%s.plugin %q: no such bundled %s (%s); a plugin binary is given by path, e.g. ./bin/my%s",
			kind, p.Plugin, kind, list, kind)
	}
	if p.Mode == loader.ModeInProcess {
		return fmt.Errorf("%s.mode inprocess: only bundled %ss (%s) link in process; %s runs as a process (allowed: process)",
			kind, kind, strings.TrimPrefix(list, "bundled: "), p.Plugin)
	}
	st, err := os.Stat(p.Plugin)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s.plugin %q: plugin binary not found (allowed: a bundled %s (%s) or the path of an existing plugin binary)",
				kind, p.Plugin, kind, list)
		}
		return fmt.Errorf("%s.plugin %q: %v", kind, p.Plugin, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s.plugin %q: not an executable file (allowed: the path of a plugin binary)", kind, p.Plugin)
	}
	return nil
}

// oneLine joins a multi-line message into one line.
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, " ")
}

// Package config is plugdb's configuration, read with github.com/knadh/koanf/v2.
//
// # Layers
//
// Load builds a Config from four layers, each overlaying the ones before it:
//
//	built-in defaults (Default, the same as configs/default.yaml)
//	  < the YAML file (Source.File, the --config flag), which may set only a few keys
//	  < environment variables PLUGDB_… (Source.Env, in os.Environ form)
//	  < flags the user set (Source.Flags, koanf key -> value)
//
// A layer replaces the values it sets and keeps the others; a plugin's options
// merge option by option, with two exceptions:
//
//   - When a layer sets a block's plugin (engine.plugin, partitioner.plugin,
//     replicator.plugin) to another plugin than the layers below it, the options
//     and sha256 of the layers below are dropped: they belonged to the other
//     plugin. So `engine: {plugin: memory}` (or PLUGDB_ENGINE_PLUGIN=memory) is a
//     one-line swap that does not hand rowfile's `sync: batch` to the memory engine.
//     The mode is kept.
//   - In the file, an option with no value (`sync:` or `sync: ~`) removes that
//     option as set by the layers below.
//
// Nothing is written anywhere by this package.
//
// # Keys
//
//	cluster                      non-empty, lower-case letters, digits and '-'
//	data                         the data folder
//	partitions                   1..1024
//	zookeeper.servers            one or more host:port (a YAML list, or comma-separated)
//	zookeeper.session_timeout    a positive Go duration (2s, 500ms)
//	zookeeper.root               an absolute ZooKeeper path (/plugdb)
//	zookeeper.auth_file          empty, or a file holding user:password: digest ACLs on plugdb's znodes
//	engine.plugin                a bundled name or a path (containing '/') to a plugin binary
//	engine.mode                  process | inprocess (empty: process)
//	engine.sha256                empty, or the plugin binary's SHA-256 in hex
//	engine.options.<name>        the plugin's own options (free-form names)
//	partitioner.…, replicator.…  as engine.…
//	router.grpc, router.http     host:port with a port 1..65535 (empty host: all interfaces)
//	nodes.replicas               1..9: replicas per partition `plugdb cluster up` starts
//	nodes.base_port              1024..65535: replica r of partition p listens on
//	                             127.0.0.1:base_port+p*replicas+r, which must be a port
//	metrics.addr                 empty, or the host:port a node serves /metrics and /healthz on
//	metrics.base_port            0, or 1024..65535: `plugdb cluster up` gives replica r of
//	                             partition p metrics on 127.0.0.1:base_port+p*replicas+r
//	tls.ca, tls.cert, tls.key    PEM files: all empty (plaintext), or cert and key (TLS),
//	                             with ca for mutual TLS (docs/security.md); Validate reads them
//
// In the file, an unknown key at any level except inside `options` is an error
// naming the key and the keys allowed where it stands. Option values may be any
// YAML scalar and become strings: `64MiB`, `0.5`, `true`, `1024`. Numbers are
// rendered in their shortest form (1.0 becomes "1", 0x10 becomes "16"); quote a
// value to keep it verbatim. A list or a mapping as an option value is an error.
//
// # Environment variables
//
// A variable that starts with PLUGDB_ is matched against the set of known keys,
// never split at underscores by guessing:
//
//   - PLUGDB_ + a known key upper-cased with '.' replaced by '_':
//     PLUGDB_CLUSTER → cluster, PLUGDB_DATA → data, PLUGDB_PARTITIONS → partitions,
//     PLUGDB_ZOOKEEPER_SERVERS → zookeeper.servers,
//     PLUGDB_ZOOKEEPER_SESSION_TIMEOUT → zookeeper.session_timeout,
//     PLUGDB_ZOOKEEPER_ROOT → zookeeper.root,
//     PLUGDB_ZOOKEEPER_AUTH_FILE → zookeeper.auth_file,
//     PLUGDB_ENGINE_PLUGIN → engine.plugin, PLUGDB_ENGINE_MODE → engine.mode,
//     PLUGDB_ENGINE_SHA256 → engine.sha256 (and the same for PARTITIONER and
//     REPLICATOR), PLUGDB_ROUTER_GRPC → router.grpc, PLUGDB_ROUTER_HTTP → router.http,
//     PLUGDB_NODES_REPLICAS → nodes.replicas, PLUGDB_NODES_BASE_PORT → nodes.base_port,
//     PLUGDB_METRICS_ADDR → metrics.addr, PLUGDB_METRICS_BASE_PORT → metrics.base_port,
//     PLUGDB_TLS_CA → tls.ca, PLUGDB_TLS_CERT → tls.cert, PLUGDB_TLS_KEY → tls.key.
//     The names are exact (upper case); no two known keys map to the same name.
//   - PLUGDB_ENGINE_OPTIONS_<NAME> → engine.options.<name>: everything after
//     `_OPTIONS_` is the option's name, lower-cased, underscores kept
//     (PLUGDB_ENGINE_OPTIONS_MAX_KEY_SIZE → engine.options.max_key_size). The
//     same for PLUGDB_PARTITIONER_OPTIONS_<NAME> and PLUGDB_REPLICATOR_OPTIONS_<NAME>.
//     <NAME> is letters, digits and '_'; two variables naming the same option
//     (…_SYNC and …_sync) are an error.
//   - List values (zookeeper.servers) are comma-separated: 10.0.0.1:2181,10.0.0.2:2181.
//   - A variable set to the empty string sets the key to the empty string.
//   - Variables used by plugdb for other purposes are ignored; the list is explicit
//     (see IgnoredEnv): PLUGDB_PLUGIN (go-plugin's magic cookie, set in plugin
//     processes), PLUGDB_BENCH_KEYS and PLUGDB_TEST_ROLE (benchmarks and tests).
//   - Any other PLUGDB_ variable is an error that names it and lists the allowed
//     variables, so a typo (PLUGDB_ENGINE_PLUGN) does not go unnoticed.
//
// Flags (Source.Flags) are keyed by the koanf key (engine.plugin,
// engine.options.sync) and take string values like the environment.
//
// # Errors
//
// Every error is one line that names where the value came from (config file,
// environment variable, flags), the key, the bad value and what is allowed, e.g.
//
//	config file x.yaml: unknown key "engine.plugn" (allowed under engine: plugin, mode, sha256, options)
//	environment variable PLUGDB_PARTITIONS: partitions "0": out of range (allowed: 1..1024)
//
// Load checks keys and values; Validate also checks plugin names against the
// bundled plugins and plugin paths against the file system.
package config

package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// The key tree. Sections hold keys; leaves hold values; an options leaf holds a
// free-form mapping of plugin options.

// blocks are the plugin blocks, in file order.
var blocks = []string{"engine", "partitioner", "replicator"}

var pluginKeys = []string{"plugin", "mode", "sha256", "options"}

// sections lists each section's keys in file order ("" is the top level).
var sections = map[string][]string{
	"":            {"cluster", "data", "partitions", "zookeeper", "engine", "partitioner", "replicator", "router", "nodes", "metrics", "tls", "keyspaces"},
	"zookeeper":   {"servers", "session_timeout", "root", "auth_file"},
	"engine":      pluginKeys,
	"partitioner": pluginKeys,
	"replicator":  pluginKeys,
	"router":      {"grpc", "http"},
	"nodes":       {"replicas", "base_port"},
	"metrics":     {"addr", "base_port"},
	"tls":         {"ca", "cert", "key"},
}

// keyspaceKeys are the keys of one keyspace under keyspaces.NAME: the
// top-level keys of the same names, which it overrides.
var keyspaceKeys = []string{"partitions", "engine", "partitioner", "replicator"}

type leaf struct {
	// parse turns a loaded value into the key's type, or says what is wrong.
	parse func(any) (any, *valueError)
	// options marks a free-form options mapping.
	options bool
}

var leaves = map[string]leaf{
	"cluster":                   {parse: stringParser(checkCluster, allowedCluster)},
	"data":                      {parse: stringParser(checkData, allowedData)},
	"partitions":                {parse: parsePartitions},
	"nodes.replicas":            {parse: intParser(checkReplicas, allowedReplicas)},
	"nodes.base_port":           {parse: intParser(checkBasePort, allowedBasePort)},
	"zookeeper.servers":         {parse: parseServers},
	"zookeeper.session_timeout": {parse: parseTimeout},
	"zookeeper.root":            {parse: stringParser(checkRoot, allowedRoot)},
	"zookeeper.auth_file":       {parse: stringParser(checkAuthFileName, allowedAuthFile)},
	"router.grpc":               {parse: stringParser(checkAddr, allowedHostPort)},
	"router.http":               {parse: stringParser(checkAddr, allowedHostPort)},
	"metrics.addr":              {parse: stringParser(checkMetricsAddr, allowedMetricsAddr)},
	"metrics.base_port":         {parse: intParser(checkMetricsBasePort, allowedMetricsBasePort)},
	"tls.ca":                    {parse: stringParser(checkFile, allowedFile)},
	"tls.cert":                  {parse: stringParser(checkFile, allowedFile)},
	"tls.key":                   {parse: stringParser(checkFile, allowedFile)},
}

func init() {
	for _, b := range blocks {
		leaves[b+".plugin"] = leaf{parse: stringParser(checkPlugin, allowedPlugin)}
		leaves[b+".mode"] = leaf{parse: stringParser(checkMode, allowedMode)}
		leaves[b+".sha256"] = leaf{parse: stringParser(checkSHA256, allowedSHA256)}
		leaves[b+".options"] = leaf{options: true}
	}
}

// Keys returns every key with a single value, in file order (cluster, data, …,
// router.http). Plugin options are keyed <block>.options.<name> (Source.Flags
// accepts those too). The keyspaces section, set in the file only, is not
// among them.
func Keys() []string {
	var out []string
	var walk func(path string)
	walk = func(path string) {
		for _, name := range sections[path] {
			key := join(path, name)
			if _, ok := sections[key]; ok {
				walk(key)
			} else if key != "keyspaces" && !leaves[key].options {
				out = append(out, key)
			}
		}
	}
	walk("")
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// source names where a layer's values come from, for error messages.
type source interface {
	// prefix is the start of an error about key.
	prefix(key string) string
}

type fileSource string

func (f fileSource) prefix(string) string { return "config file " + string(f) + ": " }

type flagSource struct{}

func (flagSource) prefix(string) string { return "flags: " }

// normalize checks a layer's nested map against the key tree and returns it with
// every value converted to its key's type. An option without a value is kept
// as nil: the merge removes that option.
func normalize(src source, raw map[string]any) (map[string]any, error) {
	return normalizeSection(src, "", raw)
}

func normalizeSection(src source, path string, m map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for _, name := range sortedKeys(m) {
		v := m[name]
		key := join(path, name)
		if name == "" || strings.Contains(name, ".") {
			return nil, unknownKey(src, path, key)
		}
		if key == "keyspaces" {
			ks, err := normalizeKeyspaces(src, v)
			if err != nil {
				return nil, err
			}
			if ks != nil {
				out[name] = ks
			}
			continue
		}
		if _, ok := sections[key]; ok {
			if v == nil {
				continue // `engine:` with nothing below: nothing set
			}
			sub, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s%s %s: not a mapping (allowed: a mapping with keys %s)",
					src.prefix(key), key, show(v), strings.Join(sections[key], ", "))
			}
			n, err := normalizeSection(src, key, sub)
			if err != nil {
				return nil, err
			}
			out[name] = n
			continue
		}
		lf, ok := leaves[key]
		if !ok {
			return nil, unknownKey(src, path, key)
		}
		if lf.options {
			opts, err := normalizeOptions(src, key, v)
			if err != nil {
				return nil, err
			}
			if opts != nil {
				out[name] = opts
			}
			continue
		}
		val, e := lf.parse(v)
		if e != nil {
			return nil, fmt.Errorf("%s%s %s: %s", src.prefix(key), key, show(v), e)
		}
		out[name] = val
	}
	return out, nil
}

// normalizeKeyspaces checks the keyspaces section: a mapping of keyspace
// names to mappings of keyspaceKeys, each checked as its top-level twin.
func normalizeKeyspaces(src source, v any) (map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%skeyspaces %s: not a mapping (allowed: a mapping of keyspace names to mappings with keys %s)",
			src.prefix("keyspaces"), show(v), strings.Join(keyspaceKeys, ", "))
	}
	out := make(map[string]any, len(m))
	for _, name := range sortedKeys(m) {
		key := "keyspaces." + name
		if e := checkKeyspaceName(name); e != nil {
			return nil, fmt.Errorf("%skeyspaces %q: %s", src.prefix(key), name, e)
		}
		sub, ok := m[name].(map[string]any)
		if !ok && m[name] != nil {
			return nil, fmt.Errorf("%s%s %s: not a mapping (allowed: a mapping with keys %s)",
				src.prefix(key), key, show(m[name]), strings.Join(keyspaceKeys, ", "))
		}
		for _, k := range sortedKeys(sub) {
			if !slices.Contains(keyspaceKeys, k) {
				return nil, fmt.Errorf("%sunknown key %q (allowed under %s: %s)", src.prefix(key), key+"."+k, key, strings.Join(keyspaceKeys, ", "))
			}
		}
		n, err := normalizeSection(keyspaceSource{src, key}, "", sub)
		if err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, nil
}

// keyspaceSource is the source of a keyspace's keys: its errors name the
// keyspace before the key.
type keyspaceSource struct {
	source
	key string // keyspaces.NAME
}

func (k keyspaceSource) prefix(key string) string { return k.source.prefix(key) + k.key + ": " }

func unknownKey(src source, path, key string) error {
	where := "at top level"
	if path != "" {
		where = "under " + path
	}
	hint := ""
	if _, known := leaves[key]; known {
		// A dotted key in the file, e.g. `engine.plugin: memory` at the top level.
		hint = "; write nested keys as YAML mappings"
	} else if _, known := sections[key]; known {
		hint = "; write nested keys as YAML mappings"
	}
	return fmt.Errorf("%sunknown key %q (allowed %s: %s%s)", src.prefix(key), key, where, strings.Join(sections[path], ", "), hint)
}

func normalizeOptions(src source, key string, v any) (map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s%s %s: not a mapping (allowed: a mapping of option names to values, e.g. {sync: batch})",
			src.prefix(key), key, show(v))
	}
	out := make(map[string]any, len(m))
	for _, name := range sortedKeys(m) {
		okey := key + "." + name
		if e := checkOptionName(name); e != nil {
			return nil, fmt.Errorf("%s%s %q: %s", src.prefix(okey), key, name, e)
		}
		val := m[name]
		if val == nil {
			out[name] = nil // removes the option
			continue
		}
		s, ok := scalarString(val)
		if !ok {
			return nil, fmt.Errorf("%s%s %s: not a single value (allowed: %s)", src.prefix(okey), okey, show(val), allowedOptionVal)
		}
		out[name] = s
	}
	return out, nil
}

func checkOptionName(name string) *valueError {
	const allowed = "an option name without '.', e.g. sync"
	if strings.TrimSpace(name) == "" {
		return bad("empty option name", allowed)
	}
	if strings.Contains(name, ".") {
		return bad("option name contains '.'", allowed)
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// mergeLayer merges a normalized layer (src) into the values below it (dest),
// for koanf.WithMergeFunc. A block whose plugin changes loses the options and
// sha256 set below; an option without a value is removed.
func mergeLayer(src, dest map[string]any) error {
	for _, b := range blocks {
		s, _ := src[b].(map[string]any)
		if s == nil {
			continue
		}
		d, _ := dest[b].(map[string]any)
		if d != nil {
			if p, ok := s["plugin"]; ok && p != d["plugin"] {
				delete(d, "options")
				delete(d, "sha256")
			}
		}
		sopts, _ := s["options"].(map[string]any)
		dopts, _ := d["options"].(map[string]any)
		for _, name := range sortedKeys(sopts) {
			if sopts[name] == nil {
				delete(sopts, name)
				delete(dopts, name)
			}
		}
		if sopts != nil && len(sopts) == 0 {
			delete(s, "options")
		}
	}
	mergeMaps(src, dest)
	return nil
}

// mergeMaps merges src into dest: mappings recursively, other values replaced.
func mergeMaps(src, dest map[string]any) {
	for k, v := range src {
		sm, sok := v.(map[string]any)
		dm, dok := dest[k].(map[string]any)
		if sok && dok {
			mergeMaps(sm, dm)
			continue
		}
		if sok {
			cp := make(map[string]any, len(sm))
			mergeMaps(sm, cp)
			v = cp
		}
		if l, ok := v.([]string); ok {
			v = slices.Clone(l)
		}
		dest[k] = v
	}
}

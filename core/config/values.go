package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// MaxPartitions bounds the partitions key.
const MaxPartitions = 1024

// MaxReplicas bounds the nodes.replicas key.
const MaxReplicas = 9

// valueError is a bad value: what is wrong with it and what is allowed.
type valueError struct {
	problem, allowed string
}

func (e *valueError) Error() string { return e.problem + " (allowed: " + e.allowed + ")" }

func bad(problem, allowed string) *valueError { return &valueError{problem, allowed} }

// What is allowed, per key kind.
const (
	allowedCluster   = "lower-case letters, digits and '-', e.g. dev"
	allowedData      = "a folder path, e.g. ./plugdb-data"
	allowedServers   = "one or more host:port, e.g. 127.0.0.1:2181 (a YAML list or comma-separated)"
	allowedTimeout   = "a positive duration such as 2s or 500ms"
	allowedRoot      = "an absolute ZooKeeper path such as /plugdb"
	allowedPlugin    = "a bundled plugin's name or a path to a plugin binary"
	allowedMode      = "process, inprocess"
	allowedSHA256    = "empty, or 64 hex digits (the plugin binary's SHA-256)"
	allowedHostPort  = "host:port with a port 1..65535, e.g. 127.0.0.1:7070"
	allowedOptionVal = "a scalar: string, number or bool"
)

var (
	allowedPartitions = fmt.Sprintf("1..%d", MaxPartitions)
	allowedReplicas   = fmt.Sprintf("1..%d", MaxReplicas)
	allowedBasePort   = "1024..65535, with a port for every node up to 65535"
)

// Checks on typed values, shared by the loading of every layer and Validate.

func checkCluster(s string) *valueError {
	if s == "" {
		return bad("empty", allowedCluster)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return bad(fmt.Sprintf("character %q not allowed", r), allowedCluster)
		}
	}
	return nil
}

// allowedKeyspace describes a keyspace name.
const allowedKeyspace = "1..32 lower-case letters, digits and '-', starting with a letter; not \"default\", the top-level keyspace"

func checkKeyspaceName(s string) *valueError {
	switch {
	case s == "" || len(s) > 32:
		return bad(fmt.Sprintf("length %d", len(s)), allowedKeyspace)
	case s == DefaultKeyspace:
		return bad("reserved", allowedKeyspace)
	case s[0] < 'a' || s[0] > 'z':
		return bad("does not start with a letter", allowedKeyspace)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return bad(fmt.Sprintf("character %q not allowed", r), allowedKeyspace)
		}
	}
	return nil
}

func checkData(s string) *valueError {
	if strings.TrimSpace(s) == "" {
		return bad("empty", allowedData)
	}
	return nil
}

func checkPartitions(n int) *valueError {
	if n < 1 || n > MaxPartitions {
		return bad("out of range", allowedPartitions)
	}
	return nil
}

func checkReplicas(n int) *valueError {
	if n < 1 || n > MaxReplicas {
		return bad("out of range", allowedReplicas)
	}
	return nil
}

func checkBasePort(n int) *valueError {
	if n < 1024 || n > 65535 {
		return bad("out of range", allowedBasePort)
	}
	return nil
}

// checkNodePorts checks that base+partitions*replicas-1, the last node's port,
// is a port.
func checkNodePorts(base, partitions, replicas int) *valueError {
	if last := base + partitions*replicas - 1; last > 65535 {
		return bad(fmt.Sprintf("%d partitions × %d replicas need ports %d..%d", partitions, replicas, base, last),
			fmt.Sprintf("a base_port of at most %d for %d nodes", 65536-partitions*replicas, partitions*replicas))
	}
	return nil
}

func checkServers(list []string) *valueError {
	if len(list) == 0 {
		return bad("no servers", allowedServers)
	}
	for _, s := range list {
		if e := checkHostPort(s, allowedServers); e != nil {
			return bad(fmt.Sprintf("server %q: %s", s, e.problem), allowedServers)
		}
	}
	return nil
}

func checkTimeout(d time.Duration) *valueError {
	if d <= 0 {
		return bad("not positive", allowedTimeout)
	}
	return nil
}

func checkRoot(s string) *valueError {
	if !strings.HasPrefix(s, "/") {
		return bad("not an absolute path", allowedRoot)
	}
	if s != "/" && (strings.HasSuffix(s, "/") || strings.Contains(s, "//")) {
		return bad("empty path element", allowedRoot)
	}
	return nil
}

func checkPlugin(s string) *valueError {
	if strings.TrimSpace(s) == "" {
		return bad("empty", allowedPlugin)
	}
	return nil
}

func checkMode(s string) *valueError {
	switch s {
	case "", "process", "inprocess":
		return nil
	}
	return bad("not a mode", allowedMode)
}

func checkSHA256(s string) *valueError {
	if s == "" {
		return nil
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return bad("not a SHA-256", allowedSHA256)
	}
	return nil
}

func checkHostPort(s, allowed string) *valueError {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return bad("not host:port", allowed)
	}
	if strings.ContainsAny(host, " \t") {
		return bad("bad host", allowed)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return bad("bad port", allowed)
	}
	return nil
}

func checkAddr(s string) *valueError { return checkHostPort(s, allowedHostPort) }

// Conversions of loaded values (YAML-typed from the file, strings from the
// environment and flags) to the keys' types.

// scalarString renders a YAML scalar as a string; ok is false for lists and mappings.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case time.Duration:
		return x.String(), true
	case []any, map[string]any, nil:
		return "", false
	}
	return fmt.Sprint(v), true
}

func wantScalar(v any, allowed string) (string, *valueError) {
	s, ok := scalarString(v)
	if !ok {
		return "", bad("not a single value", allowed)
	}
	return s, nil
}

func stringParser(check func(string) *valueError, allowed string) func(any) (any, *valueError) {
	return func(v any) (any, *valueError) {
		if v == nil {
			v = ""
		}
		s, e := wantScalar(v, allowed)
		if e != nil {
			return nil, e
		}
		if e := check(s); e != nil {
			return nil, e
		}
		return s, nil
	}
}

func parsePartitions(v any) (any, *valueError) {
	return intParser(checkPartitions, allowedPartitions)(v)
}

// intParser parses an integer key: a YAML integer or a decimal string.
func intParser(check func(int) *valueError, allowed string) func(any) (any, *valueError) {
	return func(v any) (any, *valueError) {
		var n int
		switch x := v.(type) {
		case int:
			n = x
		case int64:
			if x < -1<<31 || x > 1<<31 {
				return nil, bad("out of range", allowed)
			}
			n = int(x)
		case string:
			i, err := strconv.Atoi(strings.TrimSpace(x))
			if err != nil {
				return nil, bad("not an integer", allowed)
			}
			n = i
		case nil:
			return nil, bad("no value", allowed)
		default:
			return nil, bad("not an integer", allowed)
		}
		if e := check(n); e != nil {
			return nil, e
		}
		return n, nil
	}
}

func parseServers(v any) (any, *valueError) {
	var list []string
	switch x := v.(type) {
	case string:
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
	case []any:
		for _, it := range x {
			s, ok := scalarString(it)
			if !ok || it == nil {
				return nil, bad("a list element is not a single value", allowedServers)
			}
			list = append(list, strings.TrimSpace(s))
		}
	case []string:
		list = append(list, x...)
	case nil:
	default:
		return nil, bad("not a list", allowedServers)
	}
	if e := checkServers(list); e != nil {
		return nil, e
	}
	return list, nil
}

func parseTimeout(v any) (any, *valueError) {
	var d time.Duration
	switch x := v.(type) {
	case time.Duration:
		d = x
	case string:
		p, err := time.ParseDuration(strings.TrimSpace(x))
		if err != nil {
			return nil, bad("not a duration", allowedTimeout)
		}
		d = p
	case nil:
		return nil, bad("no value", allowedTimeout)
	default:
		return nil, bad("not a duration (a number needs a unit)", allowedTimeout)
	}
	if e := checkTimeout(d); e != nil {
		return nil, e
	}
	return d, nil
}

// show renders a value for an error message.
func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "(no value)"
	case []any:
		parts := make([]string, len(x))
		for i, it := range x {
			parts[i] = show(it)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []string:
		return show(toAnySlice(x))
	case map[string]any:
		return "(a mapping)"
	case time.Duration:
		return strconv.Quote(x.String())
	}
	return fmt.Sprint(v)
}

func toAnySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

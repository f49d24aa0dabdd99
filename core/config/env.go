package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/plugdb/plugdb/plugins"
)

// EnvPrefix starts every environment variable plugdb reads.
const EnvPrefix = "PLUGDB_"

// IgnoredEnv returns, in a fresh slice, the PLUGDB_ variables that are not
// configuration and that Load ignores: go-plugin's magic cookie key (set in
// every plugin process), and the variables of benchmarks and tests.
func IgnoredEnv() []string {
	return []string{
		plugins.Handshake.MagicCookieKey, // PLUGDB_PLUGIN
		"PLUGDB_BENCH_KEYS",
		"PLUGDB_TEST_ROLE",
	}
}

// EnvName returns the environment variable of a key: PLUGDB_ + the key
// upper-cased with '.' replaced by '_' (engine.options.max_key_size →
// PLUGDB_ENGINE_OPTIONS_MAX_KEY_SIZE).
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// envKeys maps every known variable to its key.
var envKeys = func() map[string]string {
	m := make(map[string]string)
	for _, k := range Keys() {
		m[EnvName(k)] = k
	}
	return m
}()

// optionEnvPrefix is the start of a block's option variables.
func optionEnvPrefix(block string) string { return EnvName(block+".options") + "_" }

// EnvNames lists the variables Load reads, in key order, with
// PLUGDB_<BLOCK>_OPTIONS_<NAME> for the option variables.
func EnvNames() []string {
	var out []string
	for _, k := range Keys() {
		out = append(out, EnvName(k))
		for _, b := range blocks {
			if k == b+".sha256" {
				out = append(out, optionEnvPrefix(b)+"<NAME>")
			}
		}
	}
	return out
}

// envState maps PLUGDB_ variables to keys for the koanf env provider
// (its TransformFunc), remembering the variable of each key and the errors.
type envState struct {
	from    map[string]string // key → variable
	seen    map[string]bool
	unknown []string
	first   error
}

func newEnvState() *envState {
	return &envState{from: make(map[string]string), seen: make(map[string]bool)}
}

// transform is the env provider's TransformFunc: it returns the variable's key
// and value, or "" to skip it.
func (st *envState) transform(name, val string) (string, any) {
	if slices.Contains(IgnoredEnv(), name) || st.seen[name] {
		return "", nil // a repeated variable: the first one counts, as for os.Getenv
	}
	st.seen[name] = true
	key, err := envKey(name)
	switch {
	case err != nil:
		st.fail(err)
		return "", nil
	case key == "":
		st.unknown = append(st.unknown, name)
		return "", nil
	}
	if other, dup := st.from[key]; dup {
		st.fail(fmt.Errorf("environment variables %s and %s both set %s: set one of them", other, name, key))
		return "", nil
	}
	st.from[key] = name
	return key, val
}

func (st *envState) fail(err error) {
	if st.first == nil {
		st.first = err
	}
}

// err is the first error, or the unknown variables.
func (st *envState) err() error {
	if st.first != nil {
		return st.first
	}
	if len(st.unknown) == 0 {
		return nil
	}
	sort.Strings(st.unknown)
	what := "variable " + st.unknown[0]
	if len(st.unknown) > 1 {
		what = "variables " + strings.Join(st.unknown, ", ")
	}
	return fmt.Errorf("environment %s: not a plugdb setting (allowed: %s; ignored: %s)",
		what, strings.Join(EnvNames(), ", "), strings.Join(IgnoredEnv(), ", "))
}

// envKey returns the key of variable name, "" if it names none.
func envKey(name string) (string, error) {
	if key, ok := envKeys[name]; ok {
		return key, nil
	}
	for _, b := range blocks {
		p := optionEnvPrefix(b)
		if !strings.HasPrefix(name, p) {
			continue
		}
		opt := name[len(p):]
		if opt == "" || strings.Trim(opt, "_") == "" || strings.IndexFunc(opt, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
		}) >= 0 {
			return "", fmt.Errorf("environment variable %s: bad option name %q (allowed: %s<NAME> with NAME made of letters, digits and '_', e.g. %sSYNC)",
				name, opt, p, p)
		}
		return b + ".options." + strings.ToLower(opt), nil
	}
	return "", nil
}

type envSource map[string]string // key → variable

func (e envSource) prefix(key string) string {
	if v, ok := e[key]; ok {
		return "environment variable " + v + ": "
	}
	return "environment: "
}

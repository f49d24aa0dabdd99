package pebble

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/plugdb/plugdb/engines"
)

// Option names and defaults (engines.Options.Params).
const (
	OptSync         = "sync"           // always (default) | none
	OptMaxKeySize   = "max_key_size"   // bytes, default 1024
	OptMaxValueSize = "max_value_size" // bytes, default 1MiB
	OptCacheSize    = "cache_size"     // bytes, default 8MiB (pebble's default block cache)
)

var optionNames = []string{OptCacheSize, OptMaxKeySize, OptMaxValueSize, OptSync}

// Defaults of the options.
const (
	DefaultMaxKeySize   = 1024
	DefaultMaxValueSize = 1 << 20
	DefaultCacheSize    = 8 << 20
)

// Bounds of the options. Keys and values are bounded like rowfile's; a batch
// must stay below pebble's 4GiB batch limit (see maxBatchBytes).
const (
	keyLimit     = 1 << 20
	valueLimit   = 1 << 30
	minCacheSize = 1 << 20
	maxCacheSize = 1 << 40
)

type options struct {
	sync         bool // commit with pebble.Sync (always) or pebble.NoSync (none)
	maxKeySize   int
	maxValueSize int
	cacheSize    int64
}

func defaultOptions() options {
	return options{sync: true, maxKeySize: DefaultMaxKeySize, maxValueSize: DefaultMaxValueSize, cacheSize: DefaultCacheSize}
}

func badOption(name, value, allowed string) error {
	return fmt.Errorf("pebble: option %s: bad value %q: allowed %s: %w", name, value, allowed, engines.ErrInvalidArgument)
}

// parseOptions reads params over the defaults. Names are checked in sorted
// order, so the error for several bad options is always the same one.
func parseOptions(params map[string]string) (options, error) {
	o := defaultOptions()
	for _, name := range slices.Sorted(maps.Keys(params)) {
		v := params[name]
		val := strings.TrimSpace(v)
		switch name {
		case OptSync:
			switch val {
			case "always":
				o.sync = true
			case "none":
				o.sync = false
			default:
				return o, badOption(name, v, "always | none")
			}
		case OptMaxKeySize:
			n, ok := engines.ParseSize(val)
			if !ok || n < 1 || n > keyLimit {
				return o, badOption(name, v, fmt.Sprintf("a size from 1 to %d bytes, such as 1024 or 4KiB", keyLimit))
			}
			o.maxKeySize = int(n)
		case OptMaxValueSize:
			n, ok := engines.ParseSize(val)
			if !ok || n < 1 || n > valueLimit {
				return o, badOption(name, v, fmt.Sprintf("a size from 1 to %d bytes, such as 1048576 or 1MiB", valueLimit))
			}
			o.maxValueSize = int(n)
		case OptCacheSize:
			n, ok := engines.ParseSize(val)
			if !ok || n < minCacheSize || n > maxCacheSize {
				return o, badOption(name, v, "a size from 1MiB to 1024GiB, such as 8388608 or 64MiB")
			}
			o.cacheSize = n
		default:
			return o, fmt.Errorf("pebble: unknown option %q (value %q): allowed %s: %w",
				name, v, strings.Join(optionNames, ", "), engines.ErrInvalidArgument)
		}
	}
	return o, nil
}

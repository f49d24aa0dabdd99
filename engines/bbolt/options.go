package bbolt

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/plugdb/plugdb/engines"
)

// Option names (Options.Params) and their defaults.
const (
	OptSync            = "sync"              // always (default) | none
	OptMaxKeySize      = "max_key_size"      // bytes, default 1024, at most 32768
	OptMaxValueSize    = "max_value_size"    // bytes, default 1MiB, at most 1GiB
	OptInitialMmapSize = "initial_mmap_size" // bytes, default 1GiB, 64MiB to 64GiB
)

var optionNames = []string{OptInitialMmapSize, OptMaxKeySize, OptMaxValueSize, OptSync}

// Defaults and limits of the options.
const (
	DefaultMaxKeySize      = 1024
	DefaultMaxValueSize    = 1 << 20
	DefaultInitialMmapSize = 1 << 30

	// maxKeySize is bbolt's own key limit.
	maxKeySize = bolt.MaxKeySize
	// maxValueSize bounds values well below bbolt's limit (2GiB less the LSN
	// prefix); a value is held in memory whole while its transaction commits.
	maxValueSize = 1 << 30
	minMmapSize  = 64 << 20
	maxMmapSize  = 64 << 30
)

type options struct {
	noSync          bool
	maxKeySize      int
	maxValueSize    int
	initialMmapSize int
}

func defaultOptions() options {
	return options{
		maxKeySize:      DefaultMaxKeySize,
		maxValueSize:    DefaultMaxValueSize,
		initialMmapSize: DefaultInitialMmapSize,
	}
}

func badOption(name, value, allowed string) error {
	return fmt.Errorf("bbolt: option %s: bad value %q: allowed %s: %w", name, value, allowed, engines.ErrInvalidArgument)
}

// parseOptions reads params over the defaults. Names are checked in sorted
// order, so the error for a map with several bad entries is always the same.
func parseOptions(params map[string]string) (options, error) {
	o := defaultOptions()
	for _, name := range slices.Sorted(maps.Keys(params)) {
		v := params[name]
		val := strings.TrimSpace(v)
		switch name {
		case OptSync:
			switch val {
			case "always":
				o.noSync = false
			case "none":
				o.noSync = true
			default:
				return o, badOption(name, v, "always | none")
			}
		case OptMaxKeySize:
			n, ok := engines.ParseSize(val)
			if !ok || n < 1 || n > maxKeySize {
				return o, badOption(name, v, fmt.Sprintf("a size from 1 to %d bytes", maxKeySize))
			}
			o.maxKeySize = int(n)
		case OptMaxValueSize:
			n, ok := engines.ParseSize(val)
			if !ok || n < 1 || n > maxValueSize {
				return o, badOption(name, v, fmt.Sprintf("a size from 1 to %d bytes", maxValueSize))
			}
			o.maxValueSize = int(n)
		case OptInitialMmapSize:
			n, ok := engines.ParseSize(val)
			if !ok || n < minMmapSize || n > maxMmapSize {
				return o, badOption(name, v, "a size from 64MiB to 64GiB, such as 1GiB")
			}
			o.initialMmapSize = int(n)
		default:
			return o, fmt.Errorf("bbolt: unknown option %q (value %q): allowed %s: %w",
				name, v, strings.Join(optionNames, ", "), engines.ErrInvalidArgument)
		}
	}
	return o, nil
}

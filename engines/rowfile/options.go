package rowfile

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/plugdb/plugdb/engines"
)

// Option names and defaults (Options.Params).
const (
	OptIndex            = "index"             // hash (default) | btree
	OptSync             = "sync"              // always | batch (default) | none
	OptSegmentSize      = "segment_size"      // bytes, default 64MiB
	OptMaxKeySize       = "max_key_size"      // bytes, default 1024
	OptMaxValueSize     = "max_value_size"    // bytes, default 1MiB
	OptCompactThreshold = "compact_threshold" // garbage ratio in (0,1], default 0.5
	OptCompactInterval  = "compact_interval"  // Go duration, default 30s; 0 disables
)

var optionNames = []string{OptCompactInterval, OptCompactThreshold, OptIndex, OptMaxKeySize, OptMaxValueSize, OptSegmentSize, OptSync}

type syncMode int

const (
	syncBatch syncMode = iota
	syncAlways
	syncNone
)

func (m syncMode) String() string {
	switch m {
	case syncAlways:
		return "always"
	case syncNone:
		return "none"
	}
	return "batch"
}

const (
	minSegmentSize = 4 << 10
	maxSegmentSize = 64 << 30
)

type options struct {
	index            string
	sync             syncMode
	segmentSize      int64
	maxKeySize       int
	maxValueSize     int
	compactThreshold float64
	compactInterval  time.Duration
}

func defaultOptions() options {
	return options{
		index:            "hash",
		sync:             syncBatch,
		segmentSize:      64 << 20,
		maxKeySize:       1024,
		maxValueSize:     1 << 20,
		compactThreshold: 0.5,
		compactInterval:  30 * time.Second,
	}
}

func badOption(name, value, allowed string) error {
	return fmt.Errorf("rowfile: option %s: bad value %q: allowed %s: %w", name, value, allowed, engines.ErrInvalidArgument)
}

// parseOptions reads params over the defaults.
func parseOptions(params map[string]string) (options, error) {
	o := defaultOptions()
	for name, v := range params {
		val := strings.TrimSpace(v)
		switch name {
		case OptIndex:
			if val != "hash" && val != "btree" {
				return o, badOption(name, v, "hash or btree")
			}
			o.index = val
		case OptSync:
			switch val {
			case "always":
				o.sync = syncAlways
			case "batch":
				o.sync = syncBatch
			case "none":
				o.sync = syncNone
			default:
				return o, badOption(name, v, "always, batch or none")
			}
		case OptSegmentSize:
			n, ok := engines.ParseSize(val)
			if !ok || n < minSegmentSize || n > maxSegmentSize {
				return o, badOption(name, v, "a size from 4KiB to 64GiB, such as 67108864 or 64MiB")
			}
			o.segmentSize = n
		case OptMaxKeySize:
			n, ok := engines.ParseSize(val)
			if !ok || n < 1 || n > keyLimit {
				return o, badOption(name, v, fmt.Sprintf("a size from 1 to %d bytes", keyLimit))
			}
			o.maxKeySize = int(n)
		case OptMaxValueSize:
			n, ok := engines.ParseSize(val)
			if !ok || n < 1 || n > valueLimit {
				return o, badOption(name, v, fmt.Sprintf("a size from 1 to %d bytes", valueLimit))
			}
			o.maxValueSize = int(n)
		case OptCompactThreshold:
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || !(f > 0 && f <= 1) {
				return o, badOption(name, v, "a ratio above 0 and at most 1, such as 0.5")
			}
			o.compactThreshold = f
		case OptCompactInterval:
			if val == "0" {
				o.compactInterval = 0
				break
			}
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return o, badOption(name, v, "a duration such as 30s, or 0 to disable background compaction")
			}
			o.compactInterval = d
		default:
			return o, fmt.Errorf("rowfile: unknown option %q (value %q): allowed %s: %w", name, v, strings.Join(optionNames, ", "), engines.ErrInvalidArgument)
		}
	}
	return o, nil
}

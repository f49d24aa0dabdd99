package pebble_test

import (
	"testing"

	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/engines/pebble"
)

// TestConformance runs the engine conformance kit against pebble in each sync
// mode (pebble.Sync and pebble.NoSync commits).
func TestConformance(t *testing.T) {
	for _, params := range []map[string]string{
		{"sync": "always"},
		{"sync": "none", "cache_size": "1MiB"},
	} {
		t.Run("sync_"+params["sync"], func(t *testing.T) {
			enginetest.Run(t, func(t *testing.T) enginetest.Harness {
				return enginetest.FromOpenFunc(pebble.Open, params)
			})
		})
	}
}

package bbolt_test

import (
	"testing"

	"github.com/plugdb/plugdb/engines/bbolt"
	"github.com/plugdb/plugdb/engines/enginetest"
)

// TestConformance runs the engine conformance kit against bbolt with each sync
// mode and the smallest initial mapping.
func TestConformance(t *testing.T) {
	for name, params := range map[string]map[string]string{
		"sync_always": {"sync": "always"},
		"sync_none":   {"sync": "none"},
		"small_mmap":  {"initial_mmap_size": "64MiB"},
	} {
		t.Run(name, func(t *testing.T) {
			enginetest.Run(t, func(t *testing.T) enginetest.Harness {
				return enginetest.FromOpenFunc(bbolt.Open, params)
			})
		})
	}
}

package rowfile_test

import (
	"testing"

	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/engines/rowfile"
)

// TestConformance runs the engine conformance kit against rowfile with each index
// and sync mode that changes a code path.
func TestConformance(t *testing.T) {
	for _, params := range []map[string]string{
		{"index": "hash"},
		{"index": "btree"},
		{"index": "btree", "sync": "always", "segment_size": "4KiB"},
		{"index": "hash", "sync": "none", "segment_size": "4KiB"},
	} {
		name := params["index"]
		if s := params["sync"]; s != "" {
			name += "_sync_" + s
		}
		t.Run(name, func(t *testing.T) {
			enginetest.Run(t, func(t *testing.T) enginetest.Harness {
				return enginetest.FromOpenFunc(rowfile.Open, params)
			})
		})
	}
}

package main

import (
	"testing"

	"github.com/plugdb/plugdb/engines/enginetest"
)

// TestConformance runs the kit in process; `plugdb plugin check` runs it against
// the built binary (see cmd/plugdb's tests).
func TestConformance(t *testing.T) {
	enginetest.Run(t, func(*testing.T) enginetest.Harness { return enginetest.FromOpenFunc(open, nil) })
}

//go:build race

package loader

import (
	"os"
	"strings"
)

// raceEnabled reports whether the test binary was built with -race.
const raceEnabled = true

// The plugin processes these tests start are this race-built test binary, and the
// race runtime sleeps a second at exit (GORACE atexit_sleep_ms, default 1000)
// before it exits: every Close of a plugin engine would wait for it. Children
// inherit the environment, so turn the sleep off for them unless GORACE sets it.
func init() {
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
}

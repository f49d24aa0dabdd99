//go:build !race

package loader

// raceEnabled reports whether the test binary was built with -race.
const raceEnabled = false

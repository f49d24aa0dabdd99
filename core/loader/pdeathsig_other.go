//go:build !linux

package loader

import "os/exec"

// setParentDeathSignal is Linux-only; elsewhere plugins watch their parent.
func setParentDeathSignal(*exec.Cmd) {}
